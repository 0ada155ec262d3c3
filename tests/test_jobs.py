"""Async jobs end to end on the real stack: Tansu, moto (S3), a real Redis, `skyra-stream
worker` on the fake engine serving the API with jobs on, and `skyra-stream webhooks`, all as
child processes configured only by SKYRA_* variables, and a real HTTP receiver on loopback.
The model plays no part in delivery (tests/test_worker.py runs the tiny model)."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from skyra_stream.devstack.broker import TansuBroker, read_all
from skyra_stream.devstack.credentials import make_chain
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.devstack.receiver import Receiver
from skyra_stream.devstack.redis_server import RedisServer
from skyra_stream.media.samples import VideoSpec, write_video

BUCKET = "job-uploads"
SECRET = "whsec_" + base64.b64encode(b"j" * 32).decode()
TOKEN = "tok-alpha"
CACHE_KEY = "c" * 40
RECEIPTS = make_chain("Platform Receipts")
UNRESOLVED = "hooks.alpha.invalid"  # on the allowlist; .invalid never resolves (RFC 6761)


@dataclass
class Stack:
    broker: TansuBroker
    receiver: Receiver
    worker: ChildProcess
    logs: Path
    settings: dict[str, object]
    topics: dict[str, str]
    hooks: ChildProcess | None = None

    def start_hooks(self) -> ChildProcess:
        self.hooks = ChildProcess(
            "webhooks", self.logs / f"hooks-{uuid.uuid4().hex[:6]}.log", self.settings
        )
        self.hooks.wait_ready(60)
        return self.hooks

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.worker.http_port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())

    def submit(self, callback_path: str) -> str:
        status, accepted = self.api(
            "POST",
            "/v1/jobs",
            {"uri": f"s3://{BUCKET}/v.mp4", "callback_url": self.receiver.url(callback_path)},
        )
        assert status == 202
        assert accepted["status_url"] == f"/v1/jobs/{accepted['job_id']}"
        return str(accepted["job_id"])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("jobs")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(write_video(logs / "v.mp4", VideoSpec(frames=20))), BUCKET, "v.mp4")
    broker = TansuBroker(logs / "tansu.log")
    redis = RedisServer(logs / "redis.log")
    receiver = Receiver()
    topics = {
        "ingest_topic": "jobs.ingest",
        "verdict_topic": "jobs.verdicts",
        "dead_letter_topic": "jobs.dead",
        "webhook_dead_letter_topic": "jobs.webhook-dead",
    }
    broker.create_topics(list(topics.values()), 2)
    (logs / "tokens").write_text(f"{TOKEN} tenant=alpha\n")
    # Receipts for every verdict of tenant alpha, signed with a throwaway platform chain.
    (logs / "receipt.key").write_bytes(RECEIPTS.key_pem)
    (logs / "receipt.pem").write_bytes(RECEIPTS.chain_pem)
    (logs / "policy.yaml").write_text(
        json.dumps(
            {
                "version": "jobs-1",
                "default": {"id": "default", "otherwise": "allow"},
                "tenants": {"alpha": {"id": "alpha", "otherwise": "allow", "receipts": "all"}},
            }
        )
    )
    (logs / "hooks.yaml").write_text(
        json.dumps(
            {
                "tenants": {
                    "alpha": {"secret": SECRET, "hosts": ["127.0.0.1", "10.1.2.3", UNRESOLVED]}
                }
            }
        )
    )
    settings: dict[str, object] = {
        **topics,
        "kafka_bootstrap_servers": broker.bootstrap,
        "group_id": "jobs-workers",
        "kafka_session_timeout_ms": 10000,
        "engine": "fake",
        "s3_endpoint_url": moto_server,
        "s3_allowed_buckets": BUCKET,
        "api_enabled": True,
        "http_host": "127.0.0.1",
        "api_tokens_file": logs / "tokens",
        "jobs_enabled": True,
        "jobs_staging_bucket": BUCKET,
        "verdict_cache_url": redis.url,
        "verdict_cache_key": CACHE_KEY,
        "verdict_cache": False,  # every job analysed (reuse has its own tests)
        "webhook_tenants_file": logs / "hooks.yaml",
        "policy_file": logs / "policy.yaml",
        "receipt_key_file": logs / "receipt.key",
        "receipt_cert_file": logs / "receipt.pem",
        "webhook_allowed_networks": "127.0.0.0/8",
        "webhook_http_hosts": "127.0.0.1",
        "webhook_max_attempts": 4,
        "webhook_backoff_initial_s": 0.05,
        "webhook_backoff_max_s": 0.2,
        "webhook_read_timeout_s": 1.0,
        "kafka_commit_interval_s": 0.2,
        "log_format": "json",
    }
    worker = ChildProcess("worker", logs / "worker.log", settings)
    try:
        worker.wait_ready(120)
        result = Stack(broker, receiver, worker, logs, settings, topics)
        result.start_hooks()
        yield result
        if result.hooks is not None:
            result.hooks.kill()
    finally:
        worker.kill()
        receiver.close()
        redis.stop()
        broker.stop()


def delivery(stack: Stack, job_id: str) -> dict[str, Any]:
    """The job's webhook state as GET /v1/jobs/{id} reports it ({} before it has one)."""
    return dict(stack.api("GET", f"/v1/jobs/{job_id}")[1].get("delivery") or {})


def received_for(stack: Stack, job_id: str) -> list[Any]:
    return [r for r in stack.receiver.received if r.headers.get("webhook-id") == f"msg_{job_id}"]


def test_a_job_ends_as_a_verified_webhook_and_done_on_get(stack: Stack) -> None:
    job_id = stack.submit("/ok")
    assert stack.api("GET", f"/v1/jobs/{job_id}")[1]["status"] in ("queued", "done")
    wait_for(lambda: bool(received_for(stack, job_id)), 60, "the webhook")
    [hook] = received_for(stack, job_id)
    payload = Webhook(SECRET).verify(hook.body, hook.headers)  # the reference verifier
    assert payload["type"] == "verdict.ready"
    assert payload["data"]["event_id"] == job_id
    assert payload["data"]["decision"]["inputs"]["tenant"] == "alpha"  # the token's tenant
    wait_for(lambda: stack.api("GET", f"/v1/jobs/{job_id}")[1]["status"] == "done", 30, "done")
    record = stack.api("GET", f"/v1/jobs/{job_id}")[1]
    assert record["verdict"]["event_id"] == job_id
    assert record["tenant"] == "alpha"
    wait_for(lambda: delivery(stack, job_id).get("state") == "delivered", 30, "delivered")
    assert delivery(stack, job_id)["attempts"] == 1


def test_a_verdict_comes_with_a_signed_receipt_that_verifies_against_the_upload(
    stack: Stack, moto_server: str
) -> None:
    import io

    from skyra_stream.decisions.receipts import verify_receipt

    job_id = stack.submit("/ok")
    wait_for(lambda: bool(received_for(stack, job_id)), 60, "the webhook")
    [hook] = received_for(stack, job_id)
    verdict = Webhook(SECRET).verify(hook.body, hook.headers)["data"]
    # The webhook body carries the receipt: where it is and which manifest.
    assert verdict["receipt_uri"] == f"s3://{BUCKET}/v.mp4.c2pa"
    assert verdict["receipt_manifest_id"].startswith("urn:c2pa:")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    receipt = s3.get_object(Bucket=BUCKET, Key="v.mp4.c2pa")["Body"].read()
    upload = s3.get_object(Bucket=BUCKET, Key="v.mp4")["Body"].read()
    anchors = RECEIPTS.root_pem.decode()
    check = verify_receipt(io.BytesIO(upload), receipt, trust_anchors_pem=anchors)
    assert (check.state, check.manifest_id) == ("valid", verdict["receipt_manifest_id"])
    assert check.assertion is not None
    assert check.assertion.event_id == job_id
    assert check.assertion.label == verdict["label"]
    assert check.assertion.content_sha256 == verdict["content_sha256"]
    assert stack.worker.metric('skyra_receipts_total{result="written"}') >= 1


def test_a_flaky_receiver_gets_one_id_four_times_and_one_verdict(stack: Stack) -> None:
    job_id = stack.submit("/flaky/3")
    wait_for(lambda: len(received_for(stack, job_id)) >= 4, 60, "four attempts")
    assert [r.headers["webhook-id"] for r in received_for(stack, job_id)] == [f"msg_{job_id}"] * 4
    verdicts = [
        json.loads(v)
        for _, v, _ in read_all(stack.broker.bootstrap, stack.topics["verdict_topic"], idle_s=1)
    ]
    assert [v["event_id"] for v in verdicts].count(job_id) == 1
    wait_for(lambda: delivery(stack, job_id).get("state") == "delivered", 30, "delivered")
    assert delivery(stack, job_id)["attempts"] == 4


def test_a_receiver_that_never_answers_leads_to_webhook_failed(stack: Stack) -> None:
    job_id = stack.submit("/hang")

    def failed() -> list[Any]:
        records = read_all(
            stack.broker.bootstrap, stack.topics["webhook_dead_letter_topic"], idle_s=1
        )
        return [json.loads(v) for _, v, _ in records if json.loads(v)["event_id"] == job_id]

    wait_for(lambda: bool(failed()), 90, "the webhook_failed record")
    [letter] = failed()
    assert letter["reason"]["code"] == "webhook_failed"
    assert letter["attempts"] == 4
    assert len(received_for(stack, job_id)) == 4
    # GET says so too: not `done` alone, but a delivery that failed, and why.
    wait_for(lambda: delivery(stack, job_id).get("state") == "failed", 30, "failed on GET")
    record = stack.api("GET", f"/v1/jobs/{job_id}")[1]
    assert record["status"] == "done"
    assert record["delivery"]["attempts"] == 4
    assert (
        "TimeoutError" in record["delivery"]["reason"]
        or "timed out" in record["delivery"]["reason"]
    )


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://hooks.elsewhere.example/h", "not on the tenant's allowlist"),
        ("http://hooks.elsewhere.example/h", "plain http to hooks.elsewhere.example"),
        ("https://10.1.2.3/h", "10.1.2.3, private address"),
        ("https://user:pw@127.0.0.1/h", "credentials in the URL"),
    ],
)
def test_a_callback_no_delivery_could_call_is_refused_at_submission(
    stack: Stack, url: str, rule: str
) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        stack.api("POST", "/v1/jobs", {"uri": f"s3://{BUCKET}/v.mp4", "callback_url": url})
    assert err.value.code == 422
    problem = json.loads(err.value.read())
    assert problem["code"] == "callback_refused"
    assert rule in problem["message"]


def test_a_name_is_checked_at_delivery_not_at_submission(stack: Stack) -> None:
    status, accepted = stack.api(
        "POST",
        "/v1/jobs",
        {"uri": f"s3://{BUCKET}/v.mp4", "callback_url": f"https://{UNRESOLVED}/h"},
    )
    assert status == 202
    job_id = accepted["job_id"]
    wait_for(lambda: delivery(stack, job_id).get("state") == "failed", 60, "failed at delivery")
    assert "does not resolve" in delivery(stack, job_id)["reason"]
    assert delivery(stack, job_id)["attempts"] == 4  # retried: a name may resolve later


def test_a_webhooks_consumer_killed_mid_delivery_delivers_after_restart(stack: Stack) -> None:
    job_id = stack.submit("/slow/4")
    wait_for(lambda: bool(received_for(stack, job_id)), 60, "the first attempt")
    assert stack.hooks is not None
    stack.hooks.kill()  # SIGKILL while the receiver is still answering
    first = len(received_for(stack, job_id))
    stack.start_hooks()
    wait_for(lambda: len(received_for(stack, job_id)) > first, 60, "redelivery after restart")
    ids = {r.headers["webhook-id"] for r in received_for(stack, job_id)}
    assert ids == {f"msg_{job_id}"}  # the same id: the receiver drops the duplicate


def test_another_tenants_job_is_not_found_and_polling_needs_a_store(stack: Stack) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        stack.api("GET", f"/v1/jobs/job-{uuid.uuid4().hex}")
    assert err.value.code == 404
