"""Calibrated P(fake): the model's raw score mapped to a probability that means what it says,
for the model that produced it.

P(fake) is the probability of the first answer word of a greedy, RL-tuned model: known to be
overconfident, and different for every checkpoint. A calibration file (`skyra-stream
calibrate`, fitted on labelled traffic) maps it for one model name and revision:

- `temperature`: p = sigmoid(logit(p_raw) / T), the answer logit log(P(fake) / P(real))
  scaled by one fitted number (T > 1 softens an overconfident model);
- `isotonic`: a non-decreasing step function fitted on the held-out scores, stored as its
  breakpoints and applied by linear interpolation.

Applying needs numpy only (no scikit-learn in the worker). A file made for another model
name or revision is refused where it is loaded: a worker never applies one checkpoint's
calibration to another's scores.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skyra_stream.messages import CalibrationRef, ModelInfo, Verdict

EPS = 1e-6


class CalibrationError(ValueError):
    """A calibration file that cannot be used: unreadable, invalid, or for another model."""


class BinReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ece: float = Field(
        description="Expected calibration error: 15 equal-width bins of the "
        "predicted P(fake) over [0, 1], |observed - mean predicted| weighted by "
        "the bin's share of records."
    )
    brier: float
    log_loss: float
    n: int


class GroupReport(BaseModel):
    """Held-out quality before and after, for all records or one source or tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    before: BinReport
    after: BinReport


class DataSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(description="SHA-256 over the input files' bytes, in the order given.")
    files: list[str]
    records: int = Field(description="Records read.")
    used: int = Field(description="Records with a label and a probability.")
    without_probability: int = Field(description="Unparseable answers, left out of the fit.")
    fit: int = Field(description="Records the map was fitted on.")
    held_out: int = Field(description="Records the metrics are measured on.")


class CalibrationFile(BaseModel):
    """`calibration.json`: the map for one model, how it was made and how well it does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="Named in every verdict it calibrates (`calibration.id`)."
    )
    model: ModelInfo = Field(description="The model name and revision the map was fitted for.")
    method: Literal["temperature", "isotonic"]
    temperature: float | None = Field(default=None, gt=0, description="`temperature` only.")
    isotonic_x: list[float] = Field(
        default_factory=list, description="`isotonic` only: breakpoints of raw P(fake)."
    )
    isotonic_y: list[float] = Field(
        default_factory=list, description="`isotonic` only: calibrated P(fake) at each."
    )
    created_at: datetime
    data: DataSummary
    overall: GroupReport
    by_source: dict[str, GroupReport] = Field(
        default_factory=dict, description="Per generator (`Real` for real videos) or tenant."
    )

    @model_validator(mode="after")
    def _parameters(self) -> CalibrationFile:
        if self.method == "temperature" and self.temperature is None:
            raise ValueError("a temperature calibration needs `temperature`")
        if self.method == "isotonic":
            xs, ys = self.isotonic_x, self.isotonic_y
            if len(xs) < 2 or len(xs) != len(ys):
                raise ValueError("an isotonic calibration needs matching breakpoints (2+)")
            if any(b < a for a, b in itertools.pairwise(xs)) or any(
                b < a for a, b in itertools.pairwise(ys)
            ):
                raise ValueError("isotonic breakpoints must be non-decreasing")
            if not all(0.0 <= v <= 1.0 for v in (*xs, *ys)):
                raise ValueError("isotonic breakpoints must lie in [0, 1]")
        return self

    @property
    def ref(self) -> CalibrationRef:
        return CalibrationRef(id=self.id, method=self.method)

    def apply(self, p_raw: float) -> float:
        """The calibrated P(fake) of a raw one."""
        if self.method == "temperature":
            assert self.temperature is not None
            return sigmoid(logit(p_raw) / self.temperature)
        return float(np.interp(p_raw, self.isotonic_x, self.isotonic_y))


def logit(p: float) -> float:
    p = min(1.0 - EPS, max(EPS, p))
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def parse_model(spec: str) -> ModelInfo:
    """`NAME[@REVISION]` as the command line writes it."""
    name, _, revision = spec.partition("@")
    if not name:
        raise CalibrationError(f"{spec!r}: no model name")
    return ModelInfo(name=name, revision=revision or None)


def load_calibration(path: Path, model: ModelInfo) -> CalibrationFile:
    """The file at `path`, checked for `model` (name and revision must match)."""
    try:
        calibration = CalibrationFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise CalibrationError(f"{path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise CalibrationError(f"{path}: {where}: {first['msg']}") from None
    if (calibration.model.name, calibration.model.revision) != (model.name, model.revision):
        made, here = calibration.model, model
        raise CalibrationError(
            f"{path} was made for model {made.name}@{made.revision or '-'}, "
            f"this process serves {here.name}@{here.revision or '-'}"
        )
    return calibration


def calibrate_verdict(verdict: Verdict, calibration: CalibrationFile | None) -> Verdict:
    """The verdict with `fake_probability` calibrated from `fake_probability_raw` (for each
    window of a long upload too), naming the calibration; without one both are the raw
    value. A stored verdict (reuse) is re-calibrated from its raw value, so a new file
    applies to reposts as a new policy does."""

    def raw(calibrated: float | None, stored_raw: float | None) -> float | None:
        return stored_raw if stored_raw is not None else calibrated

    def mapped(p: float | None) -> float | None:
        if p is None or calibration is None:
            return p
        return calibration.apply(p)

    segments = []
    for seg in verdict.segments:
        seg_raw = raw(seg.fake_probability, seg.fake_probability_raw)
        segments.append(
            seg.model_copy(
                update={"fake_probability_raw": seg_raw, "fake_probability": mapped(seg_raw)}
            )
        )
    top_raw = raw(verdict.fake_probability, verdict.fake_probability_raw)
    return verdict.model_copy(
        update={
            "fake_probability_raw": top_raw,
            "fake_probability": mapped(top_raw),
            "segments": segments,
            "calibration": calibration.ref if calibration is not None else None,
        }
    )
