"""The worker end to end: a real Kafka-protocol broker (Tansu), a real S3 endpoint (moto
behind a fault-injecting proxy), the real vLLM engine on the CPU with the tiny model, and
`skyra-stream worker` as a subprocess, asserting on what lands in the topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from kafka import KafkaProducer

from skyra_stream.consumers.review_loop import ReviewLoop
from skyra_stream.decisions.calibration import CalibrationFile
from skyra_stream.devstack.broker import TansuBroker, committed_vs_end, paused, read_all
from skyra_stream.devstack.credentials import GENERATED, make_chain, sign_mp4, tamper
from skyra_stream.devstack.faulty_proxy import Fault, FaultyProxy
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent, ModelInfo
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.runtime.wiring import review_tickets
from skyra_stream.settings import Settings

BUCKET = "uploads"
GOOD_VIDEOS = 12


@dataclass
class Stack:
    broker: TansuBroker
    s3_url: str
    proxy: FaultyProxy
    model: Path
    logs: Path

    def topics(self, name: str, partitions: int = 3) -> dict[str, str]:
        suffix = uuid.uuid4().hex[:6]
        topics = {
            "ingest": f"{name}-in-{suffix}",
            "verdicts": f"{name}-out-{suffix}",
            "dead": f"{name}-dlq-{suffix}",
        }
        self.broker.create_topics(list(topics.values()), partitions)
        return {**topics, "group": f"{name}-group-{suffix}"}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: str,
    s3_proxy: FaultyProxy,
    tiny_model: Path,
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("worker-logs")
    videos = tmp_path_factory.mktemp("worker-videos")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for i in range(GOOD_VIDEOS):
        path = write_video(videos / f"v{i}.mp4", VideoSpec(frames=30, seed=i))
        s3.upload_file(str(path), BUCKET, f"good/v{i}.mp4")
    data = (videos / "v0.mp4").read_bytes()
    s3.put_object(Bucket=BUCKET, Key="bad/truncated.mp4", Body=data[: len(data) // 2])
    s3.put_object(Bucket=BUCKET, Key="bad/notes.mp4", Body=b"this is not a video\n" * 100)
    signed = sign_mp4((videos / "v1.mp4").read_bytes(), make_chain(), digital_source_type=GENERATED)
    s3.put_object(Bucket=BUCKET, Key="c2pa/declared-ai.mp4", Body=signed)
    s3.put_object(Bucket=BUCKET, Key="c2pa/tampered.mp4", Body=tamper(signed))
    broker = TansuBroker(logs / "tansu.log")
    yield Stack(broker, moto_server, s3_proxy, tiny_model, logs)
    broker.stop()


# Small, fixed budgets: each worker starts its own vLLM engine on a 2-core CI machine.
TEST_WORKER_SETTINGS: dict[str, object] = {
    "s3_allowed_buckets": BUCKET,
    "s3_retry_max_wait_s": 0.2,
    "shutdown_timeout_s": 120,
    "max_tokens": 12,
    "kv_cache_bytes": 128 << 20,
    "mm_max_pixels": 160 * 28 * 28,
    "max_num_seqs": 8,
    "max_in_flight": 8,
    "pipeline_max_messages": 12,
    "kafka_session_timeout_ms": 10000,
    "log_format": "json",
    "enforce_eager": True,  # see tests/conftest.py engine_settings
    "verdict_cache": False,  # as in tests/conftest.py engine_settings
}


class Worker(ChildProcess):
    """`skyra-stream worker` in its own process, configured only by SKYRA_* variables."""

    def __init__(self, stack: Stack, topics: dict[str, str], name: str, **settings: object) -> None:
        super().__init__(
            "worker",
            stack.logs / f"{name}-{uuid.uuid4().hex[:6]}.log",
            {
                **TEST_WORKER_SETTINGS,
                "kafka_bootstrap_servers": stack.broker.bootstrap,
                "group_id": topics["group"],
                "ingest_topic": topics["ingest"],
                "verdict_topic": topics["verdicts"],
                "dead_letter_topic": topics["dead"],
                "s3_endpoint_url": stack.proxy.url,
                "model_path": stack.model,
                "worker_id": name,
                **settings,
            },
        )

    def wait_ready(self, timeout_s: float = 300) -> None:
        try:
            super().wait_ready(timeout_s)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None


def wait_for(
    check: Callable[[], bool],
    timeout_s: float,
    message: Callable[[], str] | str = "timed out",
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(message() if callable(message) else message)


def outcomes(
    stack: Stack, topics: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    verdicts = [
        json.loads(v)
        for _, v, _ in read_all(stack.broker.bootstrap, topics["verdicts"], idle_s=1.5)
    ]
    dead = [
        json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, topics["dead"], idle_s=1.5)
    ]
    return verdicts, dead


def producer(stack: Stack, topics: dict[str, str]) -> IngestProducer:
    return IngestProducer(
        kafka_config(
            Settings(
                kafka_bootstrap_servers=[stack.broker.bootstrap], ingest_topic=topics["ingest"]
            )
        )
    )


def good_event(i: int, tag: str) -> IngestEvent:
    return IngestEvent(
        event_id=f"{tag}-{i}",
        video_id=f"video-{tag}-{i}",
        uri=f"s3://{BUCKET}/good/v{i % GOOD_VIDEOS}.mp4",
    )


def accounted(stack: Stack, topics: dict[str, str], ids: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        verdicts, dead = outcomes(stack, topics)
        return ids <= {v["event_id"] for v in verdicts} | {d["event_id"] for d in dead}

    return check


# -- one long-lived worker for the scenarios that do not end it ------------------------------


REVIEW_TICKET_KEY = "t" * 40


def worker_calibration(model_name: str) -> CalibrationFile:
    """A temperature calibration for the tiny model (the folder's name is the model's)."""
    fixture = Path(__file__).with_name("data") / "calibration.json"
    base = CalibrationFile.model_validate_json(fixture.read_text())
    return base.model_copy(
        update={"id": "worker-test-cal", "model": ModelInfo(name=model_name), "temperature": 3.0}
    )


WORKER_POLICY = """
version: worker-test-1
default:
  id: platform
  otherwise: allow
  rules:
    - {name: declared-ai, action: block, skip_model: true,
       when: {provenance: [trusted, untrusted], declares_generated: true}}
    - {name: broken-credentials, action: review, when: {provenance: [invalid]}}
tenants:
  lenient: {id: lenient, otherwise: allow, rules: []}
  strict: {id: strict, otherwise: review, rules: []}
"""


@pytest.fixture(scope="module")
def worker_a(stack: Stack) -> Iterator[tuple[Worker, dict[str, str]]]:
    topics = stack.topics("a")
    policy = stack.logs / "policy.yaml"
    policy.write_text(WORKER_POLICY)
    topics["review"] = topics["ingest"] + "-review"
    stack.broker.create_topics([topics["review"]], 1)
    calibration = stack.logs / "calibration.json"
    calibration.write_text(worker_calibration(stack.model.name).model_dump_json())
    # Also serves the analyze API on its HTTP port, on the same engine (loopback: no token).
    worker = Worker(
        stack,
        topics,
        "worker-a",
        api_enabled=True,
        http_host="127.0.0.1",
        policy_file=policy,
        review_topic=topics["review"],
        review_ticket_key=REVIEW_TICKET_KEY,
        calibration_file=calibration,
        jobs_enabled=True,
        # Jobs are checked at submission by the rules the sender applies: the loopback
        # receiver below is a development host on an allowed network.
        webhook_http_hosts="127.0.0.1",
        webhook_allowed_networks="127.0.0.0/8",
    )
    try:
        worker.wait_ready()
        yield worker, topics
    finally:
        worker.kill()


def test_good_events_get_one_verdict_each(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, topics = worker_a
    events = [good_event(i, "good") for i in range(6)]
    prod = producer(stack, topics)
    for e in events:
        prod.send(e)
    prod.flush()
    ids = {e.event_id for e in events}
    wait_for(accounted(stack, topics, ids), 240, worker.tail)
    verdicts, dead = outcomes(stack, topics)
    mine = [v for v in verdicts if v["event_id"] in ids]
    assert sorted(v["event_id"] for v in mine) == sorted(ids)
    assert not [d for d in dead if d["event_id"] in ids]
    calibration = worker_calibration(stack.model.name)
    for v in mine:
        assert v["status"] in ("ok", "unparseable")
        assert v["video"]["frames_sampled"] == 16
        # P(fake) is the calibration applied to the model's own, and the decision read it.
        assert v["calibration"] == {"id": "worker-test-cal", "method": "temperature"}
        inputs = v["decision"]["inputs"]
        assert inputs["fake_probability"] == v["fake_probability"]
        assert inputs["fake_probability_raw"] == v["fake_probability_raw"]
        if v["fake_probability_raw"] is not None:
            expected = calibration.apply(v["fake_probability_raw"])
            assert v["fake_probability"] == pytest.approx(expected)
            assert (
                v["fake_probability"] != v["fake_probability_raw"]
                or abs(v["fake_probability_raw"] - 0.5) < 1e-6
            )
        assert v["source"]["etag"]
        assert v["worker"]["id"] == "worker-a"
        assert v["timings_ms"]["total"] > 0
    status, body = worker.get("/metrics")
    assert status == 200
    assert b"skyra_verdicts_total" in body
    assert b'skyra_stage_seconds_bucket{le="0.01",stage="decode"}' in body
    assert worker.get("/healthz")[0] == 200
    # vLLM's own series under vLLM's names, beside ours (its dashboards work unchanged), and
    # our service-level indicators.
    text = body.decode()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:request_success_total{",
        "skyra_verdict_latency_seconds_bucket",
        "skyra_generated_tokens_per_verdict_bucket",
        "skyra_verdict_status_total",
    ):
        assert name in text, name
    generated = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vllm:generation_tokens_total")
    ]
    assert generated
    assert sum(generated) > 0
    assert 'finished_reason="' in text
    statuses = [line for line in text.splitlines() if line.startswith("skyra_verdict_status_total")]
    assert sum(float(line.split()[-1]) for line in statuses) >= len(ids)


def test_policies_provenance_and_the_review_loop_on_the_real_stack(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, topics = worker_a
    good = f"s3://{BUCKET}/good/v2.mp4"
    events = {
        "dec-lenient": IngestEvent(
            event_id="dec-lenient", video_id="d1", uri=good, metadata={"tenant": "lenient"}
        ),
        "dec-strict": IngestEvent(
            event_id="dec-strict", video_id="d1", uri=good, metadata={"tenant": "strict"}
        ),
        "dec-ai": IngestEvent(
            event_id="dec-ai", video_id="d2", uri=f"s3://{BUCKET}/c2pa/declared-ai.mp4"
        ),
        "dec-tampered": IngestEvent(
            event_id="dec-tampered", video_id="d3", uri=f"s3://{BUCKET}/c2pa/tampered.mp4"
        ),
    }
    inferred_before = worker.metric('skyra_stage_seconds_count{stage="infer"}') or 0.0
    prod = producer(stack, topics)
    for e in events.values():
        prod.send(e)
    prod.flush()
    wait_for(accounted(stack, topics, set(events)), 240, worker.tail)
    records = {
        json.loads(v)["event_id"]: (json.loads(v), h)
        for _, v, h in read_all(stack.broker.bootstrap, topics["verdicts"], idle_s=1.5)
    }
    got = {i: records[i][0] for i in events}
    for verdict, hdrs in (records[i] for i in events):  # routable without parsing JSON
        assert hdrs["action"] == verdict["decision"]["action"].encode()
        assert hdrs["policy-version"] == b"worker-test-1"
    # The same upload under two tenants: two actions.
    assert got["dec-lenient"]["decision"]["action"] == "allow"
    assert got["dec-strict"]["decision"]["action"] == "review"
    assert got["dec-strict"]["decision"]["policy_id"] == "strict"
    # Declared AI by signed credentials: blocked, not decoded, never sent to the engine.
    ai = got["dec-ai"]
    assert (ai["status"], ai["video"], ai["decision"]["rule"]) == ("skipped", None, "declared-ai")
    assert ai["decision"]["action"] == "block"
    assert ai["provenance"]["declares_generated"] is True
    assert worker.metric("skyra_model_skipped_total") == 1
    # Tampered after signing: invalid provenance, and the model still ran.
    tampered = got["dec-tampered"]
    assert tampered["provenance"]["state"] == "invalid"
    assert "assertion.bmffHash.mismatch" in tampered["provenance"]["problems"]
    assert tampered["status"] in ("ok", "unparseable")
    assert tampered["video"]["frames_sampled"] == 16
    assert tampered["decision"]["rule"] == "broken-credentials"
    inferred = worker.metric('skyra_stage_seconds_count{stage="infer"}')
    assert inferred == inferred_before + 3  # lenient, strict, tampered; not the declared one
    # Reviews: the review topic carries exactly the verdicts sent to review, each with a
    # ticket for exactly that verdict.
    queued_records = read_all(stack.broker.bootstrap, topics["review"], idle_s=1.5)
    queued = [json.loads(v) for _, v, _ in queued_records]
    tickets = {json.loads(v)["event_id"]: h["review-ticket"].decode() for _, v, h in queued_records}
    assert sorted(v["event_id"] for v in queued) == ["dec-strict", "dec-tampered"]
    # A reviewer overturns the tampered one; a broken review event is dead-lettered, and so
    # is every forgery: right shape, but no ticket, another verdict's ticket, or a verdict
    # edited after it was ticketed (label flipped), or a verdict never sent to review.
    reviews = {k: f"{topics['ingest']}-{k}" for k in ("results", "audit", "review-dlq")}
    stack.broker.create_topics(list(reviews.values()), 1)
    to_review = next(v for v in queued if v["event_id"] == "dec-tampered")
    other = next(v for v in queued if v["event_id"] == "dec-strict")
    review = {
        "review_id": "rev-1",
        "verdict": to_review,
        "outcome": "overturn" if to_review["label"] != "fake" else "confirm",
        "reviewer": "alice",
        "label": "fake",
        "artifacts": [{"type": "Texture Jittering", "start_s": 0.1, "end_s": 0.5}],
        "ticket": tickets["dec-tampered"],
    }
    edited = {**to_review, "label": "real" if to_review["label"] == "fake" else "fake"}
    never_queued = got["dec-lenient"]
    forged = {
        "forged-no-ticket": {**review, "ticket": None},
        "forged-other-ticket": {**review, "ticket": tickets["dec-strict"]},
        "forged-edited": {**review, "verdict": edited},
        "forged-never-queued": {**review, "verdict": never_queued, "ticket": tickets["dec-strict"]},
    }
    assert other["event_id"] != to_review["event_id"]
    raw = KafkaProducer(bootstrap_servers=stack.broker.bootstrap)
    for review_id, doc in forged.items():
        raw.send(reviews["results"], json.dumps({**doc, "review_id": review_id}).encode())
    raw.send(reviews["results"], json.dumps(review).encode())
    raw.send(reviews["results"], b'{"review_id": "rev-2", "outcome": "maybe"}')
    raw.flush()
    raw.close()
    review_settings = Settings(
        kafka_bootstrap_servers=[stack.broker.bootstrap],
        review_results_topic=reviews["results"],
        audit_topic=reviews["audit"],
        dead_letter_topic=reviews["review-dlq"],
        review_group_id=f"{topics['group']}-reviews",
        review_ticket_key=REVIEW_TICKET_KEY,
    )
    tickets_of = review_tickets(review_settings)
    assert tickets_of is not None
    loop = ReviewLoop(kafka_config(review_settings), tickets=tickets_of)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    handled = 2 + len(forged)
    try:
        wait_for(lambda: loop.audited + loop.dead_lettered >= handled, 60, "reviews not handled")
    finally:
        loop.stop()
        thread.join(30)
    # Only the genuine review reached the audit topic (and so export-sft).
    (audit,) = [json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, reviews["audit"])]
    assert audit["verdict_event_id"] == "dec-tampered"
    assert audit["review_id"] == "rev-1"
    assert (audit["policy_id"], audit["policy_version"]) == ("platform", "worker-test-1")
    assert audit["model"] == to_review["model"]
    assert audit["label"] == "fake"
    dead = {
        d["event_id"]: d
        for d in (
            json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, reviews["review-dlq"])
        )
    }
    assert sorted(dead) == sorted(["rev-2", *forged])
    assert {d["reason"]["code"] for d in dead.values()} == {"invalid_review"}
    for review_id in forged:
        assert "ticket does not verify" in dead[review_id]["reason"]["message"], review_id
    # Committed: a second loop in the same group finds nothing left to do.
    committed, ends = committed_vs_end(
        stack.broker.bootstrap, reviews["results"], f"{topics['group']}-reviews"
    )
    assert committed == ends


def test_the_worker_serves_the_api_on_its_engine(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, _ = worker_a
    body = json.dumps({"uri": f"s3://{BUCKET}/good/v2.mp4", "video_id": "sync-1"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.http_port}/v1/analyze",
        data=body,
        headers={"Content-Type": "application/json", "X-Request-ID": "sync-check"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        verdict = json.loads(resp.read())
        assert resp.headers["X-Request-ID"] == "sync-check"
    assert verdict["event_id"] == "api-sync-check"
    assert verdict["worker"]["id"] == "worker-a"
    assert verdict["video"]["frames_sampled"] == 16
    assert (
        b'skyra_api_requests_total{endpoint="analyze",status="200"} 1.0'
        in worker.get("/metrics")[1]
    )


def test_an_async_job_on_the_tiny_model_ends_as_a_signed_webhook(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    """The one path of the async API on the real engine (tests/test_jobs.py covers delivery
    on the fake one): POST /v1/jobs to the worker, its verdict from vLLM, delivered by the
    webhook loop to a loopback receiver whose signature the reference verifier accepts."""
    import base64
    import ipaddress

    from standardwebhooks.webhooks import Webhook

    from skyra_stream.consumers.webhook_loop import WebhookLoop
    from skyra_stream.delivery.webhooks import TenantHooks, WebhookConfig, WebhookSender
    from skyra_stream.devstack.receiver import Receiver

    worker, topics = worker_a
    secret = "whsec_" + base64.b64encode(b"v" * 32).decode()
    with Receiver() as receiver:
        body = json.dumps(
            {"uri": f"s3://{BUCKET}/good/v1.mp4", "callback_url": receiver.url("/ok")}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.http_port}/v1/jobs",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 202
            job_id = json.loads(resp.read())["job_id"]
        sender = WebhookSender(
            WebhookConfig(
                tenants={"default": TenantHooks(secret=secret, hosts=["127.0.0.1"])},
                allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
                http_hosts=("127.0.0.1",),
            )
        )
        config = kafka_config(
            Settings(
                kafka_bootstrap_servers=[stack.broker.bootstrap],
                verdict_topic=topics["verdicts"],
                dead_letter_topic=topics["dead"],
            )
        )
        loop = WebhookLoop(
            config, sender, dead_letter_topic=topics["dead"], group_id=f"{topics['group']}-hooks"
        )
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        try:
            wait_for(
                lambda: any(
                    r.headers.get("webhook-id") == f"msg_{job_id}" for r in receiver.received
                ),
                240,
                worker.tail,
            )
        finally:
            loop.stop()
            thread.join(60)
        [hook] = [r for r in receiver.received if r.headers["webhook-id"] == f"msg_{job_id}"]
        payload = Webhook(secret).verify(hook.body, hook.headers)
        assert payload["data"]["event_id"] == job_id
        assert payload["data"]["model"]["name"] == stack.model.name  # the tiny model, on vLLM
        assert payload["data"]["video"]["frames_sampled"] == 16


def test_bad_inputs_get_one_dead_letter_each_and_the_worker_goes_on(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, topics = worker_a
    prod = producer(stack, topics)
    cases = {
        "bad-bucket": ("s3://other-bucket/good/v0.mp4", "uri_not_allowed"),
        "bad-scheme": ("http://169.254.169.254/latest/meta-data", "uri_not_allowed"),
        "bad-file": ("file:///etc/passwd", "uri_not_allowed"),
        "bad-missing": (f"s3://{BUCKET}/nope.mp4", "object_not_found"),
        "bad-notvideo": (f"s3://{BUCKET}/bad/notes.mp4", "not_a_video"),
        "bad-truncated": (f"s3://{BUCKET}/bad/truncated.mp4", "not_a_video"),
    }
    for event_id, (uri, _) in cases.items():
        prod.send(IngestEvent(event_id=event_id, video_id=event_id, uri=uri))
    prod.send_raw(b'{"event_id": "bad-json", ')
    prod.send_raw(json.dumps({"event_id": "bad-schema", "video_id": "x"}).encode())
    prod.send_raw(b"\xff\xfe binary")
    after = good_event(1, "after-bad")
    prod.send(after)
    prod.flush()
    wait_for(accounted(stack, topics, set(cases) | {after.event_id}), 240, worker.tail)
    wait_for(lambda: len(_invalid(outcomes(stack, topics)[1])) >= 3, 60, worker.tail)
    verdicts, dead = outcomes(stack, topics)
    codes = {d["event_id"]: d["reason"]["code"] for d in dead if d["event_id"] in cases}
    assert codes == {k: code for k, (_, code) in cases.items()}
    assert Counter(d["event_id"] for d in dead if d["event_id"] in cases) == Counter(set(cases))
    invalid = _invalid(dead)
    assert len(invalid) == 3
    assert {d["raw_encoding"] for d in invalid} == {"utf-8", "base64"}
    # Unparseable messages still carry an id to drop redeliveries by: their Kafka position.
    assert len({d["event_id"] for d in invalid}) == 3
    assert all(d["event_id"].startswith(f"kafka:{topics['ingest']}:") for d in invalid)
    assert after.event_id in {v["event_id"] for v in verdicts}
    # No fetch ever went to a bucket outside the allowlist.
    assert not [p for _, p in stack.proxy.requests if "other-bucket" in p]


def _invalid(dead: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in dead if d["reason"]["code"] == "invalid_event"]


def test_s3_503s_are_retried_then_succeed(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, topics = worker_a
    event = IngestEvent(event_id="flaky-s3", video_id="flaky", uri=f"s3://{BUCKET}/good/v3.mp4")
    stack.proxy.inject(3, Fault(status=503, code="SlowDown", path_contains="good/v3.mp4"))
    before = len([p for _, p in stack.proxy.requests if "good/v3.mp4" in p])
    prod = producer(stack, topics)
    prod.send(event)
    prod.flush()
    wait_for(accounted(stack, topics, {event.event_id}), 240, worker.tail)
    verdicts, _ = outcomes(stack, topics)
    assert event.event_id in {v["event_id"] for v in verdicts}
    tries = len([p for _, p in stack.proxy.requests if "good/v3.mp4" in p]) - before
    assert tries >= 4


def test_duplicate_in_flight_is_analysed_once(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, topics = worker_a
    event = good_event(4, "dup")
    prod = producer(stack, topics)
    prod.send(event)
    prod.send(event)
    prod.flush()
    wait_for(accounted(stack, topics, {event.event_id}), 240, worker.tail)
    time.sleep(5)  # a second analysis would have landed by now
    verdicts, _ = outcomes(stack, topics)
    assert [v["event_id"] for v in verdicts].count(event.event_id) == 1
    assert b"skyra_duplicates_skipped_total 1.0" in worker.get("/metrics")[1]


def test_broker_frozen_for_15s_then_the_worker_recovers(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    worker, topics = worker_a
    events = [good_event(i, "freeze") for i in range(4)]
    prod = producer(stack, topics)
    for e in events:
        prod.send(e)
    prod.flush()
    time.sleep(1)
    with paused(stack.broker.proc):
        time.sleep(15)
    wait_for(accounted(stack, topics, {e.event_id for e in events}), 240, worker.tail)
    assert worker.proc.poll() is None
    assert worker.get("/readyz")[0] == 200


# -- workers that are killed, stopped or share a group ---------------------------------------


def test_sigkill_then_restart_loses_nothing_and_sigterm_drains_and_commits(
    stack: Stack, tmp_path: Path
) -> None:
    # Kafka's side of a crash, on the fake engine: while the hold file exists nothing can
    # finish, so the kill is certain to meet a full window of work in flight, on any
    # machine. (The real engine's own death is the last test of this module.)
    hold = tmp_path / "hold"
    hold.touch()
    # A shorter session: Tansu's first group join waits on it, and nothing here needs it long.
    fake = {"engine": "fake", "fake_engine_hold_file": hold, "kafka_session_timeout_ms": 6000}
    topics = stack.topics("crash")
    events = [good_event(i, "crash") for i in range(20)]
    prod = producer(stack, topics)
    for e in events:
        prod.send(e)
    prod.flush()
    window = int(str(TEST_WORKER_SETTINGS["pipeline_max_messages"]))
    first = Worker(stack, topics, "crash-1", **fake)
    try:
        first.wait_ready()
        wait_for(lambda: first.metric("skyra_in_flight_messages") == window, 120, first.tail)
    finally:
        first.kill()  # SIGKILL mid-run: in-flight work and uncommitted offsets are lost
    assert outcomes(stack, topics) == ([], [])
    assert (
        sum(committed_vs_end(stack.broker.bootstrap, topics["ingest"], topics["group"])[0].values())
        == 0
    )

    hold.unlink()
    second = Worker(stack, topics, "crash-2", **fake)
    try:
        second.wait_ready()
        ids = {e.event_id for e in events}
        wait_for(accounted(stack, topics, ids), 120, second.tail)
        # Now a graceful stop with a full window in flight: SIGTERM, then the engine lets
        # the work finish, and the worker must drain it and commit before exiting.
        hold.touch()
        late = [good_event(i, "late") for i in range(10)]
        for e in late:
            prod.send(e)
        prod.flush()
        wait_for(lambda: second.metric("skyra_in_flight_messages") == 10, 120, second.tail)
        second.terminate()
        hold.unlink()
        assert second.wait(120) == 0, second.tail()
    finally:
        second.kill()
    verdicts, dead = outcomes(stack, topics)
    seen = Counter(v["event_id"] for v in verdicts) + Counter(d["event_id"] for d in dead)
    for e in events + late:
        assert seen[e.event_id] == 1, e.event_id
    committed, end = committed_vs_end(stack.broker.bootstrap, topics["ingest"], topics["group"])
    assert committed == end
    assert sum(committed.values()) == len(events) + len(late)


def test_a_second_worker_joins_work_in_flight_finishes_first_and_nothing_is_analysed_twice(
    stack: Stack, tmp_path: Path
) -> None:
    # The group on the real broker, on the fake engine (a vLLM engine per worker would prove
    # nothing more about Kafka and cost two minutes). pair-1 holds a full window of answers
    # back (its hold file) when pair-2 joins; the answers come as the rebalance reaches
    # pair-1, inside its revoke budget, so its offsets are committed before the partitions
    # move and pair-2 analyses none of those videos again (the journals count analyses).
    # With kafka-python 3 the revoke commit failed every time until commit_async.
    topics = stack.topics("pair", partitions=4)
    hold = tmp_path / "hold"
    hold.touch()
    common: dict[str, object] = {
        "engine": "fake",
        "kafka_session_timeout_ms": 6000,
        "kafka_revoke_budget_s": 3,
    }
    w1 = Worker(
        stack,
        topics,
        "pair-1",
        fake_engine_hold_file=hold,
        fake_engine_journal=tmp_path / "pair-1.journal",
        **common,
    )
    w2: Worker | None = None
    try:
        w1.wait_ready()
        events = [good_event(i, "pair") for i in range(8)]
        prod = producer(stack, topics)
        for e in events:
            prod.send(e)
        prod.flush()
        wait_for(lambda: (w1.metric("skyra_in_flight_messages") or 0) >= 8, 60, w1.tail)
        before = w1.metric("skyra_rebalances_total") or 0
        w2 = Worker(
            stack, topics, "pair-2", fake_engine_journal=tmp_path / "pair-2.journal", **common
        )
        wait_for(lambda: (w1.metric("skyra_rebalances_total") or 0) > before, 60, w1.tail)
        hold.unlink()  # pair-1's answers come now, inside its revoke budget
        w2.wait_ready()
        more = [good_event(i, "pair-late") for i in range(16)]
        for e in more:
            prod.send(e)
        prod.flush()
        everything = {e.event_id for e in events + more}
        wait_for(
            accounted(stack, topics, everything), 300, lambda: w1.tail() + "\n---\n" + w2.tail()
        )
        assert (w1.metric("skyra_revoke_finished_total") or 0) >= 1, w1.tail()
        analyses = Counter(
            line
            for name in ("pair-1", "pair-2")
            for line in (tmp_path / f"{name}.journal").read_text().splitlines()
        )
        assert {eid: n for eid, n in analyses.items() if n != 1} == {}
        verdicts, _ = outcomes(stack, topics)
        counts = Counter(v["event_id"] for v in verdicts)
        assert all(counts[eid] == 1 for eid in everything), counts
        by_worker = Counter(v["worker"]["id"] for v in verdicts)
        assert set(by_worker) == {"pair-1", "pair-2"}, by_worker
    finally:
        hold.unlink(missing_ok=True)
        w1.kill()
        if w2 is not None:
            w2.kill()


def test_dead_engine_stops_the_worker_without_committing_unfinished_work(
    stack: Stack, worker_a: tuple[Worker, dict[str, str]]
) -> None:
    # The last test of the module ends worker-a: its real vLLM engine processes are killed
    # under it (a second engine just for this would cost another minute).
    worker, topics = worker_a
    engine_procs = psutil.Process(worker.proc.pid).children(recursive=True)
    assert engine_procs, "vLLM runs its engine in child processes"
    for proc in engine_procs:
        proc.kill()
    committed_before, _ = committed_vs_end(
        stack.broker.bootstrap, topics["ingest"], topics["group"]
    )
    prod = producer(stack, topics)
    event = good_event(0, "dead")
    prod.send(event)
    prod.flush()
    code = worker.wait(240)
    assert code == 1, worker.tail()
    assert b"worker_fatal" in worker.log_path.read_bytes()
    verdicts, dead = outcomes(stack, topics)
    assert event.event_id not in {v["event_id"] for v in verdicts}
    assert event.event_id not in {d["event_id"] for d in dead}  # not blamed on the input
    committed, _ = committed_vs_end(stack.broker.bootstrap, topics["ingest"], topics["group"])
    assert committed == committed_before  # left for a healthy worker to redeliver
    assert not [p for p in engine_procs if p.is_running() and p.status() != "zombie"]


def test_sigkill_of_the_worker_alone_leaves_no_engine_process(stack: Stack) -> None:
    # `kill -9 <worker pid>` (not its group), as the OOM killer or an operator does: vLLM's
    # engine processes must not outlive it (skyra_stream.model.reaper ends them).
    topics = stack.topics("orphans")
    worker = Worker(stack, topics, "orphans")
    try:
        worker.wait_ready()
        tree = psutil.Process(worker.pid).children(recursive=True)
        assert len(tree) >= 2, "vLLM's engine core and its worker, and the reaper"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
        deadline = time.monotonic() + 10
        alive = tree
        while alive and time.monotonic() < deadline:
            alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.2)
        assert alive == [], [p.name() for p in alive]
    finally:
        worker.kill()
