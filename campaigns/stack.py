"""The loopback stack a campaign runs against, and the worker it keeps alive.

Tansu (Kafka protocol), moto (S3) behind the fault-injecting proxy, the tiny model, and
`skyra-stream worker` as a child process configured only by SKYRA_* variables, exactly as a
pod is. moto lives in this process, never in the worker's: vLLM's CPU kernel rebinding
trips over Flask's proxies in the process that starts the engine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from campaigns.corpus import Planned
from campaigns.ledger import Ledger, balance
from skyra_stream.consumers.readers import topic_reader
from skyra_stream.devstack.broker import TansuBroker, committed_vs_end, read_all
from skyra_stream.devstack.faulty_proxy import FaultyProxy
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.model.tiny_model import build_tiny_model

BUCKET = "uploads"
PRIVATE_BUCKET = "private-uploads"
TOPICS = {"ingest": "chaos.ingest", "verdicts": "chaos.verdicts", "dead": "chaos.dead-letters"}
GROUP = "chaos-workers"

# Small, fixed budgets (a 2-core machine runs the whole stack), and tight limits so that the
# campaign's bad inputs cross each of them.
WORKER_SETTINGS: dict[str, object] = {
    "s3_allowed_buckets": BUCKET,
    "s3_read_timeout_s": 2,
    "s3_retry_max_wait_s": 0.5,
    "s3_max_attempts": 6,
    "max_object_bytes": 4 << 20,
    "max_message_bytes": 64 << 10,
    "max_metadata_bytes": 2048,
    "max_tokens": 12,
    "kv_cache_bytes": 128 << 20,
    "mm_max_pixels": 160 * 28 * 28,
    "max_num_seqs": 8,
    "max_in_flight": 8,
    "pipeline_max_messages": 16,
    "decode_concurrency": 2,
    "kafka_session_timeout_ms": 10000,
    "shutdown_timeout_s": 60,
    # Every kill restarts the engine: without torch.compile it starts in ~35 s, not ~60.
    "enforce_eager": True,
    # The corpus repeats its clips; the campaigns count analyses per event (duplicates,
    # rebalances), which reused verdicts would hide. Reuse is proved in tests/test_reuse.py.
    "verdict_cache": False,
    "http_host": "127.0.0.1",
    "log_format": "json",
}


@dataclass
class Stack:
    out: Path
    broker: TansuBroker
    moto_url: str
    proxy: FaultyProxy
    model: Path
    s3: Any
    settings: dict[str, object] = field(default_factory=dict)

    def worker_settings(self, **overrides: object) -> dict[str, object]:
        return {
            **WORKER_SETTINGS,
            "kafka_bootstrap_servers": self.broker.bootstrap,
            "group_id": GROUP,
            "ingest_topic": TOPICS["ingest"],
            "verdict_topic": TOPICS["verdicts"],
            "dead_letter_topic": TOPICS["dead"],
            "s3_endpoint_url": self.proxy.url,
            "model_path": self.model,
            **overrides,
        }


@contextmanager
def loopback_stack(out: Path, partitions: int = 3) -> Iterator[Stack]:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - see the module docstring

    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    proxy = FaultyProxy(host, int(port)).start()
    broker = TansuBroker(out / "logs" / "tansu.log")
    try:
        broker.create_topics(list(TOPICS.values()), partitions)
        model = build_tiny_model(out / "tiny-model")
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        yield Stack(out, broker, f"http://{host}:{port}", proxy, model, s3)
    finally:
        broker.stop()
        proxy.stop()
        moto.stop()


class Supervisor:
    """Keeps one worker running: restarts after planned kills, notices unplanned exits."""

    def __init__(self, stack: Stack, **overrides: object) -> None:
        self.stack = stack
        self.overrides = overrides
        self.started = 0
        self.exits: list[tuple[str, int]] = []  # (why it ended, exit code)
        self.unplanned: list[str] = []
        self.worker = self._start()

    def _start(self) -> ChildProcess:
        self.started += 1
        name = f"worker-{self.started}"
        worker = ChildProcess(
            "worker",
            self.stack.out / "logs" / f"{name}.log",
            self.stack.worker_settings(worker_id=name, **self.overrides),
        )
        self.worker = worker
        return worker

    def ready(self, timeout_s: float = 400.0) -> None:
        self.worker.wait_ready(timeout_s)

    def check_alive(self) -> None:
        """An exit nobody asked for is a finding; the worker is restarted to go on."""
        code = self.worker.proc.poll()
        if code is not None:
            self.unplanned.append(f"{self.worker.log_path.name} exited by itself with {code}")
            self.exits.append(("unplanned", code))
            self._start()
            self.ready()

    def ended(self, why: str, timeout_s: float) -> int:
        code = self.worker.wait(timeout_s)
        self.exits.append((why, code))
        return code

    def restart(self) -> None:
        self._start()
        self.ready()


class Collector:
    """Reads the verdict and dead-letter topics as they fill (for progress; the ledger reads
    them again from the start at the end)."""

    def __init__(
        self, bootstrap: str, topics: tuple[str, ...] = (TOPICS["verdicts"], TOPICS["dead"])
    ) -> None:
        self.ids: set[str] = set()
        self.records = 0
        self._stop = threading.Event()
        self._consumer = topic_reader(bootstrap, *topics)
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._consumer.poll(timeout_ms=500)
            except Exception:  # broker frozen: try again
                time.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    self.records += 1
                    with suppress(ValueError, KeyError, TypeError):
                        self.ids.add(str(json.loads(record.value)["event_id"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def balance_outputs(
    stack: Stack, items: list[Planned], group: str
) -> tuple[Ledger, list[dict[str, Any]]]:
    """Read both output topics from the start and balance them against the plan: the
    ledger, with the checks every campaign makes (fetches inside the allowlist, and some
    at all; the group's offsets at the log end), and the verdict records."""
    bootstrap = stack.broker.bootstrap
    verdicts = [json.loads(v) for _, v, _ in read_all(bootstrap, TOPICS["verdicts"])]
    dead = [json.loads(v) for _, v, _ in read_all(bootstrap, TOPICS["dead"])]
    requests = [path for _, path in stack.proxy.requests]
    ledger = balance(items, verdicts, dead, fetched_paths=requests, allowed_buckets=[BUCKET])
    if not any(p.lstrip("/").startswith(BUCKET + "/") for p in requests):
        ledger.problems.append("the proxy saw no fetch at all: the allowlist check is void")
    committed, end = committed_vs_end(bootstrap, TOPICS["ingest"], group)
    if committed != end:
        ledger.problems.append(f"committed offsets {committed} != log end {end}")
    return ledger, verdicts


def log(message: str) -> None:
    """A campaign's progress line, timestamped (the campaigns print, they do not log)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(check: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    """Poll `check` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step_s)
    return False
