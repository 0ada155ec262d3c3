"""The review loop: reviewers' decisions checked, turned into audit records, and exported as
training data for the next fine-tune.

    verdict (action `review`) ─► review topic ─► people ─► review event ─► `check_review`
        ─► AuditRecord (audit topic)  ─► `skyra-stream export-sft` ─► SFT records

A review event is untrusted input like an ingest event: anything wrong with it is an
`invalid_review` dead letter with the reason, never a crash. The checks are those that would
otherwise poison the training data: an overturn that changes nothing, a fake without a
finding (the contract says a Fake answer carries at least one), a type outside the
taxonomy, a span outside the video, a box outside the frame.

The training record is the contract's output form, written so that the contract's own parser
reads back exactly the reviewer's artifacts (tests/test_reviews.py checks the round trip).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.events import short_errors
from skyra_stream.messages import AuditRecord, CorrectedArtifact, ReviewEvent
from skyra_stream.prompt import system_prompt, user_content
from skyra_stream.taxonomy import classify

Label = Literal["fake", "real"]
TIME_TOLERANCE_S: Final = 0.5
DATASET_NAME: Final = "skyra_reviews"
_ANSWER_END = re.compile(r"</answer>", re.IGNORECASE)


def _invalid(message: str) -> SkyraError:
    return SkyraError(ErrorCode.INVALID_REVIEW, message)


def parse_review(raw: bytes, max_bytes: int) -> ReviewEvent:
    """A review event from a record's bytes, or `invalid_review` with what is wrong."""
    if len(raw) > max_bytes:
        raise _invalid(f"review event is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        review = ReviewEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(short_errors(exc)) from None
    final_label(review)  # raises when the review contradicts itself
    return review


def final_label(review: ReviewEvent) -> Label:
    """The label after the review; raises `invalid_review` for a review that cannot be
    applied as written."""
    verdict, given = review.verdict, review.label
    label: Label
    if review.outcome == "confirm":
        if verdict.label is None:
            raise _invalid("cannot confirm a verdict without a label; overturn it with a label")
        if given is not None and given != verdict.label:
            raise _invalid(f"a confirm keeps the label {verdict.label!r}; use overturn")
        label = verdict.label
    else:
        if given is None and verdict.label is None:
            raise _invalid("overturning a verdict without a label needs `label`")
        label = given or ("real" if verdict.label == "fake" else "fake")
        if label == verdict.label and not review.artifacts:
            raise _invalid("an overturn must change the label or give the right artifacts")
    if label == "fake" and not _artifacts_after(review, label):
        raise _invalid("a fake label needs at least one artifact (the contract's Fake answer)")
    if label == "real" and review.artifacts:
        raise _invalid("artifacts given with the label 'real'")
    duration = verdict.video.duration_s if verdict.video else None
    for n, artifact in enumerate(review.artifacts):
        _check_artifact(n, artifact, duration)
    return label


def _check_artifact(n: int, a: CorrectedArtifact, duration_s: float | None) -> None:
    where = f"artifacts[{n}]"
    if classify(a.type) is None:
        raise _invalid(f"{where}.type: {a.type!r} is not an L3 type of the taxonomy")
    if a.end_s < a.start_s:
        raise _invalid(f"{where}: end_s {a.end_s} is before start_s {a.start_s}")
    if duration_s is not None and a.end_s > duration_s + TIME_TOLERANCE_S:
        raise _invalid(f"{where}: end_s {a.end_s} is past the video's end ({duration_s:.2f} s)")
    if a.bbox is not None:
        x1, y1, x2, y2 = a.bbox
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise _invalid(f"{where}.bbox: {list(a.bbox)} is not a box inside [0, 1]")


def _artifacts_after(review: ReviewEvent, label: str) -> list[CorrectedArtifact]:
    """The artifacts the training answer will carry: the reviewer's, or on a confirm
    without corrections the model's own (those with a span)."""
    if review.artifacts or label != "fake":
        return list(review.artifacts)
    if review.outcome != "confirm":
        return []
    return [
        CorrectedArtifact(type=a.type, start_s=a.start_s, end_s=a.end_s, bbox=a.bbox)
        for a in review.verdict.artifacts
        if a.start_s is not None and a.end_s is not None and classify(a.type) is not None
    ]


def audit_record(review: ReviewEvent) -> AuditRecord:
    verdict, decision = review.verdict, review.verdict.decision
    return AuditRecord(
        review_id=review.review_id,
        verdict_event_id=verdict.event_id,
        video_id=verdict.video_id,
        model=verdict.model,
        policy_id=decision.policy_id if decision else None,
        policy_version=decision.policy_version if decision else None,
        action=decision.action if decision else None,
        model_label=verdict.label,
        label=final_label(review),
        review=review,
    )


# -- training records ----------------------------------------------------------------------


def training_answer(record: AuditRecord) -> str:
    """The assistant turn in the contract's form. A confirm without corrections keeps the
    model's own reasoning (the richer target); otherwise the answer is written from the
    reviewer's artifacts, in temporal order, with normalised boxes."""
    review, verdict = record.review, record.review.verdict
    if review.outcome == "confirm" and not review.artifacts and verdict.status == "ok":
        end = _ANSWER_END.search(verdict.raw_response)
        if end is not None:
            return verdict.raw_response[: end.end()].strip()
    artifacts = sorted(_artifacts_after(review, record.label), key=lambda a: a.start_s)
    if record.label == "real":
        return (
            "<think>A human reviewer checked the video and found no generation artifact."
            "</think>\n<answer>Real</answer>"
        )
    findings = " ".join(
        f"<type>{a.type}</type> in <t>[{a.start_s:.2f}, {a.end_s:.2f}]</t> at "
        f"<bbox>[{', '.join(f'{v:.3f}' for v in (a.bbox or (0.0, 0.0, 0.0, 0.0)))}]</bbox>."
        for a in artifacts
    )
    return (
        f"<think>A human reviewer marked these findings: {findings}</think>\n<answer>Fake</answer>"
    )


def sft_record(record: AuditRecord, images: Sequence[str]) -> dict[str, Any]:
    """One LLaMA-Factory sharegpt record, as `k8s/training/llamafactory-sft.yaml` reads them
    (template qwen2_vl: `<image>` marks where each frame goes in the user turn)."""
    video = record.review.verdict.video
    if video is None:
        raise ValueError("a skipped verdict has no frames to train on")
    user = "".join(
        item["text"] if item["type"] == "text" else "<image>\n"
        for item in user_content(video.timestamps_s)
    )
    return {
        "system": system_prompt(),
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": training_answer(record)},
        ],
        "images": list(images),
        "review_id": record.review_id,
    }


def dataset_info(file_name: str) -> dict[str, Any]:
    return {
        DATASET_NAME: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images", "system": "system"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        }
    }


Frames = Sequence[npt.NDArray[np.uint8]]


@dataclass(frozen=True, slots=True)
class ExportResult:
    written: int
    skipped: dict[str, str]  # review id -> why


def export_sft(
    records: Iterable[AuditRecord],
    out: Path,
    frames_of: Callable[[AuditRecord], tuple[Frames, Sequence[float]]],
) -> ExportResult:
    """Write OUT/reviews.jsonl, OUT/dataset_info.json and the frames (OUT/frames/<review>/
    NN.png). `frames_of` gives the 16 frames the model saw (the sampler again, on the
    verdict's source); a record whose frames cannot be had is skipped, with the reason."""
    from PIL import Image  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, {}
    seen: set[str] = set()
    with (out / "reviews.jsonl").open("w", encoding="utf-8") as sink:
        for record in records:
            if record.review_id in seen:  # a redelivered audit record
                continue
            seen.add(record.review_id)
            video = record.review.verdict.video
            if video is None:
                skipped[record.review_id] = "skipped verdict: no frames were decoded"
                continue
            try:
                frames, stamps = frames_of(record)
            except Exception as exc:
                skipped[record.review_id] = f"frames unavailable: {exc}"
                continue
            if len(stamps) != len(video.timestamps_s) or any(
                abs(a - b) > 0.01 for a, b in zip(stamps, video.timestamps_s, strict=False)
            ):
                # The object changed since (a new version under the same key): these are
                # not the frames the reviewer judged.
                skipped[record.review_id] = "the frames sampled now differ from the verdict's"
                continue
            folder = out / "frames" / _safe(record.review_id)
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for i, frame in enumerate(frames):
                path = folder / f"{i:02d}.png"
                Image.fromarray(frame).save(path)
                paths.append(str(path.relative_to(out)))
            sink.write(json.dumps(sft_record(record, paths)) + "\n")
            written += 1
    (out / "dataset_info.json").write_text(json.dumps(dataset_info("reviews.jsonl"), indent=2))
    return ExportResult(written, skipped)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "review"
