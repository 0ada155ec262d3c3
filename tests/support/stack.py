"""Helpers around the loopback broker for integration tests."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaConsumer

from producers.admin import create_topics
from skyra_stream.devstack import TansuBroker, free_port

__all__ = ["Broker", "free_port", "paused", "read_all"]


class Broker(TansuBroker):
    def __init__(self, log_path: Path) -> None:
        super().__init__(log_path)

    def create_topics(self, names: list[str], partitions: int = 3) -> None:
        create_topics(self.bootstrap, names, partitions)


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
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)
