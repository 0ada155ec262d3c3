"""Review events: reviewers' decisions checked and turned into audit records.

    verdict (action `review`) ─► review topic ─► people ─► review event ─► `parse_review`
        ─► AuditRecord (audit topic)  ─► `training_export` ─► SFT records

A review event is untrusted input like an ingest event: anything wrong with it is an
`invalid_review` dead letter with the reason, never a crash. The checks are those that would
otherwise poison the training data: an overturn that changes nothing, a fake without a
finding (the contract says a Fake answer carries at least one), a type outside the
taxonomy, a span outside the video, a box outside the frame.

The review loop that applies these checks to a topic is `consumers/review_loop.py`; the
training records made from the audit trail are `decisions/training_export.py`.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import ValidationError

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.events import short_errors
from skyra_stream.messages import AuditRecord, CorrectedArtifact, ReviewEvent
from skyra_stream.model.taxonomy import classify

Label = Literal["fake", "real"]
TIME_TOLERANCE_S: Final = 0.5


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
    if label == "fake" and not artifacts_after(review, label):
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


def artifacts_after(review: ReviewEvent, label: str) -> list[CorrectedArtifact]:
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
