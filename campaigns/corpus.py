"""What the campaigns feed the worker: real videos of many kinds and every kind of bad input,
each with the outcome the worker owes it.

Every planned message knows what it must end as: a verdict, or a dead letter with one of a
few codes. Messages that carry no usable id are recognised by their Kafka position (the id
the worker gives them, `kafka:<topic>:<partition>:<offset>`), which the producer learns when
the broker acknowledges the send.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyra_stream.events import parse_message
from skyra_stream.media.samples import VideoSpec, write_audio_only, write_video

VERDICT = "verdict"

# Valid videos of many codecs and containers (small, so that a campaign is about the worker
# and not about the encoder); each is uploaded once and referenced by many events.
VALID: dict[str, VideoSpec] = {
    "h264.mp4": VideoSpec(frames=30),
    "hevc10.mkv": VideoSpec(
        codec="libx265",
        pix_fmt="yuv420p10le",
        frames=30,
        options={"x265-params": "log-level=error"},
        seed=1,
    ),
    "vp9.webm": VideoSpec(codec="libvpx-vp9", frames=30, seed=2),
    "av1.mkv": VideoSpec(codec="libsvtav1", frames=30, seed=3),
    "mpeg4.avi": VideoSpec(codec="mpeg4", frames=30, seed=4),
    "h264.ts": VideoSpec(frames=30, seed=5),
    "bframes.mp4": VideoSpec(options={"bf": "3"}, gop=12, frames=30, seed=6),
    "rotated.mp4": VideoSpec(rotation=90, frames=30, seed=7),
    "portrait.mp4": VideoSpec(width=240, height=426, frames=30, seed=8),
    "vfr.mp4": VideoSpec(frames=20, times_s=[i * i / 100 for i in range(20)], seed=9),
    "audio.mp4": VideoSpec(audio=True, frames=30, seed=10),
    "five_frames.mp4": VideoSpec(frames=5, seed=11),
    "loop.gif": VideoSpec(codec="gif", pix_fmt="rgb8", fps=10, frames=20, seed=12),
    "ffv1_odd.mkv": VideoSpec(codec="ffv1", width=321, height=241, pix_fmt="yuv444p", seed=13),
}

# Inputs the worker must refuse, by the object's key and the dead-letter codes it may get.
BAD_OBJECTS: dict[str, frozenset[str]] = {
    "bad/notes.mp4": frozenset({"not_a_video"}),
    "bad/random.bin": frozenset({"not_a_video"}),
    "bad/truncated.mp4": frozenset({"not_a_video", "decode_failed"}),
    "bad/audio_only.m4a": frozenset({"no_video_stream"}),
    "bad/oversized.mp4": frozenset({"object_too_large"}),
    "bad/bomb_8k.mp4": frozenset({"video_too_large"}),
    "bad/forty_minutes.mp4": frozenset({"video_too_long"}),
}


@dataclass(frozen=True)
class Objects:
    """Keys in the allowed bucket, and one real video in a bucket the worker may not read."""

    bucket: str
    valid: list[str]
    private_bucket: str
    private_key: str
    object_cap_bytes: int


def build_objects(folder: Path, s3: Any, bucket: str, private_bucket: str, cap: int) -> Objects:
    """Encode the corpus and upload it; `cap` is the worker's SKYRA_MAX_OBJECT_BYTES."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (bucket, private_bucket):
        s3.create_bucket(Bucket=name)
    valid = []
    for name, spec in VALID.items():
        path = write_video(folder / name, spec)
        s3.upload_file(str(path), bucket, f"v/{name}")
        valid.append(f"v/{name}")
    h264 = (folder / "h264.mp4").read_bytes()
    rng = random.Random(7)
    bodies: dict[str, bytes] = {
        "bad/notes.mp4": b"this is not a video\n" * 200,
        "bad/random.bin": rng.randbytes(64 << 10),
        "bad/truncated.mp4": h264[: len(h264) // 3],
        "bad/audio_only.m4a": write_audio_only(folder / "audio_only.m4a").read_bytes(),
        # A real video padded past the cap: refused on the object's size, never decoded.
        "bad/oversized.mp4": h264 + rng.randbytes(cap + 4096),
        # A few KB on disk, 33 Mpixel per frame once decoded.
        "bad/bomb_8k.mp4": write_video(
            folder / "bomb.mp4",
            VideoSpec(width=7680, height=4320, frames=2, options={"preset": "ultrafast"}),
        ).read_bytes(),
        "bad/forty_minutes.mp4": write_video(
            folder / "forty.mp4",
            VideoSpec(width=64, height=64, fps=1, frames=40 * 60, options={"preset": "ultrafast"}),
        ).read_bytes(),
    }
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=private_bucket, Key="secret.mp4", Body=h264)
    return Objects(bucket, valid, private_bucket, "secret.mp4", cap)


@dataclass
class Planned:
    """One ingest message and what it must end as. `ids` is filled in once it is parsed
    (events) or acknowledged by the broker (messages that carry no usable id)."""

    kind: str
    raw: bytes
    expect: frozenset[str]
    key: bytes | None = None
    ids: list[str] = field(default_factory=list)
    by_position: bool = False  # the worker cannot read an id from it
    copy_of: str | None = None  # an intentional duplicate of this event id


def _event(event_id: str, uri: str, **extra: Any) -> bytes:
    doc = {"event_id": event_id, "video_id": f"video-{event_id}", "uri": uri, **extra}
    return json.dumps(doc).encode()


def _notification(bucket: str, keys: list[str], tag: str) -> bytes:
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": bucket},
                "object": {"key": key, "size": 1000, "sequencer": f"{tag}{i:04d}"},
            },
        }
        for i, key in enumerate(keys)
    ]
    return json.dumps({"Records": records}).encode()


def plan(objects: Objects, n: int, *, seed: int, proxy_url: str) -> list[Planned]:
    """At least `n` messages, about two thirds valid videos, in a seeded random order."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    serial = itertools.count()
    bucket = objects.bucket
    items: list[Planned] = []

    def valid(i: int) -> Planned:
        key = rng.choice(objects.valid)
        eid = f"{run}-ok-{next(serial)}"
        return Planned(
            "valid:" + key.rsplit(".", 1)[-1],
            _event(eid, f"s3://{bucket}/{key}"),
            frozenset({VERDICT}),
            ids=[eid],
        )

    def refused(kind: str, uri: str, codes: frozenset[str], **extra: Any) -> Planned:
        eid = f"{run}-{kind}-{next(serial)}"
        return Planned(kind, _event(eid, uri, **extra), codes, ids=[eid])

    bad: list[Planned] = []
    for key, codes in BAD_OBJECTS.items():
        bad.append(refused(key.split("/")[1].split(".")[0], f"s3://{bucket}/{key}", codes))
    not_allowed = frozenset({"uri_not_allowed"})
    bad += [
        refused(
            "other_bucket", f"s3://{objects.private_bucket}/{objects.private_key}", not_allowed
        ),
        refused(
            "http_scheme",
            f"{proxy_url}/{objects.private_bucket}/{objects.private_key}",
            not_allowed,
        ),
        refused("file_scheme", "file:///etc/passwd", not_allowed),
        refused("metadata_ip", "http://169.254.169.254/latest/meta-data/", not_allowed),
        refused("missing", f"s3://{bucket}/nope/{run}.mp4", frozenset({"object_not_found"})),
        refused(
            "declared_too_large",
            f"s3://{bucket}/{objects.valid[0]}",
            frozenset({"object_too_large"}),
            size_bytes=objects.object_cap_bytes + 1,
        ),
        refused(
            "metadata_too_large",
            f"s3://{bucket}/{objects.valid[0]}",
            frozenset({"invalid_event"}),
            metadata={"k": "x" * 4000},
        ),
    ]
    invalid = frozenset({"invalid_event"})
    by_position = [
        Planned("malformed_json", b'{"event_id": "' + run.encode() + b'", ', invalid),
        Planned("not_json", b"\xff\xfe\x00 binary " + run.encode(), invalid),
        Planned("schema_invalid", json.dumps({"event_id": run, "video_id": "x"}).encode(), invalid),
        Planned("json_array", b"[1, 2, 3]", invalid),
        Planned("deep_json", b"[" * 200 + b"]" * 200, invalid),
        Planned(
            "message_too_large",
            _event(f"{run}-huge", f"s3://{bucket}/x.mp4", padding="p" * (80 << 10)),
            frozenset({"message_too_large"}),
        ),
    ]
    for p in by_position:
        p.by_position = True

    # Mix: ~20 % bad objects and URIs, ~8 % unparseable, ~6 % notifications, ~6 % duplicates.
    i = 0
    while len(items) < n:
        roll = rng.random()
        if roll < 0.20:
            proto = rng.choice(bad)
            items.append(
                refused(
                    proto.kind,
                    json.loads(proto.raw)["uri"],
                    proto.expect,
                    **{
                        k: v
                        for k, v in json.loads(proto.raw).items()
                        if k in ("size_bytes", "metadata")
                    },
                )
            )
        elif roll < 0.28:
            proto = rng.choice(by_position)
            items.append(Planned(proto.kind, proto.raw, proto.expect, by_position=True))
        elif roll < 0.34:
            keys = rng.sample(objects.valid, 2)
            raw = _notification(bucket, keys, f"{run}{i:06d}")
            ids = [e.event_id for e in parse_message(raw)]
            items.append(Planned("s3_notification", raw, frozenset({VERDICT}), ids=ids))
        elif roll < 0.40 and items:
            original = rng.choice([p for p in items if p.ids and not p.by_position])
            items.append(
                Planned(
                    "duplicate",
                    original.raw,
                    original.expect,
                    ids=list(original.ids),
                    copy_of=original.ids[0],
                )
            )
        else:
            items.append(valid(i))
        i += 1
    # Every kind at least once, whatever the dice said.
    kinds = {p.kind for p in items}
    items += [p for p in bad + by_position if p.kind not in kinds]
    return items


def batches(items: list[Planned], size: int) -> Iterator[list[Planned]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
