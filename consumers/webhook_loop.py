"""`skyra-stream webhooks`: read the verdict and dead-letter topics, record async jobs'
outcomes for polling, and deliver each outcome whose event carries a callback as a signed
webhook.

Nothing is lost and nothing blocks: each record is delivered on a pool of threads
(`SKYRA_WEBHOOK_CONCURRENCY`), so one slow or dead receiver holds one thread, not the
others; a partition's offset is committed only up to the first record whose delivery (or
`webhook_failed` record, on `SKYRA_WEBHOOK_DEAD_LETTER_TOPIC`, acknowledged by the broker) is
not done yet, so a restart redelivers what was in flight, with the same `webhook-id`, which
receivers drop as duplicates. When the pool is full the loop pauses its partitions and keeps
polling, so the group never mistakes a slow receiver for a dead consumer.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from skyra_stream.consumers.ingest_loop import make_consumer
from skyra_stream.consumers.offsets import PartitionOffsets, commit, committable
from skyra_stream.decisions.job_store import DeliveryState, JobStore, is_job
from skyra_stream.decisions.verdicts import build_dead_letter
from skyra_stream.delivery.webhooks import WebhookSender
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.messages import DeadLetter, Verdict
from skyra_stream.metrics import Metrics
from skyra_stream.producers.kafka_config import KafkaConfig
from skyra_stream.producers.outcomes import OutcomePublisher, headers

log = structlog.get_logger(__name__)


def make_webhook_consumer(config: KafkaConfig, group_id: str, **overrides: Any) -> KafkaConsumer:
    """The worker's consumer config, in the webhooks' group; no static membership."""
    return make_consumer(config, **{"group_id": group_id, "group_instance_id": None, **overrides})


class WebhookLoop:
    def __init__(
        self,
        config: KafkaConfig,
        sender: WebhookSender,
        *,
        dead_letter_topic: str,
        group_id: str = "skyra-webhooks",
        store: JobStore | None = None,
        concurrency: int = 32,
        metrics: Metrics | None = None,
        consumer: KafkaConsumer | None = None,
        publisher: OutcomePublisher | None = None,
        on_delivered: Callable[[str], None] = lambda event_id: None,
    ) -> None:
        self.config = config
        self.sender = sender
        self.dead_letter_topic = dead_letter_topic
        self.store = store
        self.metrics = metrics or Metrics()
        self.consumer = consumer or make_webhook_consumer(config, group_id)
        # This loop publishes only webhook_failed records: no review copies, no tickets.
        self.publisher = publisher or OutcomePublisher(replace(config, review_topic=None))
        self.on_delivered = on_delivered
        self.concurrency = concurrency
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, "webhook")
        self._finished: queue.SimpleQueue[tuple[TopicPartition, int]] = queue.SimpleQueue()
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._in_flight = 0
        self._paused = False
        self._assigned = False
        self._stop = threading.Event()
        self._last_commit = 0.0

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        """Partitions assigned (read from the probe's thread: kafka-python's assignment is a
        snapshot, safe to read)."""
        return self._assigned and not self._stop.is_set()

    def run(self) -> int:
        topics = [self.config.verdict_topic, self.config.dead_letter_topic]
        self.consumer.subscribe(topics)
        log.info("webhooks_started", topics=topics)
        try:
            while not self._stop.is_set():
                self.step()
            self._drain(timeout_s=self.config.shutdown_timeout_s)
            return 0
        except Exception:
            log.exception("webhooks_failed")
            return 1
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.consumer.close(autocommit=False)
            self.publisher.close()

    def step(self) -> None:
        self._collect()
        full = self._in_flight >= self.concurrency
        assigned = self.consumer.assignment()
        if full and not self._paused and assigned:
            self.consumer.pause(*assigned)
            self._paused = True
        elif not full and self._paused:
            self.consumer.resume(*self.consumer.paused())
            self._paused = False
        # Short polls while deliveries run, so that finished ones free their place quickly.
        wait_ms = 20 if self._in_flight else 200
        room = max(1, self.concurrency - self._in_flight)
        batch = self.consumer.poll(timeout_ms=wait_ms, max_records=room)
        self._assigned = bool(self.consumer.assignment())
        for tp, records in batch.items():
            offsets = self._offsets.setdefault(tp, PartitionOffsets())
            for record in records:
                offsets.started(record.offset)
                self._in_flight += 1
                self._pool.submit(self._handle, tp, record)
        self._commit(force=False)

    # -- one record --------------------------------------------------------------------------

    def _handle(self, tp: TopicPartition, record: Any) -> None:
        try:
            outcome = _parse(record.topic, record.value, self.config)
            if outcome is not None:
                if self.store is not None and is_job(outcome.event_id):
                    self._record_job(outcome)
                if outcome.callback is not None:
                    self._deliver(outcome)
        except Exception:  # a bug: logged; the record still finishes, never a stuck loop
            log.exception("webhook_record_failed", offset=record.offset)
        finally:
            self._finished.put((tp, record.offset))

    def _record_job(self, outcome: Verdict | DeadLetter) -> None:
        try:
            self.store.finished(outcome)  # type: ignore[union-attr]
        except Exception as exc:  # a store that is down: polling is stale, webhooks go on
            log.warning("job_store_write_failed", job_id=outcome.event_id, error=repr(exc))

    def _job_delivery(
        self, job_id: str, state: DeliveryState, attempts: int, why: str | None
    ) -> None:
        """Where a job's webhook stands, for GET /v1/jobs/{id}; a store that is down only
        makes polling stale."""
        try:
            self.store.delivery(job_id, state, attempts, why)  # type: ignore[union-attr]
        except Exception as exc:
            log.warning("job_store_write_failed", job_id=job_id, error=repr(exc))

    def _deliver(self, outcome: Verdict | DeadLetter) -> None:
        assert outcome.callback is not None
        event_id = outcome.event_id or "unknown"
        kind = "verdict.ready" if isinstance(outcome, Verdict) else "job.failed"
        data = json.loads(outcome.model_dump_json())
        job = event_id if self.store is not None and is_job(event_id) else None
        result = self.sender.deliver(
            outcome.callback.url,
            outcome.callback.tenant,
            f"msg_{event_id}",
            kind,
            data,
            on_retry=(lambda n, why: self._job_delivery(job, "retrying", n, why)) if job else None,
        )
        if job is not None:
            state: DeliveryState = "delivered" if result.delivered else "failed"
            self._job_delivery(
                job, state, result.attempts, None if result.delivered else result.detail
            )
        self.metrics.webhook_latency.observe(
            max(0.0, (datetime.now(UTC) - outcome.created_at).total_seconds())
        )
        if result.delivered:
            self.metrics.webhook_deliveries.labels("delivered").inc()
            log.info("webhook_delivered", event_id=event_id, attempts=result.attempts)
            self.on_delivered(event_id)
            return
        self.metrics.webhook_deliveries.labels("failed").inc()
        log.warning(
            "webhook_failed", event_id=event_id, attempts=result.attempts, why=result.detail
        )
        letter = build_dead_letter(
            raw=outcome.model_dump_json().encode(),
            error=SkyraError(
                ErrorCode.WEBHOOK_FAILED,
                f"not delivered to {outcome.callback.url[:300]} after {result.attempts} "
                f"attempts: {result.detail[:500]}",
            ),
            attempts=max(1, result.attempts),
        ).model_copy(update={"event_id": event_id, "callback": outcome.callback})
        self.publisher.send(
            self.dead_letter_topic,
            letter.model_dump_json().encode(),
            event_id.encode(),
            headers("dead_letter", event_id),
        ).result(timeout=120)  # acknowledged before the offset may be committed

    # -- offsets -----------------------------------------------------------------------------

    def _collect(self) -> None:
        while True:
            try:
                tp, offset = self._finished.get_nowait()
            except queue.Empty:
                return
            self._in_flight -= 1
            offsets = self._offsets.get(tp)
            if offsets is not None:
                offsets.finished(offset)

    def _commit(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.config.kafka_commit_interval_s:
            return
        self._last_commit = now
        assigned = self.consumer.assignment()
        for tp in [tp for tp in self._offsets if tp not in assigned]:
            del self._offsets[tp]  # revoked: its in-flight records are redelivered
        to_commit = committable(self._offsets, list(self._offsets))
        if to_commit:
            commit(self.consumer, self._offsets, to_commit)

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
            self._collect()
        self._commit(force=True)


def _parse(topic: str, raw: bytes | None, config: KafkaConfig) -> Verdict | DeadLetter | None:
    if not raw:
        return None
    try:
        if topic == config.verdict_topic:
            return Verdict.model_validate_json(raw)
        letter = DeadLetter.model_validate_json(raw)
    except ValidationError:
        log.warning("webhook_unreadable_record", topic=topic)
        return None
    if letter.reason.code == ErrorCode.WEBHOOK_FAILED.value:
        return None  # never deliver a failed delivery's own record again
    return letter
