"""The streaming worker: ingest topic -> pipeline -> verdict / dead-letter topics -> commit.

One thread owns the KafkaConsumer (kafka-python's consumer is not thread-safe): it polls,
hands records to the pipeline, pauses and resumes partitions for backpressure, and commits.
The pipeline's threads never touch the consumer; they report finished offsets through a
queue that this thread drains. So a long inference never blocks polling, the group stays
alive (poll keeps being called, with partitions paused while the window is full), and an
offset is committed only once everything below it has been published and acknowledged.

At-least-once, nothing lost: a crash before commit redelivers; a verdict published twice
carries the same event_id, which consumers of the verdict topic use to drop duplicates.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from skyra_stream.consumers.offsets import PartitionOffsets, commit, committable
from skyra_stream.consumers.paused_fetches import restore_resumed_partitions
from skyra_stream.health import HealthState
from skyra_stream.messages import KafkaPosition
from skyra_stream.metrics import Metrics
from skyra_stream.pipeline import Inbound, Pipeline
from skyra_stream.producers.kafka_config import KafkaConfig, connection_config

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1


@dataclass(frozen=True, slots=True)
class _Finished:
    tp: TopicPartition
    offset: int
    generation: int


def make_consumer(config: KafkaConfig, **overrides: Any) -> KafkaConsumer:
    kwargs: dict[str, Any] = {
        **connection_config(config),
        "group_id": config.group_id,
        "group_instance_id": config.kafka_group_instance_id,
        "enable_auto_commit": False,
        "auto_offset_reset": config.kafka_auto_offset_reset,
        "max_poll_records": config.kafka_max_poll_records,
        "session_timeout_ms": config.kafka_session_timeout_ms,
        "heartbeat_interval_ms": max(1000, config.kafka_session_timeout_ms // 3),
        "max_poll_interval_ms": config.kafka_max_poll_interval_ms,
        "max_partition_fetch_bytes": max(1 << 20, config.max_message_bytes + 1024),
    }
    kwargs.update(overrides)
    consumer = KafkaConsumer(**kwargs)
    # Backpressure pauses and resumes partitions all the time; without this, kafka-python 3.0
    # can stop fetching a resumed partition for good (see the module).
    restore_resumed_partitions(consumer)
    return consumer


class IngestLoop:
    def __init__(
        self,
        config: KafkaConfig,
        pipeline: Pipeline,
        *,
        consumer: KafkaConsumer | None = None,
        flush: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
        health: HealthState | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.consumer = consumer or make_consumer(config)
        self.flush = flush or (lambda: None)
        self.metrics = metrics or pipeline.metrics
        self.health = health or HealthState()
        self._finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._generation: dict[TopicPartition, int] = {}
        self._stop = threading.Event()
        self._paused: set[TopicPartition] = set()
        self._next_offset: dict[TopicPartition, int] = {}  # after the last record dispatched
        # Assigned in the last rebalance, not yet moved back to their committed offset.
        self._realign_pending: set[TopicPartition] = set()
        self._last_commit = 0.0
        self._last_lag = 0.0
        self.lag_interval_s = 5.0  # how often the log end is asked of the broker
        self.health.ready_when("partitions_assigned", lambda: bool(self._offsets))
        self.health.ready_when("not_stopping", lambda: not self._stop.is_set())

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a graceful stop (SIGTERM): stop taking work, drain, commit, exit 0."""
        self._stop.set()

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._offsets)

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until `stop()` (drain, commit, 0) or a fatal error (commit what is
        finished, 1)."""
        self.subscribe()
        try:
            while True:
                code = self.step()
                if code is not None:
                    return code
        finally:
            self.health.forget("poll")

    def subscribe(self) -> None:
        self.consumer.subscribe([self.config.ingest_topic], listener=_Rebalance(self))
        log.info("worker_started", topic=self.config.ingest_topic, group=self.config.group_id)

    def step(self, poll_timeout_ms: int = 200) -> int | None:
        """One turn of the loop: bookkeeping, backpressure, one poll. Returns the exit code
        once the worker has ended (tests drive the loop with this, one turn at a time)."""
        if self._stop.is_set():
            return self._graceful()
        self.health.beat("poll")
        if self.pipeline.failed is not None:
            return self._fatal()
        self._drain_finished()
        self._commit(force=False)
        self._realign()
        self._backpressure()
        room = self.pipeline.max_messages - self.pipeline.in_flight
        records = self.consumer.poll(
            timeout_ms=poll_timeout_ms,
            max_records=max(1, min(room, self.config.kafka_max_poll_records)),
        )
        self._dispatch(records)
        self._update_lag()
        return None

    def _dispatch(self, records: dict[TopicPartition, Iterable[Any]]) -> None:
        for tp, batch in records.items():
            offsets = self._offsets.get(tp)
            if offsets is None:
                continue  # revoked while polling; the new owner reads these again
            if tp in self._realign_pending:
                continue  # fetched from the old position; read again from the committed one
            generation = self._generation[tp]
            for record in batch:
                offsets.started(record.offset)
                self._next_offset[tp] = record.offset + 1
                position = KafkaPosition(
                    topic=tp.topic, partition=tp.partition, offset=record.offset
                )
                stamp = getattr(record, "timestamp", None)
                self.pipeline.submit(
                    Inbound(
                        raw=record.value or b"",
                        position=position,
                        event_time=stamp / 1000 if isinstance(stamp, int) and stamp > 0 else None,
                    ),
                    self._on_done(tp, record.offset, generation),
                )

    def _on_done(
        self, tp: TopicPartition, offset: int, generation: int
    ) -> Callable[[Inbound], None]:
        def done(_: Inbound) -> None:
            self._finished.put(_Finished(tp, offset, generation))

        return done

    def _drain_finished(self) -> int:
        n = 0
        while True:
            try:
                item = self._finished.get_nowait()
            except queue.Empty:
                return n
            if self._generation.get(item.tp) == item.generation and item.tp in self._offsets:
                self._offsets[item.tp].finished(item.offset)
                n += 1

    def _committable(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        to_commit = committable(self._offsets, partitions)
        if to_commit:
            # Outcomes were acknowledged before their offsets were marked finished; flushing
            # here as well keeps "publish before commit" true even for a custom sink.
            self.flush()
        return to_commit

    def _commit(self, *, force: bool, partitions: Iterable[TopicPartition] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.config.kafka_commit_interval_s:
            return
        self._last_commit = now
        to_commit = self._committable(partitions if partitions is not None else self._offsets)
        if to_commit and commit(self.consumer, self._offsets, to_commit):
            log.debug(
                "committed",
                offsets={f"{t.topic}[{t.partition}]": o.offset for t, o in to_commit.items()},
            )

    def _realign(self) -> None:
        """Start each partition of the last assignment at its committed offset, unpaused.

        kafka-python 3 keeps the fetch position and the paused flag of a partition that
        stays with this consumer across a rebalance, while this worker starts its books for
        it afresh (work in flight was dropped at revoke). Left alone, a partition that
        backpressure had paused stayed paused for good (the fleet campaign found its lag
        stuck), and the dropped offsets were skipped: the next commit went past them."""
        if not self._realign_pending:
            return
        for tp in list(self._realign_pending):
            if tp not in self._offsets:
                self._realign_pending.discard(tp)
                continue
            try:
                committed = self.consumer.committed(tp)
            except KafkaError as exc:  # broker away: keep skipping its records, try again
                log.warning(
                    "realign_failed", partition=f"{tp.topic}[{tp.partition}]", error=repr(exc)
                )
                return
            if committed is not None:
                self.consumer.seek(tp, committed)
                self._offsets[tp].committed = committed
            elif self.config.kafka_auto_offset_reset == "earliest":
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek_to_end(tp)
            self.consumer.resume(tp)
            self._paused.discard(tp)
            self._realign_pending.discard(tp)

    def _backpressure(self) -> None:
        """Pause what must not be read now; resume the rest.

        A full window pauses every partition. Below it, a partition that already holds its
        share of the window (window / partitions) is paused while another partition has
        records waiting: the consumer hands out a partition's fetched records in one run, so
        a hot partition would otherwise fill every free place and starve the rest. When the
        others have nothing to read, the hot one may use the whole window."""
        in_flight = self.pipeline.in_flight
        assigned = set(self._offsets)
        if in_flight >= self.pipeline.max_messages:
            wanted = assigned
        else:
            share = max(1, self.pipeline.max_messages // max(1, len(assigned)))
            waiting = {tp for tp in assigned if self._records_waiting(tp)}
            wanted = {
                tp for tp in assigned if len(self._offsets[tp].pending) >= share and waiting - {tp}
            }
        pause, resume = wanted - self._paused, self._paused - wanted
        if pause:
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*resume)
        if pause or resume:
            log.debug(
                "backpressure",
                in_flight=in_flight,
                paused=sorted(f"{t.topic}[{t.partition}]" for t in wanted),
            )
        self._paused = wanted
        self.metrics.paused.set(len(wanted))

    def _records_waiting(self, tp: TopicPartition) -> bool:
        """Whether the log holds records of `tp` this worker has not read (by the high
        watermark of the last fetch; unknown counts as none)."""
        high = self.consumer.highwater(tp)
        if not high:  # unknown, or an empty partition
            return False
        position = self._next_offset.get(tp)
        if position is None:  # nothing read from it yet: where the consumer will start
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except Exception:  # not known yet (offsets still being looked up)
                return False
        return position is not None and high > position

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < self.lag_interval_s:
            return
        self._last_lag = now
        # Lag is the log end minus the first offset not finished (what a restart would read
        # again), not minus the fetch position: fetched and waiting is not done. The log end
        # is asked of the broker: a paused partition's highwater is never refreshed, and a
        # stalled worker (paused by backpressure) once reported no lag at all.
        partitions = list(self._offsets)
        try:
            ends = self.consumer.end_offsets(partitions, timeout_ms=1000) if partitions else {}
        except Exception:  # broker unreachable: keep the last values, try again next time
            return
        for tp, end in ends.items():
            offsets = self._offsets.get(tp)
            done = offsets.first_unfinished() if offsets is not None else None
            if done is None:
                try:
                    done = self.consumer.position(tp, timeout_ms=1000)
                except Exception:  # position unknown during a rebalance
                    continue
            if end is not None and done is not None:
                self.metrics.partition_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, end - done)
                )

    # -- endings ----------------------------------------------------------------------------

    def _graceful(self) -> int:
        log.info(
            "draining",
            in_flight=self.pipeline.in_flight,
            timeout_s=self.config.shutdown_timeout_s,
        )
        if self._offsets:
            self.consumer.pause(*self._offsets)
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        while self.pipeline.in_flight and time.monotonic() < deadline:
            if self.pipeline.failed is not None:
                return self._fatal()
            self.health.beat("poll")
            self.consumer.poll(timeout_ms=100)  # keeps the group session; partitions paused
            self._drain_finished()
            self._commit(force=False)
        drained = self.pipeline.in_flight == 0
        self._drain_finished()
        self._commit(force=True)
        self.consumer.close(autocommit=False)
        log.info("stopped", drained=drained, abandoned=self.pipeline.in_flight)
        return EXIT_OK

    def _fatal(self) -> int:
        """The engine or the sink failed: commit only what is finished, leave the rest to be
        redelivered, and exit non-zero so the orchestrator restarts us."""
        log.error("worker_fatal", error=repr(self.pipeline.failed))
        self._stop.set()
        self._drain_finished()
        try:
            self._commit(force=True)
        except Exception:
            log.warning("final_commit_failed", exc_info=True)
        self.consumer.close(autocommit=False)
        return EXIT_FATAL

    # -- rebalance: called while this thread waits inside poll() (or close()); kafka-python 3
    # -- runs the listener on its network thread, so never at the same time as the loop ----

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        self.metrics.rebalances.inc()
        partitions = [tp for tp in partitions if tp in self._offsets]
        self._finish_before_revoke(partitions)
        self._commit_on_revoke(partitions)
        for tp in partitions:
            # Work still running for these offsets is dropped from bookkeeping; the new
            # owner reads them again (a duplicate verdict at worst, same event_id).
            del self._offsets[tp]
            self._next_offset.pop(tp, None)
            self._generation[tp] = self._generation.get(tp, 0) + 1
        self._paused -= set(partitions)
        self.metrics.assigned_partitions.set(len(self._offsets))
        log.info("partitions_revoked", partitions=[f"{t.topic}[{t.partition}]" for t in partitions])

    def _commit_on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Commit what the revoked partitions finished, before the group moves them.

        kafka-python 3 calls rebalance listeners on its network thread, where a blocking
        commit() raises ("Cannot block on net.run() from the IO thread"): every commit on
        revoke failed until the fleet campaign showed it. commit_async only queues the
        request, ahead of the JoinGroup that follows this callback on the same connection,
        so the coordinator still takes it under the current generation."""
        try:
            to_commit = self._committable(partitions)
            if not to_commit:
                return
            self.consumer.commit_async(to_commit, callback=self._revoke_commit_done)
        except Exception:
            log.warning("commit_on_revoke_failed", exc_info=True)

    def _revoke_commit_done(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], response: object
    ) -> None:
        where = {f"{t.topic}[{t.partition}]": o.offset for t, o in offsets.items()}
        if isinstance(response, BaseException):
            # Redelivered to the next owner: a duplicate analysis, nothing lost.
            log.warning("commit_on_revoke_failed", offsets=where, error=repr(response))
        else:
            log.debug("committed_on_revoke", offsets=where)

    def _finish_before_revoke(self, partitions: list[TopicPartition]) -> None:
        """Give the revoked partitions' work in flight up to `kafka_revoke_budget_s` to
        finish, so that it is committed here instead of analysed again by the next owner.

        This runs inside poll() while the group rebalances: the budget delays the rebalance
        by at most that long (well inside the rebalance timeout, max.poll.interval.ms)."""
        budget = self.config.revoke_budget_s()
        deadline = time.monotonic() + budget

        def unfinished() -> int:
            return sum(len(self._offsets[tp].pending) for tp in partitions)

        waiting = unfinished()
        while True:
            self._drain_finished()
            left = unfinished()
            if not left or self.pipeline.failed is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:  # block until something finishes (or the budget ends), no busy wait
                item = self._finished.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self._finished.put(item)  # back for _drain_finished, which does the books
        if waiting:
            finished = waiting - unfinished()
            self.metrics.revoke_finished.inc(finished)
            self.metrics.revoke_abandoned.inc(waiting - finished)
            log.info(
                "revoke_budget",
                in_flight=waiting,
                finished=finished,
                abandoned=waiting - finished,
                budget_s=budget,
            )

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._offsets[tp] = PartitionOffsets()
            self._generation[tp] = self._generation.get(tp, 0) + 1
            self._realign_pending.add(tp)
        self.metrics.assigned_partitions.set(len(self._offsets))
        log.info(
            "partitions_assigned",
            partitions=sorted(f"{t.topic}[{t.partition}]" for t in self._offsets),
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: IngestLoop) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.worker.revoked(revoked)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.worker.assigned(assigned)
