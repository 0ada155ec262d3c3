"""Tenants bound to tokens and a rate limit per token, through the real HTTP server (uvicorn
on loopback) and the real analysis path on the shipped fake engine: a token's requests are
decided under its own tenant's policy, a request that names another tenant is refused, a
burst past a token's limit gets 429 with Retry-After, and the metrics say so per tenant.
(The model itself plays no part in who may ask: the real engine's API is tests/test_api.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skyra_stream.api.app import create_app
from skyra_stream.api.guards import ApiTokens, Caller, RateLimiter
from skyra_stream.api.http_server import HttpServer
from skyra_stream.api.service import AnalyzeService
from skyra_stream.health import HealthState
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.metrics import Metrics
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.runtime.configs import service_config
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings

POLICY = """
version: tenants-1
default: {id: platform, otherwise: review, rules: []}
tenants:
  alpha: {id: alpha-policy, otherwise: allow, rules: []}
  beta: {id: beta-policy, otherwise: block, rules: []}
"""
TOKENS = """# a mounted Secret
token-alpha tenant=alpha name=alpha-app
token-beta tenant=beta rate=0.5 burst=2 name=beta-app
token-plain
"""


class Api:
    def __init__(self, url: str, metrics: Metrics) -> None:
        self.url = url
        self.metrics = metrics

    def post(self, token: str, clip: Path, **headers: str) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            return c.post(
                "/v1/analyze",
                json={"uri": clip.as_uri()},
                headers={"Authorization": f"Bearer {token}", **headers},
            )

    def count(self, tenant: str, result: str) -> float:
        return self.metrics.api_tenant_requests.labels(tenant, result)._value.get()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tenant-clips")
    return write_video(folder / "c.mp4", VideoSpec(width=128, height=96, frames=12))


@pytest.fixture(scope="module")
def api(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("tenant-config")
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "tokens").write_text(TOKENS)
    settings = Settings(
        engine="fake",
        local_roots=[str(clip.parent)],
        policy_file=folder / "policy.yaml",
        api_tokens_file=folder / "tokens",
        api_rate_per_s=100.0,
        api_burst=100,
        verdict_cache=False,
        http_host="127.0.0.1",
    )
    metrics = Metrics()
    health = HealthState()
    engine = FakeEngine().start()
    analysis = build_analysis(settings, engine, metrics=metrics)
    service = AnalyzeService(analysis, service_config(settings))
    server = HttpServer(create_app(settings, health, metrics, service), "127.0.0.1", 0).start()
    try:
        yield Api(f"http://127.0.0.1:{server.port}", metrics)
    finally:
        server.close()
        analysis.close()
        engine.close()


def test_each_token_is_decided_under_its_own_tenants_policy(api: Api, clip: Path) -> None:
    alpha, beta, plain = (api.post(t, clip) for t in ("token-alpha", "token-beta", "token-plain"))
    assert [r.status_code for r in (alpha, beta, plain)] == [200, 200, 200]
    decisions = [r.json()["decision"] for r in (alpha, beta, plain)]
    assert [(d["policy_id"], d["action"]) for d in decisions] == [
        ("alpha-policy", "allow"),
        ("beta-policy", "block"),
        ("platform", "review"),
    ]
    assert [d["inputs"]["tenant"] for d in decisions] == ["alpha", "beta", None]
    # Naming its own tenant is fine.
    assert api.post("token-alpha", clip, **{"X-Skyra-Tenant": "alpha"}).status_code == 200


def test_a_token_cannot_obtain_another_tenants_decision(api: Api, clip: Path) -> None:
    before = api.count("alpha", "forbidden")
    resp = api.post("token-alpha", clip, **{"X-Skyra-Tenant": "beta"})
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    assert "decision" not in resp.json()
    # A token without a tenant cannot claim one either.
    resp = api.post("token-plain", clip, **{"X-Skyra-Tenant": "alpha"})
    assert (resp.status_code, resp.json()["code"]) == (403, "forbidden")
    assert api.count("alpha", "forbidden") == before + 1
    assert api.count("default", "forbidden") >= 1


def test_a_burst_past_the_tokens_limit_gets_429_with_retry_after(api: Api, clip: Path) -> None:
    # beta: burst 2 at 0.5 per second. What test_each_token... spent has refilled or not;
    # either way, within 4 quick requests at least one is refused.
    answers = [api.post("token-beta", clip) for _ in range(4)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert limited[0].json()["code"] == "rate_limited"
    assert 1 <= int(limited[0].headers["retry-after"]) <= 2
    assert api.count("beta", "rate_limited") == len(limited)
    # Another token is not held back by beta's limit.
    assert api.post("token-alpha", clip).status_code == 200
    with httpx.Client(base_url=api.url) as c:
        exposed = c.get("/metrics").text
    assert 'skyra_api_rate_limit_per_second{caller="beta-app",tenant="beta"} 0.5' in exposed
    assert 'skyra_api_tenant_requests_total{result="rate_limited",tenant="beta"}' in exposed
    assert "token-beta" not in exposed  # names and hashes in metrics, never a token


def test_the_bucket_refills_at_the_tokens_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    caller = Caller("c", "t", rate_per_s=2.0, burst=3)
    assert [limiter.retry_after(caller) for _ in range(3)] == [None, None, None]
    assert limiter.retry_after(caller) == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.retry_after(caller) is None
    now[0] += 100  # never more than the burst saved up
    assert [limiter.retry_after(caller) is None for _ in range(4)] == [True] * 3 + [False]


@pytest.mark.parametrize(
    "line",
    ["tok tenant", "tok colour=red", "tok rate=fast", "tok burst=0", "tok tenant=a/b"],
)
def test_a_bad_tokens_line_is_refused_without_echoing_the_token(line: str) -> None:
    with pytest.raises(ValueError, match="tokens line 1") as err:
        ApiTokens.parse([line], rate_per_s=1.0, burst=1)
    assert "tok " not in str(err.value)
