"""The worker end to end: a real Kafka-protocol broker (Tansu), a real S3 endpoint (moto
behind a fault-injecting proxy), the real vLLM engine on the CPU with the tiny model, and
`skyra-stream worker` as a subprocess, asserting on what lands in the topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
from kafka import KafkaConsumer, TopicPartition

from producers.ingest import IngestProducer
from skyra_stream.messages import IngestEvent
from skyra_stream.samples import VideoSpec, write_video
from skyra_stream.settings import Settings
from tests.support.faulty_proxy import Fault, FaultyProxy
from tests.support.stack import Broker, free_port, paused, read_all

BUCKET = "uploads"
GOOD_VIDEOS = 12
SKYRA = str(Path(sys.executable).with_name("skyra-stream"))


@dataclass
class Stack:
    broker: Broker
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
    broker = Broker(logs / "tansu.log")
    yield Stack(broker, moto_server, s3_proxy, tiny_model, logs)
    broker.stop()


class Worker:
    """`skyra-stream worker` in its own process, configured only by SKYRA_* variables."""

    def __init__(self, stack: Stack, topics: dict[str, str], name: str, **env: str) -> None:
        self.http_port = free_port()
        self.log_path = stack.logs / f"{name}-{uuid.uuid4().hex[:6]}.log"
        environment = {
            **os.environ,
            "SKYRA_KAFKA_BOOTSTRAP_SERVERS": stack.broker.bootstrap,
            "SKYRA_GROUP_ID": topics["group"],
            "SKYRA_INGEST_TOPIC": topics["ingest"],
            "SKYRA_VERDICT_TOPIC": topics["verdicts"],
            "SKYRA_DEAD_LETTER_TOPIC": topics["dead"],
            "SKYRA_S3_ENDPOINT_URL": stack.proxy.url,
            "SKYRA_S3_ALLOWED_BUCKETS": BUCKET,
            "SKYRA_S3_RETRY_MAX_WAIT_S": "0.2",
            "SKYRA_MODEL_PATH": str(stack.model),
            "SKYRA_HTTP_PORT": str(self.http_port),
            "SKYRA_SHUTDOWN_TIMEOUT_S": "120",
            "SKYRA_MAX_TOKENS": "12",
            "SKYRA_KV_CACHE_BYTES": str(128 << 20),
            "SKYRA_MM_MAX_PIXELS": str(160 * 28 * 28),
            "SKYRA_MAX_NUM_SEQS": "8",
            "SKYRA_MAX_IN_FLIGHT": "8",
            "SKYRA_PIPELINE_WINDOW": "12",
            "SKYRA_KAFKA_SESSION_TIMEOUT_MS": "10000",
            "SKYRA_LOG_FORMAT": "json",
            "SKYRA_WORKER_ID": name,
            **env,
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [SKYRA, "worker"],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=5
            ) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def wait_ready(self, timeout_s: float = 300) -> None:
        wait_for(
            lambda: self.get("/readyz")[0] == 200,
            timeout_s,
            lambda: f"worker not ready; log:\n{self.tail()}",
            proc=self.proc,
        )

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout_s: float = 180) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()


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
        Settings(kafka_bootstrap_servers=[stack.broker.bootstrap], ingest_topic=topics["ingest"])
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


@pytest.fixture(scope="module")
def worker_a(stack: Stack) -> Iterator[tuple[Worker, dict[str, str]]]:
    topics = stack.topics("a")
    worker = Worker(stack, topics, "worker-a")
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
    for v in mine:
        assert v["status"] in ("ok", "unparseable")
        assert v["video"]["frames_sampled"] == 16
        assert v["source"]["etag"]
        assert v["worker"]["id"] == "worker-a"
        assert v["timings_ms"]["total"] > 0
    status, body = worker.get("/metrics")
    assert status == 200
    assert b"skyra_verdicts_total" in body
    assert b'skyra_stage_seconds_bucket{le="0.01",stage="decode"}' in body
    assert worker.get("/healthz")[0] == 200


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


def committed_vs_end(stack: Stack, topics: dict[str, str]) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offsets and each partition's end, read from the records
    themselves (Tansu's ListOffsets answers the last batch's base offset, not the end)."""
    consumer = KafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap, group_id=topics["group"], enable_auto_commit=False
    )
    try:
        parts = [
            TopicPartition(topics["ingest"], p)
            for p in sorted(consumer.partitions_for_topic(topics["ingest"]) or [])
        ]
        committed = {tp.partition: consumer.committed(tp) or 0 for tp in parts}
    finally:
        consumer.close()
    reader = KafkaConsumer(
        topics["ingest"],
        bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    end = {tp.partition: 0 for tp in parts}
    try:
        for record in reader:
            end[record.partition] = max(end[record.partition], record.offset + 1)
    finally:
        reader.close()
    return committed, end


def test_sigkill_then_restart_loses_nothing_and_sigterm_drains_and_commits(stack: Stack) -> None:
    topics = stack.topics("crash")
    events = [good_event(i, "crash") for i in range(20)]
    prod = producer(stack, topics)
    for e in events:
        prod.send(e)
    prod.flush()
    first = Worker(stack, topics, "crash-1")
    try:
        first.wait_ready()
        wait_for(lambda: len(outcomes(stack, topics)[0]) >= 3, 240, first.tail)
    finally:
        first.kill()  # SIGKILL mid-run: in-flight work and uncommitted offsets are lost
    verdicts_at_kill = len(outcomes(stack, topics)[0])
    assert verdicts_at_kill < len(events), "the kill came too late to test anything"

    second = Worker(stack, topics, "crash-2")
    try:
        second.wait_ready()
        ids = {e.event_id for e in events}
        wait_for(accounted(stack, topics, ids), 300, second.tail)
        # Now a graceful stop with work in flight.
        late = [good_event(i, "late") for i in range(10)]
        for e in late:
            prod.send(e)
        prod.flush()
        wait_for(
            lambda: any(v["event_id"].startswith("late") for v in outcomes(stack, topics)[0]),
            240,
            second.tail,
        )
        second.signal(signal.SIGTERM)
        assert second.wait(180) == 0, second.tail()
    finally:
        second.kill()
    verdicts, dead = outcomes(stack, topics)
    seen = Counter(v["event_id"] for v in verdicts) + Counter(d["event_id"] for d in dead)
    for e in events:
        assert seen[e.event_id] >= 1, e.event_id  # duplicates allowed, none missing
    # SIGTERM drained: whatever it took from the topic it finished and committed.
    committed, end = committed_vs_end(stack, topics)
    late_done = {e.event_id for e in late} & set(seen)
    assert sum(committed.values()) == len(events) + len(late_done)
    if late_done == {e.event_id for e in late}:
        assert committed == end


def test_two_workers_split_the_partitions_and_handle_each_event_once(stack: Stack) -> None:
    topics = stack.topics("pair", partitions=4)
    w1 = Worker(stack, topics, "pair-1")
    w2 = Worker(stack, topics, "pair-2")
    try:
        w1.wait_ready()
        w2.wait_ready()

        def split() -> bool:
            return all(json.loads(w.get("/readyz")[1] or b"{}").get("ok") for w in (w1, w2))

        wait_for(split, 120, "both workers should hold partitions")
        time.sleep(5)  # let the group settle before measuring steady state
        events = [good_event(i, "pair") for i in range(16)]
        prod = producer(stack, topics)
        for e in events:
            prod.send(e)
        prod.flush()
        wait_for(
            accounted(stack, topics, {e.event_id for e in events}),
            300,
            lambda: w1.tail() + "\n---\n" + w2.tail(),
        )
        verdicts, _ = outcomes(stack, topics)
        counts = Counter(v["event_id"] for v in verdicts)
        assert all(counts[e.event_id] == 1 for e in events), counts
        by_worker = Counter(v["worker"]["id"] for v in verdicts)
        assert set(by_worker) == {"pair-1", "pair-2"}, by_worker
    finally:
        w1.kill()
        w2.kill()


def test_dead_engine_stops_the_worker_without_committing_unfinished_work(stack: Stack) -> None:
    topics = stack.topics("dead")
    worker = Worker(stack, topics, "dead-engine")
    try:
        worker.wait_ready()
        engine_procs = psutil.Process(worker.proc.pid).children(recursive=True)
        assert engine_procs, "vLLM runs its engine in child processes"
        for proc in engine_procs:
            proc.kill()
        prod = producer(stack, topics)
        event = good_event(0, "dead")
        prod.send(event)
        prod.flush()
        code = worker.wait(240)
    finally:
        worker.kill()
    assert code == 1, worker.tail()
    assert b"worker_fatal" in worker.log_path.read_bytes()
    verdicts, dead = outcomes(stack, topics)
    assert event.event_id not in {v["event_id"] for v in verdicts}
    assert event.event_id not in {d["event_id"] for d in dead}  # not blamed on the input
    committed, _ = committed_vs_end(stack, topics)
    assert sum(committed.values()) == 0  # left for a healthy worker to redeliver
