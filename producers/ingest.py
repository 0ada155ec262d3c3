"""Publish ingest events (for tools, the demo and tests)."""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

from skyra_stream.messages import IngestEvent
from skyra_stream.producers.kafka_config import KafkaConfig, connection_config
from skyra_stream.producers.outcomes import headers


class IngestProducer:
    def __init__(self, config: KafkaConfig, **overrides: Any) -> None:
        self.config = config
        self._producer = KafkaProducer(
            **{**connection_config(config), "acks": "all", "retries": 10, **overrides}
        )

    def send(self, event: IngestEvent, topic: str | None = None) -> Any:
        """Queue one event; the returned future resolves to its record's partition and offset."""
        return self._producer.send(
            topic or self.config.ingest_topic,
            key=event.video_id.encode(),
            value=event.model_dump_json(exclude_none=True).encode(),
            headers=headers("ingest_event", event.event_id),
        )

    def send_raw(self, value: bytes, key: bytes | None = None, topic: str | None = None) -> Any:
        """Any bytes, for tools that replay or fuzz the ingest topic."""
        return self._producer.send(topic or self.config.ingest_topic, key=key, value=value)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close()
