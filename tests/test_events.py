"""Ingest messages: our schema, S3 notifications, and everything that is neither."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.events import RejectedEventError, parse_message
from skyra_stream.messages import IngestEvent

GOOD = {
    "event_id": "evt-1",
    "video_id": "vid-1",
    "uri": "s3://uploads/videos/a.mp4",
    "size_bytes": 1234,
    "content_type": "video/mp4",
    "submitted_at": "2026-11-24T10:00:00Z",
    "metadata": {"tenant": "acme"},
}


def _raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _code(raw: bytes, **limits: int) -> ErrorCode:
    with pytest.raises(SkyraError) as err:
        parse_message(raw, **limits)
    return err.value.code


def test_our_schema() -> None:
    [event] = parse_message(_raw(GOOD))
    assert event == IngestEvent.model_validate(GOOD)
    assert event.schema_version == 1
    assert event.metadata == {"tenant": "acme"}


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'"a string"',
        b"null",
        _raw({**GOOD, "event_id": ""}),
        _raw({**GOOD, "uri": 5}),
        _raw({k: v for k, v in GOOD.items() if k != "uri"}),
        _raw({**GOOD, "unexpected": 1}),
        _raw({**GOOD, "schema_version": 2}),
        _raw({**GOOD, "size_bytes": -1}),
        _raw({**GOOD, "uri": "s3://uploads/a\nb.mp4"}),
        _raw({**GOOD, "metadata": {"k": 1}}),
        _raw({**GOOD, "metadata": {f"k{i}": "v" for i in range(100)}}),
        b"[" * 100_000 + b"]" * 100_000,
        _raw({"Records": []}),
        _raw({"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {}}]}),
        _raw({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]}),
    ],
)
def test_invalid_messages_are_invalid_event(raw: bytes) -> None:
    assert _code(raw) is ErrorCode.INVALID_EVENT


def test_message_size_limit() -> None:
    assert _code(_raw(GOOD), max_message_bytes=50) is ErrorCode.MESSAGE_TOO_LARGE


def test_metadata_size_limit() -> None:
    doc = {**GOOD, "metadata": {"note": "x" * 2000}}
    assert parse_message(_raw(doc), max_metadata_bytes=4096)
    assert _code(_raw(doc), max_metadata_bytes=1024) is ErrorCode.INVALID_EVENT
    # The refused event is still named, so its dead letter carries its ids.
    with pytest.raises(RejectedEventError) as info:
        parse_message(_raw(doc), max_metadata_bytes=1024)
    assert info.value.event.event_id == GOOD["event_id"]


def _s3_record(key: str, version: str | None = "v1", seq: str = "0055") -> dict[str, object]:
    obj: dict[str, object] = {"key": key, "size": 2048, "eTag": "abc123", "sequencer": seq}
    if version:
        obj["versionId"] = version
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "s3": {"bucket": {"name": "uploads"}, "object": obj},
    }


def test_s3_notification_with_several_records() -> None:
    doc = {"Records": [_s3_record("videos/my+clip%281%29.mp4"), _s3_record("b.mp4", None, "77")]}
    first, second = parse_message(_raw(doc))
    assert first.uri == "s3://uploads/videos/my clip(1).mp4"
    assert first.version_id == "v1"
    assert first.size_bytes == 2048
    assert first.video_id == "uploads/videos/my clip(1).mp4"
    assert first.metadata == {"etag": "abc123", "sequencer": "0055"}
    assert second.version_id is None
    assert first.event_id != second.event_id


def test_s3_event_ids_are_deterministic_per_object_version() -> None:
    doc = {"Records": [_s3_record("a.mp4")]}
    assert parse_message(_raw(doc))[0].event_id == parse_message(_raw(doc))[0].event_id
    other = {"Records": [_s3_record("a.mp4", seq="0056")]}
    assert parse_message(_raw(doc))[0].event_id != parse_message(_raw(other))[0].event_id


def test_s3_notification_skips_removals_but_keeps_creations() -> None:
    removal = {**_s3_record("gone.mp4"), "eventName": "ObjectRemoved:Delete"}
    events = parse_message(_raw({"Records": [removal, _s3_record("new.mp4")]}))
    assert [e.uri for e in events] == ["s3://uploads/new.mp4"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_a_coded_error(raw: bytes) -> None:
    try:
        events = parse_message(raw)
    except SkyraError as exc:
        assert exc.code in (ErrorCode.INVALID_EVENT, ErrorCode.MESSAGE_TOO_LARGE)
    else:
        assert all(isinstance(e, IngestEvent) for e in events)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": _json,
            "video_id": _json,
            "uri": _json,
            "metadata": _json,
            "Records": _json,
            "size_bytes": _json,
        },
    )
)
def test_any_json_object_parses_or_raises_a_coded_error(doc: dict[str, object]) -> None:
    try:
        parse_message(json.dumps(doc).encode())
    except SkyraError as exc:
        assert exc.code is ErrorCode.INVALID_EVENT
