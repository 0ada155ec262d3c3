"""Messages that cross a process boundary: ingest events, verdicts and dead letters.

Each model carries `schema_version`; the JSON Schemas under `schemas/` are generated from
these classes (`skyra-stream schema --write schemas/`) and a test fails when they drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from skyra_stream.errors import ErrorCode

SCHEMA_VERSION: Literal[1] = 1

# Hard ceilings of the schema itself; the configurable limits (settings.Limits) sit below them.
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 4096

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$")
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class IngestEvent(_Message):
    """One uploaded video to analyse. `event_id` is the idempotency key."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Identifier = Field(description="Idempotency key: one verdict or dead letter per id.")
    video_id: Identifier = Field(description="The platform's id of the video; the output key.")
    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="`s3://bucket/key` in an allowed bucket, or `file://` under a local root."
    )
    version_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None, description="S3 object version to pin; the latest when absent."
    )
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    content_type: Annotated[str, StringConstraints(max_length=255)] | None = None
    submitted_at: datetime | None = Field(
        default=None, description="When the upload was made; latency is measured from here."
    )
    metadata: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS)],
        Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)],
    ] = Field(default_factory=dict, max_length=MAX_METADATA_KEYS)
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description="Deliver the verdict or dead letter here as a signed webhook "
        "(`skyra-stream webhooks`), for the event's tenant; checked against the tenant's "
        "allowlist before any connection.",
    )

    @field_validator("uri", "callback_url")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("contains control characters")
        return value

    def metadata_bytes(self) -> int:
        """Encoded size of `metadata`, the quantity `Limits.max_metadata_bytes` bounds."""
        return sum(len(k.encode()) + len(v.encode()) for k, v in self.metadata.items())


class Callback(_Message):
    """Where an outcome is delivered as a signed webhook, and for which tenant (whose secret
    signs it and whose allowlist the URL must be on)."""

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    tenant: str | None = None


class Source(_Message):
    uri: str
    version_id: str | None = None
    etag: str | None = None
    size_bytes: int | None = None


BBox = tuple[float, float, float, float]
BBoxFormat = Literal["pixel", "normalized", "none"]


class Region(_Message):
    """A grounded span: when (seconds on the video's clock) and where (normalised box)."""

    start_s: float | None = Field(description="Clamped to [0, duration]; null when not given.")
    end_s: float | None = Field(description="Clamped to [0, duration], >= start_s.")
    bbox: BBox | None = Field(
        description="[x1, y1, x2, y2] in 0..1 of the displayed frame; null for the whole frame "
        "or a box that could not be used (degenerate, unparseable)."
    )
    bbox_format: BBoxFormat = Field(
        description="How the model wrote the box: pixel coordinates of the frame it saw, "
        "normalised values, or none (absent or all zeros)."
    )
    evidence: str = Field(description="The sentence of the reasoning around the tag.")


class Artifact(Region):
    """A generation artifact the model found, with its place in the taxonomy."""

    type: str = Field(description="The L3 name as the model emitted it.")
    category: str | None = Field(description="L2 category; null when not in the taxonomy.")
    group: str | None = Field(description="L1 group; null when not in the taxonomy.")
    in_taxonomy: bool


class VideoInfo(_Message):
    duration_s: float
    width: int = Field(description="Displayed width (after rotation).")
    height: int = Field(description="Displayed height (after rotation).")
    fps: float | None
    codec: str
    frames_sampled: int
    timestamps_s: list[float]


class ModelInfo(_Message):
    name: str
    revision: str | None = None


class Timings(_Message):
    """Milliseconds per stage of the one analysis path, the same for every front door."""

    fetch: float | None = Field(default=None, description="Download (null: nothing fetched).")
    provenance: float | None = Field(
        default=None, description="Reading the C2PA content credentials (null: not read)."
    )
    decode: float | None = Field(default=None, description="Sampling the 16 frames.")
    queue: float | None = Field(default=None, description="Waiting for a place in the engine.")
    infer: float | None = Field(default=None, description="Inside the engine.")
    total: float | None = Field(
        default=None,
        description="From acceptance (the message read, the HTTP request admitted, the CLI "
        "input started) to the finished verdict.",
    )


class WorkerInfo(_Message):
    id: str
    version: str


PROBABILITY_DOC = (
    "P(fake) after the calibration named in `calibration` (the file made for this model from "
    "labelled data): what policies threshold. Equal to `fake_probability_raw` when no "
    "calibration is set. Null when the model gave no usable answer."
)
RAW_PROBABILITY_DOC = (
    "The model's own P(fake): the probability of `Fake` at the answer position, renormalised "
    "over Fake and Real. Not calibrated (greedy RL-tuned models are overconfident)."
)


class CalibrationRef(_Message):
    """Which calibration turned `fake_probability_raw` into `fake_probability`."""

    id: str = Field(description="The calibration file's id.")
    method: Literal["temperature", "isotonic"]


class Segment(_Message):
    """One window of a long upload, analysed like a whole short video."""

    start_s: float = Field(description="Window start on the video's clock.")
    end_s: float
    status: Literal["ok", "unparseable"]
    label: Literal["fake", "real"] | None
    fake_probability: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        description=PROBABILITY_DOC
    )
    fake_probability_raw: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None, description=RAW_PROBABILITY_DOC
    )
    artifacts: list[Artifact] = Field(description="Times on the video's clock.")
    timestamps_s: list[float] = Field(description="The window's sampled frames.")


ProvenanceState = Literal["absent", "trusted", "untrusted", "invalid"]
UnparseableReason = Literal["no_answer", "token_cap", "deadline"]
Action = Literal["allow", "review", "block"]


class Provenance(_Message):
    """The upload's C2PA content credentials, read before the model runs."""

    present: bool = Field(description="A C2PA manifest store was found in the file.")
    state: ProvenanceState = Field(
        description="`absent`: no manifest. `trusted`: signature and content hashes valid, "
        "signer chains to a configured trust anchor. `untrusted`: valid, but the signer is not "
        "trusted here. `invalid`: present but failing validation or unreadable (`problems`)."
    )
    problems: list[str] = Field(
        default_factory=list,
        description="Why a manifest is invalid or untrusted: C2PA validation codes "
        "(`assertion.bmffHash.mismatch`, `signingCredential.untrusted`, ...) or ours "
        "(`manifest_too_large`, `unreadable`).",
    )
    claim_generator: str | None = Field(default=None, description="The software that signed.")
    signer: str | None = Field(default=None, description="Signing certificate's subject.")
    digital_source_type: str | None = Field(
        default=None, description="The IPTC digital source type the active manifest declares."
    )
    declares_generated: bool = Field(
        default=False,
        description="The manifest declares the content made by a trained model (IPTC "
        "`trainedAlgorithmicMedia` or `compositeWithTrainedAlgorithmicMedia`).",
    )
    declares_captured: bool = Field(
        default=False,
        description="The manifest declares a camera capture (IPTC `digitalCapture`, "
        "`computationalCapture`).",
    )


class DecisionInputs(_Message):
    """Everything a policy rule may read, as it was when the rule was applied: an audit
    can replay the decision from this alone (`skyra-stream policy test`)."""

    tenant: str | None
    status: Literal["ok", "unparseable", "skipped"]
    label: Literal["fake", "real"] | None
    fake_probability: float | None = Field(description="Calibrated: what the rules read.")
    fake_probability_raw: float | None = Field(
        default=None, description="The model's own, before calibration."
    )
    artifact_types: list[str]
    categories: list[str]
    groups: list[str]
    duration_s: float | None
    provenance: ProvenanceState | None = Field(description="Null when nothing was read.")
    declares_generated: bool
    declares_captured: bool
    segments: int = Field(default=0, description="Windows of a long upload (0: one window).")
    fake_segments: int = Field(default=0, description="Windows labelled fake.")


class Decision(_Message):
    """What the platform should do with the upload, and why."""

    action: Action
    policy_id: str
    policy_version: str
    rule: str | None = Field(
        description="The first rule that matched; null: none did, the "
        "policy's `otherwise` action applies."
    )
    skipped_model: bool = Field(
        default=False, description="A `skip_model` rule decided before the engine ran."
    )
    inputs: DecisionInputs


class Verdict(_Message):
    """The grounded answer for one ingest event."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    video_id: str
    source: Source
    status: Literal["ok", "unparseable", "skipped"] = Field(
        description="`unparseable` when the model gave no usable <answer>; `skipped` when a "
        "policy rule decided from provenance alone and the model never ran (label is null "
        "in both)."
    )
    unparseable_reason: UnparseableReason | None = Field(
        default=None,
        description="Why a verdict is `unparseable`: `no_answer` (the model finished without "
        "a usable <answer>), `token_cap` (cut at SKYRA_MAX_TOKENS), `deadline` (cut at "
        "SKYRA_ENGINE_DEADLINE_S). Null for every other status.",
    )
    label: Literal["fake", "real"] | None
    fake_probability: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        description=PROBABILITY_DOC
    )
    fake_probability_raw: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None, description=RAW_PROBABILITY_DOC
    )
    calibration: CalibrationRef | None = Field(
        default=None,
        description="The calibration applied (SKYRA_CALIBRATION_FILE); null when none is "
        "set, and then both probabilities are equal.",
    )
    artifacts: list[Artifact]
    cleared_regions: list[Region]
    explanation: str | None
    raw_response: str
    video: VideoInfo | None = Field(description="Null only when `status` is `skipped`.")
    model: ModelInfo
    timings_ms: Timings
    worker: WorkerInfo
    provenance: Provenance | None = Field(
        default=None, description="Null when the input was not a file (frames) or predates it."
    )
    decision: Decision | None = Field(
        default=None, description="Null only in verdicts made before policies existed."
    )
    segments: list[Segment] = Field(
        default_factory=list,
        description="Long uploads: one per window, in time order; the top-level label is fake "
        "when any window is, P(fake) is the windows' maximum, artifacts are all windows' (on "
        "the video's clock). Empty for a video analysed as one window.",
    )
    callback: Callback | None = Field(
        default=None,
        description="The event's callback, when it had one (async jobs): `skyra-stream "
        "webhooks` delivers this outcome there.",
    )
    coverage: float | None = Field(
        default=None,
        description="Share of the duration inside the windows: 1.0 when they tile the whole "
        "video, less when it needed more than SKYRA_MAX_WINDOWS and they were spread over it. "
        "Null for one window.",
    )
    content_sha256: str | None = Field(
        default=None, description="SHA-256 of the object's bytes (hex); null for frames input."
    )
    receipt_uri: str | None = Field(
        default=None,
        description="Where this verdict's signed C2PA receipt is stored (a `.c2pa` sidecar "
        "bound to the upload's bytes; docs/receipts.md); null when the tenant's policy asks "
        "for none.",
    )
    receipt_manifest_id: str | None = Field(
        default=None, description="The receipt's active manifest (urn:c2pa:...)."
    )
    reused_from: str | None = Field(
        default=None,
        description="The event whose analysis this verdict reuses (same content, model, prompt "
        "and settings): nothing was decoded or sent to the engine for this one.",
    )
    fingerprint: list[str] | None = Field(
        default=None,
        description="Perceptual hash of each sampled frame (64-bit dHash, 16 hex digits), to "
        "cluster re-encoded copies; compare by mean Hamming distance (docs/concepts/reuse.md).",
    )
    created_at: datetime = Field(default_factory=_utcnow)


class CorrectedArtifact(_Message):
    """An artifact as a reviewer marked it: L3 type, when, and where."""

    type: str = Field(description="An L3 type of the taxonomy.")
    start_s: Annotated[float, Field(ge=0)]
    end_s: Annotated[float, Field(ge=0)]
    bbox: BBox | None = Field(
        default=None, description="[x1, y1, x2, y2] in 0..1 of the displayed frame; null: whole."
    )


class ReviewEvent(_Message):
    """A reviewer's decision on a verdict that the policy sent to review. `verdict` is the
    record as the review topic carried it, so the audit and the training export need
    nothing else."""

    schema_version: Literal[1] = SCHEMA_VERSION
    review_id: Identifier = Field(description="Idempotency key of the review.")
    verdict: Verdict
    outcome: Literal["confirm", "overturn"]
    reviewer: Identifier
    label: Literal["fake", "real"] | None = Field(
        default=None,
        description="The right label. Optional: a confirm keeps the verdict's, an overturn "
        "of a labelled verdict flips it; required to overturn an unparsed or skipped one.",
    )
    artifacts: list[CorrectedArtifact] = Field(
        default_factory=list,
        max_length=64,
        description="The artifacts that are really there (overturn to fake: at least one).",
    )
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None
    reviewed_at: datetime | None = None
    ticket: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None,
        description="The `review-ticket` header of the review-topic record that carried the "
        "verdict, passed back untouched. A review whose ticket does not verify for exactly "
        "this verdict is an invalid_review dead letter.",
    )


class AuditRecord(_Message):
    """One validated review, linked to the verdict it judged and what produced it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    review_id: str
    verdict_event_id: str
    video_id: str
    model: ModelInfo
    policy_id: str | None
    policy_version: str | None
    action: Action | None = Field(description="What the policy decided before the review.")
    model_label: Literal["fake", "real"] | None
    label: Literal["fake", "real"] = Field(description="The label after the review.")
    review: ReviewEvent
    recorded_at: datetime = Field(default_factory=_utcnow)


class ErrorReason(_Message):
    code: ErrorCode
    message: str


class KafkaPosition(_Message):
    topic: str
    partition: int
    offset: int

    def as_id(self) -> str:
        """A stable id for whatever sits at this position (messages that carry none)."""
        return f"kafka:{self.topic}:{self.partition}:{self.offset}"


class DeadLetter(_Message):
    """An input that could not be given a verdict, with the reason and where it came from."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str | None = Field(
        description=(
            "The event's id; for a message that did not parse, `kafka:<topic>:<partition>:"
            "<offset>`, so that a redelivered bad message can be dropped like any duplicate."
        )
    )
    video_id: str | None = Field(default=None, description="Known when the message parsed.")
    raw: str = Field(description="The original message: UTF-8 text, or base64 of its bytes.")
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    reason: ErrorReason
    source: KafkaPosition | None = None
    attempts: int = Field(default=1, ge=1)
    created_at: datetime = Field(default_factory=_utcnow)
    callback: Callback | None = Field(
        default=None,
        description="The event's callback, when it had one (async jobs): `skyra-stream "
        "webhooks` delivers this outcome there.",
    )


class Rejection(_Message):
    """The CLI's and the API's answer for an input that got no verdict (same codes)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    source: str
    status: Literal["rejected"] = "rejected"
    error: ErrorReason


class WebhookDelivery(_Message):
    """Where a job's webhook stands, as `skyra-stream webhooks` last recorded it."""

    state: Literal["pending", "delivered", "retrying", "failed"] = Field(
        description="`pending`: the outcome is known, no attempt has ended yet; `retrying`: "
        "an attempt failed and another is scheduled (`reason` says why); `delivered`: a 2xx; "
        "`failed`: given up or refused (`reason`), a webhook_failed record was published."
    )
    attempts: int = Field(default=0, ge=0)
    reason: Annotated[str, StringConstraints(max_length=1000)] | None = None
    updated_at: datetime


class JobRecord(_Message):
    """An async job (`POST /v1/jobs`) as `GET /v1/jobs/{id}` reports it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    job_id: str
    status: Literal["queued", "done", "failed"] = Field(
        description="`queued`: published to the ingest topic, no outcome yet; `done`: the "
        "verdict is here; `failed`: the dead letter is here."
    )
    tenant: str | None = None
    created_at: datetime
    updated_at: datetime
    verdict: Verdict | None = None
    dead_letter: DeadLetter | None = None
    delivery: WebhookDelivery | None = Field(
        default=None, description="The webhook's state; null for a job without callback_url."
    )
