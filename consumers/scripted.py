"""A KafkaConsumer stand-in that the test drives: records, rebalances and failed commits
happen exactly when the test says, with no broker and no clock.

It implements the part of kafka-python's consumer that `IngestLoop` uses (subscribe with
a rebalance listener, poll, pause/resume, commit, highwater/position, close), with Kafka's
semantics where the worker depends on them: an eager rebalance revokes the whole old
assignment before assigning the new one, a newly assigned partition resumes from its last
committed offset while one that stays keeps its fetch position and paused flag (kafka-python
3's behaviour), a paused partition returns nothing, and a blocking commit() inside a
rebalance listener raises, as kafka-python 3 does (listeners run on its network thread;
commit_async is what works there). What it cannot show (the
protocol, sessions, a real group) is proved against the Tansu broker in tests/test_worker.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

__all__ = ["Record", "ScriptedConsumer"]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


class ScriptedConsumer:
    def __init__(self, topic: str = "ingest", partitions: int = 3) -> None:
        self.topic = topic
        self.logs: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        self.assigned: set[TopicPartition] = set()
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commits = 0  # the next N commits raise, as during a rebalance
        self.delivered: list[tuple[int, int]] = []  # (partition, offset) per record polled
        self.closed = False
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._listener: Any = None
        self._in_listener = False
        self._next_assignment: set[int] | None = None
        self._wake = threading.Event()

    def positions_read(self, partition: int) -> list[int]:
        """The offsets of `partition` handed out by poll, in order (repeats: read again)."""
        return [offset for p, offset in self.delivered if p == partition]

    # -- what the test does -----------------------------------------------------------------

    def produce(self, value: bytes, partition: int = 0) -> int:
        """Append a record; returns its offset."""
        log = self.logs[partition]
        log.append(Record(self.topic, partition, len(log), value))
        self._wake.set()
        return len(log) - 1

    def rebalance(self, partitions: Iterable[int]) -> None:
        """At the next poll, revoke everything and assign these partitions."""
        self._next_assignment = set(partitions)
        self._wake.set()

    def tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    # -- the KafkaConsumer surface ----------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        assert topics == [self.topic], topics
        self._listener = listener
        if self._next_assignment is None:
            self._next_assignment = set(self.logs)  # a group of one gets every partition

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        if self._next_assignment is not None:
            self._apply_rebalance(self._next_assignment)
            self._next_assignment = None
            return {}
        budget = max_records if max_records is not None else 500
        out: dict[TopicPartition, list[Record]] = {}
        for tp in sorted(self.assigned, key=lambda t: t.partition):
            if tp in self._paused or budget <= 0:
                continue
            position = self._positions[tp]
            batch = self.logs[tp.partition][position : position + budget]
            if batch:
                out[tp] = batch
                self.delivered.extend((tp.partition, r.offset) for r in batch)
                self._positions[tp] = position + len(batch)
                budget -= len(batch)
        if not out:
            # Kafka's poll waits up to its timeout for records; a millisecond is enough
            # for the pipeline's threads to report, and nothing here depends on it.
            self._wake.wait(min(timeout_ms, 1) / 1000)
            self._wake.clear()
        return out

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self._in_listener:
            raise RuntimeError(
                "Cannot block on net.run() from the IO thread itself (kafka-python 3 runs "
                "rebalance listeners on its network thread)"
            )
        self._apply_commit(offsets)

    def commit_async(
        self,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        callback: Callable[[dict[TopicPartition, OffsetAndMetadata], object], None] | None = None,
    ) -> None:
        """Applied at once (the request would precede the rebalance's JoinGroup); the
        callback gets the offsets and the response or the exception, as kafka-python's."""
        try:
            self._apply_commit(offsets)
            response: object = "ok"
        except KafkaError as exc:
            response = exc
        if callback is not None:
            callback(offsets, response)

    def _apply_commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise KafkaError("commit failed (scripted)")
        done = {tp: om.offset for tp, om in offsets.items()}
        self.committed_offsets.update(done)
        self.commits.append(done)

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._positions[tp] = 0

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._positions[tp] = len(self.logs[tp.partition])

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.logs[tp.partition])

    def end_offsets(
        self, partitions: list[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        return {tp: len(self.logs[tp.partition]) for tp in partitions}

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self._positions[tp]

    def close(self, autocommit: bool = True) -> None:
        self.closed = True

    # -- internals --------------------------------------------------------------------------

    def _apply_rebalance(self, partitions: set[int]) -> None:
        revoked = set(self.assigned)
        if revoked and self._listener is not None:
            self._in_listener = True
            try:
                self._listener.on_partitions_revoked(revoked)
            finally:
                self._in_listener = False
        new = {self.tp(p) for p in partitions}
        # As kafka-python 3: a partition that stays keeps its fetch position and its
        # paused flag; one that leaves loses both; a new one starts at its committed offset.
        self._paused &= new & revoked
        for tp in new - revoked:
            self._positions[tp] = self.committed_offsets.get(tp, 0)
        self.assigned = new
        if self._listener is not None:
            self._in_listener = True
            try:
                self._listener.on_partitions_assigned(set(self.assigned))
            finally:
                self._in_listener = False
