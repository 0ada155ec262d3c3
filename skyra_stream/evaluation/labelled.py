"""Labelled scores from what this project already writes: `skyra-stream eval` predictions
(the truth is the folder: `Real` or a generator) and audit records (the truth is the label
after a human review, the group is the tenant). Both feed calibration and threshold tuning.

The score kept is the model's raw P(fake) (`fake_probability_raw`, or `fake_probability`
in records that predate calibration): calibration is fitted on what the model says, and
thresholds are tuned on what the policy will read (the raw score mapped through the
calibration in force).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from skyra_stream.messages import AuditRecord

REAL = "Real"


@dataclass(frozen=True, slots=True)
class Labelled:
    group: str  # the generator (`Real` for real videos) or `tenant:<t>`
    fake: bool  # the truth
    p_raw: float | None  # None: the model gave no usable answer


@dataclass(frozen=True, slots=True)
class LabelledSet:
    records: list[Labelled]
    files: list[str]
    sha256: str
    problems: list[str]

    @property
    def scored(self) -> list[Labelled]:
        return [r for r in self.records if r.p_raw is not None]


def read_labelled(predictions: Sequence[Path], audits: Sequence[Path] = ()) -> LabelledSet:
    digest = hashlib.sha256()
    records: list[Labelled] = []
    problems: list[str] = []

    def lines(path: Path) -> Iterator[tuple[int, str]]:
        data = path.read_bytes()
        digest.update(data)
        for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if line.strip():
                yield n, line

    for path in predictions:
        for n, line in lines(path):
            try:
                doc = json.loads(line)
                source = str(doc["source"])
                p = doc.get("fake_probability")
                score = float(p) if p is not None else None
                records.append(Labelled(source, source != REAL, score))
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{path}:{n}: not a prediction: {exc}")
    for path in audits:
        for n, line in lines(path):
            try:
                audit = AuditRecord.model_validate_json(line)
            except ValidationError as exc:
                problems.append(f"{path}:{n}: not an audit record: {exc.errors()[0]['msg']}")
                continue
            verdict = audit.review.verdict
            p = verdict.fake_probability_raw
            if p is None:
                p = verdict.fake_probability
            tenant = verdict.decision.inputs.tenant if verdict.decision else None
            records.append(Labelled(f"tenant:{tenant or 'default'}", audit.label == "fake", p))
    return LabelledSet(
        records, [str(p) for p in (*predictions, *audits)], digest.hexdigest(), problems
    )
