"""Assemble the outgoing messages: a Verdict from an engine answer, a DeadLetter from a failure.

The analysis path (`skyra_stream.analysis`) is the only caller of `build_verdict`, so the CLI,
the API and the worker produce the same message for the same input. Imports no vLLM: the
schema tooling and downstream users can load it anywhere.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from skyra_stream import __version__
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.media.decode import SampledVideo
from skyra_stream.messages import (
    Callback,
    DeadLetter,
    Decision,
    ErrorReason,
    IngestEvent,
    KafkaPosition,
    ModelInfo,
    Provenance,
    Segment,
    Source,
    Timings,
    UnparseableReason,
    Verdict,
    WorkerInfo,
)
from skyra_stream.model.engine import CUTS, DEADLINE, LENGTH, EngineConfig, EngineResult
from skyra_stream.model.prompt import model_frame_size
from skyra_stream.model.response import parse_response

MAX_RAW_DEAD_LETTER_BYTES = 64 << 10


def worker_info(worker_id: str | None = None) -> WorkerInfo:
    """Who made a verdict: SKYRA_WORKER_ID (the pod name on Kubernetes), else host:pid."""
    return WorkerInfo(id=worker_id or f"{socket.gethostname()}:{os.getpid()}", version=__version__)


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds spent per stage for one video (None for a stage it never reached)."""

    fetch: float | None = None
    provenance: float | None = None
    decode: float | None = None
    queue: float | None = None
    infer: float | None = None
    total: float | None = None

    def as_ms(self) -> Timings:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 1)

        return Timings(
            fetch=ms(self.fetch),
            provenance=ms(self.provenance),
            decode=ms(self.decode),
            queue=ms(self.queue),
            infer=ms(self.infer),
            total=ms(self.total),
        )


def build_verdict(
    *,
    event: IngestEvent,
    source: Source,
    video: SampledVideo,
    results: Sequence[EngineResult],
    model: ModelInfo,
    worker: WorkerInfo,
    times: StageTimes,
    engine: EngineConfig,
) -> Verdict:
    """The verdict for one answered video (one result per window of a long one); boxes are
    normalised against the frame size the processor fed the model."""
    h, w = video.frames[0].shape[:2]
    seen = model_frame_size(w, h, min_pixels=engine.mm_min_pixels, max_pixels=engine.mm_max_pixels)
    duration = video.info.duration_s
    if not video.windows:
        (result,) = results
        parsed = parse_response(result.text, duration_s=duration, frame_size=seen)
        return Verdict(
            event_id=event.event_id,
            video_id=event.video_id,
            source=source,
            status=parsed.status,
            unparseable_reason=unparseable_reason(parsed.status, results),
            label=parsed.label,
            fake_probability=result.fake_probability if parsed.label else None,
            artifacts=parsed.artifacts,
            cleared_regions=parsed.cleared_regions,
            explanation=parsed.explanation,
            raw_response=result.text,
            video=video.info,
            model=model,
            timings_ms=times.as_ms(),
            worker=worker,
        )
    windows = [
        (window, result, parse_response(result.text, duration_s=duration, frame_size=seen))
        for window, result in zip(video.windows, results, strict=True)
    ]
    segments = [
        Segment(
            start_s=window.start_s,
            end_s=window.end_s,
            status=parsed.status,
            label=parsed.label,
            fake_probability=result.fake_probability if parsed.label else None,
            artifacts=parsed.artifacts,
            timestamps_s=window.timestamps_s,
        )
        for window, result, parsed in windows
    ]
    answered = [
        (seg, parsed)
        for seg, (_, _, parsed) in zip(segments, windows, strict=True)
        if seg.label is not None
    ]
    label: Literal["fake", "real"] | None = None
    if any(seg.label == "fake" for seg, _ in answered):
        label = "fake"
    elif answered:
        label = "real"
    # The explanation of the window that weighs most: the most likely fake one.
    top = max(answered, key=lambda a: a[0].fake_probability or 0.0, default=None)
    covered = sum(seg.end_s - seg.start_s for seg in segments)
    return Verdict(
        event_id=event.event_id,
        video_id=event.video_id,
        source=source,
        status="ok" if answered else "unparseable",
        unparseable_reason=unparseable_reason("ok" if answered else "unparseable", results),
        label=label,
        fake_probability=max((seg.fake_probability or 0.0 for seg, _ in answered), default=None)
        if label
        else None,
        artifacts=sorted(
            (a for seg in segments for a in seg.artifacts), key=lambda a: a.start_s or 0.0
        ),
        cleared_regions=[r for _, _, parsed in windows for r in parsed.cleared_regions],
        explanation=top[1].explanation if top else None,
        raw_response="\n".join(
            f"[window {seg.start_s:.2f}-{seg.end_s:.2f} s]\n{result.text}"
            for seg, (_, result, _) in zip(segments, windows, strict=True)
        ),
        video=video.info,
        model=model,
        timings_ms=times.as_ms(),
        worker=worker,
        segments=segments,
        # Against the last frame's time (where the last window ends), not the container's
        # claimed duration, which runs a frame further.
        coverage=round(min(1.0, covered / end), 4) if (end := segments[-1].end_s) > 0 else None,
    )


def unparseable_reason(status: str, results: Sequence[EngineResult]) -> UnparseableReason | None:
    """Why no answer came, for an `unparseable` verdict: a cut (the deadline before the token
    cap, when windows differ) or the model's own ending without a usable answer."""
    if status != "unparseable":
        return None
    reasons = {r.finish_reason for r in results}
    for finish in (DEADLINE, LENGTH):  # the deadline first: it ended the slowest window
        if finish in reasons:
            return CUTS[finish]
    return "no_answer"


def build_skipped_verdict(
    *,
    event: IngestEvent,
    source: Source,
    provenance: Provenance | None,
    decision: Decision,
    model: ModelInfo,
    worker: WorkerInfo,
    times: StageTimes,
) -> Verdict:
    """The verdict of an upload a `skip_model` rule decided from its provenance: no frames
    were decoded and the engine never saw it, so there is no label and no video info."""
    return Verdict(
        event_id=event.event_id,
        video_id=event.video_id,
        source=source,
        status="skipped",
        label=None,
        fake_probability=None,
        artifacts=[],
        cleared_regions=[],
        explanation=f"not analysed: policy {decision.policy_id} rule {decision.rule} "
        "decided from the content credentials",
        raw_response="",
        video=None,
        model=model,
        timings_ms=times.as_ms(),
        worker=worker,
        provenance=provenance,
        decision=decision,
    )


def build_dead_letter(
    *,
    raw: bytes,
    error: SkyraError,
    event: IngestEvent | None = None,
    position: KafkaPosition | None = None,
    attempts: int = 1,
    callback: Callback | None = None,
) -> DeadLetter:
    """A dead letter that carries the original message, readable when it was UTF-8."""
    raw = raw[:MAX_RAW_DEAD_LETTER_BYTES]
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    event_id = event.event_id if event else (position.as_id() if position else None)
    return DeadLetter(
        event_id=event_id,
        video_id=event.video_id if event else None,
        raw=text,
        raw_encoding=encoding,
        reason=ErrorReason(code=dead_letter_code(error), message=error.message[:2000]),
        source=position,
        attempts=attempts,
        callback=callback,
    )


def dead_letter_code(error: SkyraError) -> ErrorCode:
    """Service codes (overloaded, not ready) describe the service, not an input; one that
    reaches a dead letter is a bug, and is recorded as one."""
    return error.code if isinstance(error.code, ErrorCode) else ErrorCode.INTERNAL_ERROR
