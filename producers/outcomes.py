"""Publish verdicts and dead letters: acks=all, retries, keyed by video_id, typed headers.

A publish returns a future that resolves only when the broker has acknowledged the record
(acks=all: every in-sync replica has it). The pipeline marks a message done, and so lets its
offset be committed, only after that: a verdict is never lost between publish and commit.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from kafka import KafkaProducer

from skyra_stream.messages import SCHEMA_VERSION, DeadLetter, Verdict
from skyra_stream.producers.kafka_config import connection_config
from skyra_stream.settings import Settings

CONTENT_TYPE = b"application/json"


def headers(kind: str, event_id: str | None) -> list[tuple[str, bytes]]:
    out = [
        ("content-type", CONTENT_TYPE),
        ("schema-version", str(SCHEMA_VERSION).encode()),
        ("message-type", kind.encode()),
    ]
    if event_id:
        out.append(("event-id", event_id.encode()))
    return out


class OutcomePublisher:
    """The worker's sink (`pipeline.Sink`)."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        config: dict[str, Any] = {
            **connection_config(settings),
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
        config.update(overrides)
        self._producer = KafkaProducer(**config)

    def publish(self, outcome: Verdict | DeadLetter) -> concurrent.futures.Future[None]:
        if isinstance(outcome, Verdict):
            topic, kind = self.settings.verdict_topic, "verdict"
        else:
            topic, kind = self.settings.dead_letter_topic, "dead_letter"
        key = outcome.video_id.encode() if outcome.video_id else None
        value = outcome.model_dump_json().encode()
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        sent = self._producer.send(
            topic, value=value, key=key, headers=headers(kind, outcome.event_id)
        )
        sent.add_callback(lambda _meta: done.set_result(None))
        sent.add_errback(done.set_exception)
        return done

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.close(timeout=timeout_s)
