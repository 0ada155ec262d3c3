"""`skyra-stream produce`: publish ingest events for local files (uploaded first) or for every
object under an existing s3:// prefix, at a bounded rate."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from skyra_stream.media.fetch import FetchConfig, make_s3_client
from skyra_stream.media.inputs import collect_inputs
from skyra_stream.messages import IngestEvent
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.producers.kafka_config import KafkaConfig


def upload_files(
    fetch: FetchConfig, paths: Iterable[str], bucket: str, prefix: str = ""
) -> Iterator[IngestEvent]:
    """Upload each local video to s3://bucket/prefix<name> and describe it as an event."""
    s3 = make_s3_client(fetch)
    for raw in collect_inputs(list(paths)):
        path = Path(raw)
        key = f"{prefix}{path.name}"
        s3.upload_file(str(path), bucket, key)
        yield IngestEvent(
            event_id=str(uuid.uuid4()),
            video_id=key,
            uri=f"s3://{bucket}/{key}",
            size_bytes=path.stat().st_size,
        )


def list_prefix(fetch: FetchConfig, uri: str) -> Iterator[IngestEvent]:
    """One event per object under s3://bucket/prefix (paginated)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    s3 = make_s3_client(fetch)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            yield IngestEvent(
                event_id=str(uuid.uuid4()),
                video_id=key,
                uri=f"s3://{bucket}/{key}",
                size_bytes=obj.get("Size"),
            )


def publish(
    kafka: KafkaConfig, events: Iterable[IngestEvent], rate: float | None = None
) -> Iterator[IngestEvent]:
    """Send events (at most `rate` per second), yielding each once it is handed to Kafka;
    everything is flushed (acknowledged) before the generator ends."""
    producer = IngestProducer(kafka)
    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()
    try:
        for event in events:
            if interval:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval, time.monotonic())
            producer.send(event)
            yield event
        producer.flush()
    finally:
        producer.close()
