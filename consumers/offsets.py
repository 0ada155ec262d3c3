"""Which offset of a partition may be committed when messages finish out of order.

Kafka commits a single position per partition: "everything below this is done". Videos
finish in any order (a short clip overtakes a long one), so the committable position is the
lowest offset still unfinished, or one past the highest finished when nothing is pending.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

log = structlog.get_logger(__name__)


@dataclass
class PartitionOffsets:
    """Offsets of one partition: started, finished, and the position safe to commit."""

    pending: set[int] = field(default_factory=set)
    _heap: list[int] = field(default_factory=list)
    highest_finished: int = -1
    committed: int | None = None

    def started(self, offset: int) -> None:
        self.pending.add(offset)
        heapq.heappush(self._heap, offset)

    def finished(self, offset: int) -> None:
        self.pending.discard(offset)
        self.highest_finished = max(self.highest_finished, offset)

    def first_unfinished(self) -> int | None:
        """The lowest offset not finished yet (one past the highest finished when nothing
        is pending); None before anything was read."""
        while self._heap and self._heap[0] not in self.pending:
            heapq.heappop(self._heap)
        if self._heap:
            return self._heap[0]
        if self.highest_finished >= 0:
            return self.highest_finished + 1
        return None

    def committable(self) -> int | None:
        """The next offset to read after a restart, or None when nothing new is safe."""
        position = self.first_unfinished()
        if position is None:
            return None
        if self.committed is not None and position <= self.committed:
            return None
        return position


def committable(
    offsets: Mapping[TopicPartition, PartitionOffsets], partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The position each of `partitions` may commit now (those with nothing new left out)."""
    out = {}
    for tp in partitions:
        partition = offsets.get(tp)
        position = partition.committable() if partition else None
        if position is not None:
            out[tp] = OffsetAndMetadata(position, "", -1)
    return out


def commit(
    consumer: Any,
    offsets: Mapping[TopicPartition, PartitionOffsets],
    positions: Mapping[TopicPartition, OffsetAndMetadata],
) -> bool:
    """Commit `positions` and remember them as committed; False when the commit failed
    (broker unreachable, a rebalance under way): the offsets stay pending for the next
    try, so nothing is lost, at worst redelivered."""
    try:
        consumer.commit(dict(positions))
    except KafkaError as exc:
        log.warning("commit_failed", error=repr(exc))
        return False
    for tp, meta in positions.items():
        offsets[tp].committed = meta.offset
    return True
