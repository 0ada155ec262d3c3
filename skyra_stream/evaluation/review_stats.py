"""`skyra-stream reviews stats --audit FILE`: reviewers and the model, from the audit trail.

Per reviewer and per model version: reviews, the share overturned, the share whose final label
is the model's (agreement: a confirm whose artifacts were corrected still agrees on the label,
and `corrected` counts those), and the median time from the verdict to the review. It tells a
team lead who overturns far more than the others, and an ML lead whether a new model version
is overturned less than the last. Records repeated by an at-least-once redelivery are counted
once (by review id).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from skyra_stream.messages import AuditRecord


@dataclass(frozen=True, slots=True)
class ReviewStats:
    group: str  # "reviewer" or "model"
    key: str
    reviews: int
    overturned: int
    agreed: int
    corrected: int
    median_s_to_review: float | None

    @property
    def overturn_rate(self) -> float:
        return self.overturned / self.reviews

    @property
    def agreement(self) -> float:
        return self.agreed / self.reviews


def model_version(record: AuditRecord) -> str:
    model = record.model
    return f"{model.name}@{model.revision}" if model.revision else model.name


def review_stats(records: Iterable[AuditRecord]) -> list[ReviewStats]:
    """Rows by reviewer, then by model version, each sorted by key."""
    unique = {r.review_id: r for r in records}
    groups: dict[tuple[str, str], list[AuditRecord]] = defaultdict(list)
    for record in unique.values():
        groups[("reviewer", record.review.reviewer)].append(record)
        groups[("model", model_version(record))].append(record)
    rows = []
    for (group, key), members in sorted(groups.items()):
        delays = [d for d in (_delay_s(r) for r in members) if d is not None]
        rows.append(
            ReviewStats(
                group=group,
                key=key,
                reviews=len(members),
                overturned=sum(r.review.outcome == "overturn" for r in members),
                agreed=sum(r.label == r.model_label for r in members),
                corrected=sum(
                    r.review.outcome == "confirm" and bool(r.review.artifacts) for r in members
                ),
                median_s_to_review=statistics.median(delays) if delays else None,
            )
        )
    return rows


def _delay_s(record: AuditRecord) -> float | None:
    reviewed = record.review.reviewed_at or record.recorded_at
    made = record.review.verdict.created_at
    if reviewed.tzinfo is None or made.tzinfo is None:
        return None
    return max(0.0, (reviewed - made).total_seconds())


def render(rows: list[ReviewStats]) -> str:
    header = (
        f"{'by':<9} {'who':<40} {'reviews':>7} {'overturn':>9} {'agree':>7} {'corrected':>9} "
        f"{'median to review':>17}"
    )
    lines = [header]
    for row in rows:
        median = _duration(row.median_s_to_review)
        lines.append(
            f"{row.group:<9} {row.key[:40]:<40} {row.reviews:>7} {row.overturn_rate:>9.1%} "
            f"{row.agreement:>7.1%} {row.corrected:>9} {median:>17}"
        )
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
