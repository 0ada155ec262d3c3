"""Publish verdicts and dead letters: acks=all, retries, keyed by video_id, typed headers.

A publish returns a future that resolves only when the broker has acknowledged the record
(acks=all: every in-sync replica has it). The pipeline marks a message done, and so lets its
offset be committed, only after that: a verdict is never lost between publish and commit.

A verdict carries its decision's action as the `action` header, so a downstream consumer can
route (block queue, review queue, allow) without parsing JSON. With `SKYRA_REVIEW_TOPIC` set,
a verdict whose action is `review` is also published there with its review ticket (the
`review-ticket` header, see decisions/review_tickets.py), and the publish resolves only when
both records are acknowledged.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from kafka import KafkaProducer

from skyra_stream.decisions.review_tickets import HEADER, ReviewTickets
from skyra_stream.messages import SCHEMA_VERSION, DeadLetter, Verdict
from skyra_stream.producers.kafka_config import KafkaConfig, connection_config

CONTENT_TYPE = b"application/json"


def headers(kind: str, event_id: str | None, **extra: str) -> list[tuple[str, bytes]]:
    out = [
        ("content-type", CONTENT_TYPE),
        ("schema-version", str(SCHEMA_VERSION).encode()),
        ("message-type", kind.encode()),
    ]
    if event_id:
        out.append(("event-id", event_id.encode()))
    out += [(name.replace("_", "-"), value.encode()) for name, value in extra.items()]
    return out


class OutcomePublisher:
    """The worker's sink (`pipeline.Sink`)."""

    def __init__(
        self, config: KafkaConfig, *, tickets: ReviewTickets | None = None, **overrides: Any
    ) -> None:
        if config.review_topic and tickets is None:
            raise ValueError("verdicts sent to review need a review ticket key")
        self.config = config
        self.tickets = tickets
        kwargs: dict[str, Any] = {
            **connection_config(config),
            "acks": "all",
            "retries": 10,
            "retry_backoff_ms": 200,
            "request_timeout_ms": 30_000,
            "delivery_timeout_ms": 120_000,
            # One request in flight per connection keeps retried batches in order.
            "max_in_flight_requests_per_connection": 1,
            "linger_ms": 5,
            "compression_type": None,
            "max_request_size": 4 << 20,
        }
        kwargs.update(overrides)
        self._producer = KafkaProducer(**kwargs)

    def publish(self, outcome: Verdict | DeadLetter) -> concurrent.futures.Future[None]:
        extra: dict[str, str] = {}
        topics = []
        review_topic: str | None = None
        if isinstance(outcome, Verdict):
            kind = "verdict"
            topics.append(self.config.verdict_topic)
            if outcome.decision is not None:
                extra = {
                    "action": outcome.decision.action,
                    "policy_id": outcome.decision.policy_id,
                    "policy_version": outcome.decision.policy_version,
                }
                if outcome.decision.action == "review" and self.config.review_topic:
                    review_topic = self.config.review_topic
        else:
            kind = "dead_letter"
            topics.append(self.config.dead_letter_topic)
        key = outcome.video_id.encode() if outcome.video_id else None
        value = outcome.model_dump_json().encode()
        record_headers = headers(kind, outcome.event_id, **extra)
        sent = [
            self._producer.send(topic, value=value, key=key, headers=record_headers)
            for topic in topics
        ]
        if review_topic is not None and isinstance(outcome, Verdict) and self.tickets:
            ticket = (HEADER, self.tickets.issue(outcome).encode())
            sent.append(
                self._producer.send(
                    review_topic, value=value, key=key, headers=[*record_headers, ticket]
                )
            )
        return _all_acked(sent)

    def send(
        self, topic: str, value: bytes, key: bytes | None, record_headers: list[tuple[str, bytes]]
    ) -> concurrent.futures.Future[None]:
        """One record to any topic, acknowledged like the rest (the review loop's audit)."""
        return _all_acked(
            [self._producer.send(topic, value=value, key=key, headers=record_headers)]
        )

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.close(timeout=timeout_s)


def _all_acked(sent: list[Any]) -> concurrent.futures.Future[None]:
    """A future that resolves when every one of kafka-python's record futures succeeded,
    and fails with the first error."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    remaining = [len(sent)]
    lock = threading.Lock()

    def ok(_meta: object) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0 and not done.done():
                done.set_result(None)

    def failed(exc: BaseException) -> None:
        with lock:
            if not done.done():
                done.set_exception(exc)

    for record in sent:
        record.add_callback(ok)
        record.add_errback(failed)
    return done
