"""Helpers around the loopback broker for integration tests."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from consumers.readers import topic_reader
from producers.admin import create_topics
from skyra_stream.devstack import TansuBroker, free_port

__all__ = ["Broker", "committed_vs_end", "free_port", "paused", "read_all"]


class Broker(TansuBroker):
    def __init__(self, log_path: Path) -> None:
        super().__init__(log_path)

    def create_topics(self, names: list[str], partitions: int = 3) -> None:
        create_topics(self.bootstrap, names, partitions)


def read_all(
    bootstrap: str, topic: str, *, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Every record of a topic from the beginning: (key, value, headers)."""
    consumer = topic_reader(bootstrap, topic, idle_s=idle_s)
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


def committed_vs_end(
    bootstrap: str, topic: str, group: str
) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offsets and each partition's end, read from the records
    themselves (Tansu's ListOffsets answers the last batch's base offset, not the end)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        committed = {tp.partition: consumer.committed(tp) or 0 for tp in parts}
    finally:
        consumer.close()
    reader = topic_reader(bootstrap, topic, idle_s=2.0)
    end = {tp.partition: 0 for tp in parts}
    try:
        for record in reader:
            end[record.partition] = max(end[record.partition], record.offset + 1)
    finally:
        reader.close()
    return committed, end
