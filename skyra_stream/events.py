"""Turn raw ingest messages into `IngestEvent`s: our own schema or S3 event notifications.

A message is untrusted bytes. Anything that is not a well-formed event raises a `SkyraError`
with `invalid_event` or `message_too_large`, so the caller can dead-letter it and move on.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import unquote_plus

from pydantic import ValidationError

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.messages import IngestEvent

# JSON nesting beyond this is never a real event and only costs the parser stack.
_MAX_DEPTH = 32


def parse_message(
    raw: bytes, *, max_message_bytes: int = 1 << 20, max_metadata_bytes: int = 16 << 10
) -> list[IngestEvent]:
    """Events in one message: one for our schema, one per ObjectCreated record for S3."""
    if len(raw) > max_message_bytes:
        raise SkyraError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message is {len(raw)} bytes, the limit is {max_message_bytes}",
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SkyraError(ErrorCode.INVALID_EVENT, f"not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise SkyraError(ErrorCode.INVALID_EVENT, "JSON nested too deeply") from None
    if _depth(doc) > _MAX_DEPTH:
        raise SkyraError(ErrorCode.INVALID_EVENT, "JSON nested too deeply")
    if not isinstance(doc, dict):
        raise SkyraError(
            ErrorCode.INVALID_EVENT, f"expected a JSON object, got {type(doc).__name__}"
        )
    events = _from_s3_notification(doc) if "Records" in doc else [validate_event(doc)]
    for event in events:
        if event.metadata_bytes() > max_metadata_bytes:
            raise RejectedEventError(
                ErrorCode.INVALID_EVENT,
                f"metadata is {event.metadata_bytes()} bytes, the limit is {max_metadata_bytes}",
                event=event,
            )
    return events


class RejectedEventError(SkyraError):
    """A well-formed event refused as a whole: its dead letter can still carry its ids, so the
    platform that sent it learns which upload was refused."""

    def __init__(self, code: ErrorCode, message: str, *, event: IngestEvent) -> None:
        super().__init__(code, message)
        self.event = event


def _depth(doc: Any) -> int:
    depth, level = 0, [doc]
    while level:
        depth += 1
        if depth > _MAX_DEPTH:
            return depth
        nxt: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                nxt.extend(node.values())
            elif isinstance(node, list):
                nxt.extend(node)
        level = nxt
    return depth


def validate_event(doc: dict[str, Any]) -> IngestEvent:
    """An event from a decoded document, or `invalid_event` with the fields that are wrong."""
    try:
        return IngestEvent.model_validate(doc)
    except ValidationError as exc:
        raise SkyraError(ErrorCode.INVALID_EVENT, short_errors(exc)) from None


def short_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _from_s3_notification(doc: dict[str, Any]) -> list[IngestEvent]:
    """One event per ObjectCreated record, with an event_id that a redelivery reproduces.

    S3 may deliver the same notification more than once; hashing bucket, key, version and
    sequencer gives every copy the same event_id, so consumers can drop the duplicates.
    """
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise SkyraError(ErrorCode.INVALID_EVENT, "S3 notification without Records")
    events = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise SkyraError(ErrorCode.INVALID_EVENT, f"Records[{i}] is not an object")
        name = record.get("eventName", "ObjectCreated:")
        if not isinstance(name, str) or not name.startswith(
            ("ObjectCreated:", "s3:ObjectCreated:")
        ):
            continue
        events.append(_from_s3_record(i, record))
    if not events:
        raise SkyraError(ErrorCode.INVALID_EVENT, "S3 notification holds no ObjectCreated record")
    return events


def _from_s3_record(i: int, record: dict[str, Any]) -> IngestEvent:
    s3 = record.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    if not isinstance(bucket, dict) or not isinstance(obj, dict):
        raise SkyraError(ErrorCode.INVALID_EVENT, f"Records[{i}].s3 lacks bucket or object")
    name, raw_key = bucket.get("name"), obj.get("key")
    if not isinstance(name, str) or not name or not isinstance(raw_key, str) or not raw_key:
        raise SkyraError(ErrorCode.INVALID_EVENT, f"Records[{i}] lacks bucket name or key")
    key = unquote_plus(raw_key)  # S3 notifications URL-encode keys, spaces as '+'
    version_id = _opt_str(obj.get("versionId"))
    sequencer = _opt_str(obj.get("sequencer"))
    etag = _opt_str(obj.get("eTag"))
    digest = hashlib.sha256(
        "\n".join([name, key, version_id or "", sequencer or etag or ""]).encode()
    ).digest()
    doc: dict[str, Any] = {
        "event_id": "s3-" + base64.b32encode(digest[:20]).decode().lower(),
        "video_id": f"{name}/{key}",
        "uri": f"s3://{name}/{key}",
        "version_id": version_id,
        "size_bytes": obj.get("size"),
        "submitted_at": record.get("eventTime"),
        "metadata": {k: v for k, v in (("etag", etag), ("sequencer", sequencer)) if v},
    }
    return validate_event(doc)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
