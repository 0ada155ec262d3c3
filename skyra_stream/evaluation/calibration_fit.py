"""`skyra-stream calibrate`: fit a calibration of P(fake) on labelled scores, measure it on a
held-out split, and write the file the worker applies (`decisions/calibration.py`).

The fitting and the scores are scikit-learn's, not ours: temperature scaling is a logistic
regression without intercept on the answer logit z = log(P(fake) / P(real)) (its one
coefficient is 1 / T, fitted by L-BFGS on the log loss, with regularisation made negligible),
isotonic regression is `IsotonicRegression`, the split is `train_test_split` stratified by
source and truth, and the Brier score and log loss are `sklearn.metrics`'. scikit-learn over
netcal because it is already what the project tests against and covers both methods and the
metrics; scipy alone would need our own loss. The expected calibration error is the standard
binned form (15 equal-width bins of the predicted probability, |observed fraction fake - mean
predicted| weighted by the bin's share), which scikit-learn does not ship; ours is a dozen
lines of numpy, tested against a hand count.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from skyra_stream.decisions.calibration import (
    EPS,
    BinReport,
    CalibrationFile,
    DataSummary,
    GroupReport,
)
from skyra_stream.evaluation.labelled import Labelled, LabelledSet, read_labelled
from skyra_stream.messages import ModelInfo

BINS = 15
HELD_OUT = 0.3
Method = Literal["temperature", "isotonic"]
Floats = npt.NDArray[np.float64]


class NotEnoughData(ValueError):
    """Too few labelled scores, or no mix of real and fake, to fit anything."""


def ece(p: Floats, y: npt.NDArray[np.int_], bins: int = BINS) -> float:
    """Expected calibration error over `bins` equal-width bins of `p` in [0, 1]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return total


def report(p: Floats, y: npt.NDArray[np.int_]) -> BinReport:
    from sklearn.metrics import brier_score_loss, log_loss  # noqa: PLC0415

    clipped = np.clip(p, EPS, 1 - EPS)
    return BinReport(
        ece=round(ece(p, y), 6),
        brier=round(float(brier_score_loss(y, p)), 6),
        log_loss=round(float(log_loss(y, clipped, labels=[0, 1])), 6),
        n=len(y),
    )


def _logits(p: Floats) -> Floats:
    q = np.clip(p, EPS, 1 - EPS)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


def fit_temperature(p: Floats, y: npt.NDArray[np.int_]) -> float:
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    model = LogisticRegression(fit_intercept=False, C=1e6, max_iter=1000)
    model.fit(_logits(p).reshape(-1, 1), y)
    slope = float(model.coef_[0][0])
    if slope <= 0:
        raise NotEnoughData("the scores do not rise with the truth: nothing to calibrate")
    return 1.0 / slope


def fit_isotonic(p: Floats, y: npt.NDArray[np.int_]) -> tuple[list[float], list[float]]:
    from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(p, y)
    xs = [float(v) for v in model.X_thresholds_]
    ys = [float(v) for v in model.y_thresholds_]
    if len(xs) < 2:  # one step: extend to the whole range so it stays a function
        xs, ys = [0.0, 1.0], [ys[0], ys[0]]
    return xs, ys


def _split(records: Sequence[Labelled], seed: int) -> tuple[list[Labelled], list[Labelled]]:
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    strata = [f"{r.group}|{r.fake}" for r in records]
    counts: dict[str, int] = defaultdict(int)
    for s in strata:
        counts[s] += 1
    # A stratum of one cannot be split; fall back to the truth alone for it.
    strata = [s if counts[s] >= 2 else f"*|{r.fake}" for s, r in zip(strata, records, strict=True)]
    fit, held = train_test_split(
        list(records), test_size=HELD_OUT, random_state=seed, stratify=strata
    )
    return fit, held


def calibrate(
    data: LabelledSet, model: ModelInfo, method: Method = "temperature", seed: int = 0
) -> CalibrationFile:
    scored = data.scored
    truths = {r.fake for r in scored}
    if len(scored) < 20 or truths != {True, False}:
        raise NotEnoughData(
            f"{len(scored)} labelled scores ({sum(r.fake for r in scored)} fake): at least 20, "
            "with both real and fake, are needed"
        )
    fit, held = _split(scored, seed)

    def arrays(rs: Sequence[Labelled]) -> tuple[Floats, npt.NDArray[np.int_]]:
        p = np.array([r.p_raw for r in rs], dtype=np.float64)
        return p, np.array([int(r.fake) for r in rs])

    p_fit, y_fit = arrays(fit)
    temperature: float | None = None
    xs: list[float] = []
    ys: list[float] = []
    if method == "temperature":
        temperature = fit_temperature(p_fit, y_fit)
    else:
        xs, ys = fit_isotonic(p_fit, y_fit)
    draft = CalibrationFile(
        id=f"{model.name}-{method}-{uuid.uuid4().hex[:8]}",
        model=model,
        method=method,
        temperature=round(temperature, 6) if temperature is not None else None,
        isotonic_x=xs,
        isotonic_y=ys,
        created_at=datetime.now(UTC),
        data=DataSummary(
            sha256=data.sha256,
            files=data.files,
            records=len(data.records),
            used=len(scored),
            without_probability=len(data.records) - len(scored),
            fit=len(fit),
            held_out=len(held),
        ),
        overall=_group(held, None),
    )

    def after(rs: Sequence[Labelled]) -> GroupReport:
        return _group(rs, draft)

    groups: dict[str, list[Labelled]] = defaultdict(list)
    for r in held:
        groups[r.group].append(r)
    return draft.model_copy(
        update={
            "overall": after(held),
            "by_source": {g: after(rs) for g, rs in sorted(groups.items())},
        }
    )


def _group(rs: Sequence[Labelled], calibration: CalibrationFile | None) -> GroupReport:
    p = np.array([r.p_raw for r in rs], dtype=np.float64)
    y = np.array([int(r.fake) for r in rs])
    before = report(p, y)
    if calibration is None:
        return GroupReport(before=before, after=before)
    q = np.array([calibration.apply(float(v)) for v in p], dtype=np.float64)
    return GroupReport(before=before, after=report(q, y))


def reliability_diagram(
    curves: dict[str, tuple[Floats, npt.NDArray[np.int_]]], out: Path, title: str
) -> Path:
    """Observed fraction fake against mean predicted P(fake), 15 equal-width bins, one line
    per curve (e.g. raw and calibrated), with the bins' counts as a histogram below."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, BINS + 1)
    for name, (p, y) in curves.items():
        which = np.clip(np.digitize(p, edges[1:-1]), 0, BINS - 1)
        xs, ys = [], []
        for b in range(BINS):
            mask = which == b
            if mask.any():
                xs.append(float(p[mask].mean()))
                ys.append(float(y[mask].mean()))
        top.plot(xs, ys, marker="o", label=f"{name} (ECE {ece(p, y):.3f})")
        bottom.hist(p, bins=edges, histtype="step", label=name)
    top.set_ylabel("observed fraction fake")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("predicted P(fake)")
    bottom.set_ylabel("records")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_calibration(
    data: LabelledSet, model: ModelInfo, out: Path, method: Method = "temperature", seed: int = 0
) -> tuple[CalibrationFile, Path]:
    """Fit, write the file and its reliability diagram (held-out part, before and after)."""
    calibration = calibrate(data, model, method, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    _, held = _split(data.scored, seed)
    p = np.array([r.p_raw for r in held], dtype=np.float64)
    y = np.array([int(r.fake) for r in held])
    q = np.array([calibration.apply(float(v)) for v in p], dtype=np.float64)
    png = reliability_diagram(
        {"raw": (p, y), f"calibrated ({method})": (q, y)},
        out.with_suffix(".png"),
        f"{model.name}: held-out reliability (n={len(held)})",
    )
    return calibration, png


def summary_line(calibration: CalibrationFile) -> str:
    t = f"{calibration.temperature:.3f}" if calibration.temperature is not None else ""
    o = calibration.overall
    return (
        f"calibration method={calibration.method} temperature={t} "
        f"ece_before={o.before.ece:.3f} ece_after={o.after.ece:.3f} n={calibration.data.used}"
    )


def write_raw_reliability(predictions: Path, out: Path) -> tuple[Path, float | None]:
    """`skyra-stream eval`: the raw scores' reliability diagram (reliability.png) and ECE
    (reliability.json) beside the metrics, so a run says how far P(fake) is from calibrated."""
    data = read_labelled([predictions])
    scored = data.scored
    p = np.array([r.p_raw for r in scored], dtype=np.float64)
    y = np.array([int(r.fake) for r in scored])
    value = round(ece(p, y), 6) if len(scored) else None
    doc = {
        "ece": value,
        "bins": BINS,
        "n": len(scored),
        "without_probability": len(data.records) - len(scored),
    }
    (out / "reliability.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    png = out / "reliability.png"
    if len(scored):
        reliability_diagram({"raw P(fake)": (p, y)}, png, f"raw reliability (n={len(scored)})")
    return png, value
