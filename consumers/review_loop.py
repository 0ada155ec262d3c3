"""`skyra-stream reviews`: review-results topic -> audit topic (or a dead letter).

Small and CPU-only, so it runs as its own Deployment beside the GPU workers. The loop is the
worker's contract in miniature: each polled batch is validated, every audit record or dead
letter is acknowledged by the broker (acks=all), and only then are the offsets committed.
A crash redelivers the batch; the audit record's `review_id` lets a reader drop the copy.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any

import structlog
from kafka import KafkaConsumer

from skyra_stream.consumers.ingest_loop import make_consumer
from skyra_stream.decisions.review_events import audit_record, parse_review
from skyra_stream.decisions.review_tickets import ReviewTickets
from skyra_stream.decisions.verdicts import build_dead_letter
from skyra_stream.errors import ErrorCode, SkyraError, internal_error
from skyra_stream.messages import KafkaPosition
from skyra_stream.metrics import Metrics
from skyra_stream.producers.kafka_config import KafkaConfig
from skyra_stream.producers.outcomes import OutcomePublisher, headers

log = structlog.get_logger(__name__)

TICKET_FAILED = SkyraError(
    ErrorCode.INVALID_REVIEW,
    "the review's ticket does not verify for this verdict: it was never sent "
    "to review, or it was edited since (pass the review-ticket header back "
    "untouched with the verdict as the review topic carried it)",
)


def make_review_consumer(config: KafkaConfig, **overrides: Any) -> KafkaConsumer:
    """The worker's consumer config, in the review group; no static membership (the
    instance id, when set, names a member of the ingest group)."""
    consumer = make_consumer(
        config,
        **{"group_id": config.review_group_id, "group_instance_id": None, **overrides},
    )
    consumer.subscribe([config.review_results_topic])
    return consumer


class ReviewLoop:
    def __init__(
        self,
        config: KafkaConfig,
        *,
        tickets: ReviewTickets,
        consumer: KafkaConsumer | None = None,
        publisher: OutcomePublisher | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.tickets = tickets
        self.consumer = consumer or make_review_consumer(config)
        self.publisher = publisher or OutcomePublisher(config, tickets=tickets)
        self._stop = threading.Event()
        self.audited = 0
        self.dead_lettered = 0

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        """Readiness: the loop has not been asked to stop (its group membership is Kafka's)."""
        return not self._stop.is_set()

    def run(self) -> int:
        try:
            while not self._stop.is_set():
                batch = self.consumer.poll(timeout_ms=500)
                records = [r for part in batch.values() for r in part]
                if not records:
                    continue
                pending = [self._handle(r) for r in records]
                self.publisher.flush()
                for future in pending:
                    future.result(timeout=120)  # acknowledged, or raise: nothing committed
                self.consumer.commit()
        except Exception:
            log.exception("review_worker_failed")
            return 1
        finally:
            self.consumer.close(autocommit=False)
            self.publisher.close()
        return 0

    def _handle(self, record: Any) -> concurrent.futures.Future[None]:
        raw: bytes = record.value or b""
        position = KafkaPosition(
            topic=record.topic, partition=record.partition, offset=record.offset
        )
        try:
            review = parse_review(raw, self.config.max_message_bytes)
            if not self.tickets.verify(review.verdict, review.ticket):
                self.metrics.review_results.labels("ticket_failed").inc()
                return self._dead_letter(raw, TICKET_FAILED, position)
            audit = audit_record(review)
        except SkyraError as exc:
            self.metrics.review_results.labels("invalid").inc()
            return self._dead_letter(raw, exc, position)
        except Exception as exc:  # a bug: still one dead letter, never a crashed loop
            log.exception("review_failed", position=position.as_id())
            return self._dead_letter(raw, internal_error(exc), position)
        self.audited += 1
        self.metrics.review_results.labels("audited").inc()
        log.info("review_audited", review_id=audit.review_id, verdict=audit.verdict_event_id)
        return self.publisher.send(
            self.config.audit_topic,
            audit.model_dump_json().encode(),
            audit.video_id.encode(),
            headers("audit", audit.review_id),
        )

    def _dead_letter(
        self, raw: bytes, error: SkyraError, position: KafkaPosition
    ) -> concurrent.futures.Future[None]:
        self.dead_lettered += 1
        log.info("review_rejected", code=error.code.value, reason=error.message[:300])
        letter = build_dead_letter(raw=raw, error=error, position=position)
        review_id = _review_id(raw)
        if review_id is not None:  # so that a redelivered copy is dropped by its id
            letter = letter.model_copy(update={"event_id": review_id})
        return self.publisher.publish(letter)


def _review_id(raw: bytes) -> str | None:
    """The review's own id when the bytes at least parse as JSON with one."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    value = doc.get("review_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 512 else None
