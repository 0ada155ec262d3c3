"""ViF-Bench evaluation as the contract defines it (docs/model-contract.md, "Evaluation
protocol").

Layout: `<root>/Real/<clip-id>` and `<root>/<generator>/<clip-id>`, each clip a video file or
a folder of frames with `timestamps.txt`. A fake clip and the real clip with the same id form
a pair; per generator, over the pairs where both have a prediction, y_true is (real, fake)
and the metrics are balanced accuracy, recall of "fake" and F1 of "fake", plus their plain
mean over generators. A prediction that is neither Real nor Fake counts as Real.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyra_stream.analysis import Analysis, local_jobs
from skyra_stream.media.inputs import VIDEO_EXTENSIONS
from skyra_stream.model.response import parse_response

REAL = "Real"
METRICS = ("balanced_accuracy", "fake_recall", "fake_f1")
PAPER_ORDER = (
    "Wan2.1-T2V-1.3B",
    "CogVideoX1.5-5B-T",
    "Wan2.2-TI2V-5B-T",
    "Wan2.2-TI2V-5B-I",
    "HunyuanVideo",
    "HunyuanVideo-I2V",
    "Wan2.1-VACE-1.3B-T",
    "Wan2.2-T2V-14B",
    "Wan2.2-I2V-14B",
    "SkyReels-V2",
    "SkyReels-V2-I2V-14B-540P",
    "LTX-Video-13B-T",
    "LTX-Video-13B-I",
    "gen4-turbo",
    "hailuo",
    "pika-v2",
    "pixverse-v4-5",
    "kling-v1",
    "sora-2",
)


@dataclass(frozen=True, slots=True)
class Clip:
    source: str  # "Real" or the generator's folder name
    clip_id: str
    path: Path


@dataclass(frozen=True, slots=True)
class Prediction:
    source: str
    clip_id: str
    label: str | None  # "fake" | "real" | None (no usable answer: counts as real)
    fake_probability: float | None = None

    @property
    def says_fake(self) -> bool:
        return self.label == "fake"


def discover(root: Path) -> list[Clip]:
    """Every clip under the benchmark root, Real first, generators in the paper's order."""
    if not (root / REAL).is_dir():
        raise FileNotFoundError(f"{root} has no {REAL}/ folder")
    order = {name: i for i, name in enumerate(PAPER_ORDER)}
    sources = sorted(
        (p for p in root.iterdir() if p.is_dir()),
        key=lambda p: (p.name != REAL, order.get(p.name, len(order)), p.name),
    )
    clips = []
    for folder in sources:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() or entry.suffix.lower() in VIDEO_EXTENSIONS:
                clips.append(
                    Clip(folder.name, entry.stem if entry.is_file() else entry.name, entry)
                )
    return clips


# -- predictions -----------------------------------------------------------------------------


def read_predictions(path: Path) -> list[Prediction]:
    """Our JSONL checkpoint, or the reference code's JSON list (video_id, aigc_model_name,
    gt, answer)."""
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        return [_from_reference(doc) for doc in json.loads(text)]
    return [Prediction(**json.loads(line)) for line in text.splitlines() if line.strip()]


def _from_reference(doc: dict[str, Any]) -> Prediction:
    gt = str(doc.get("gt", "")).strip().lower()
    is_real = gt in ("real", "0", "false")
    source = REAL if is_real else str(doc.get("aigc_model_name") or "unknown")
    answer = str(doc.get("answer", ""))
    label = (
        parse_response(answer).label
        if "<answer>" in answer.lower()
        else {"fake": "fake", "real": "real"}.get(answer.strip().strip(".").lower())
    )
    return Prediction(source=source, clip_id=str(doc["video_id"]), label=label)


class Checkpoint:
    """Append-only predictions file; rerunning skips what it already holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = (
            {(p.source, p.clip_id) for p in read_predictions(path)} if path.exists() else set()
        )

    def append(self, prediction: Prediction) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(prediction)) + "\n")
        self.done.add((prediction.source, prediction.clip_id))


def predict(analysis: Analysis, clips: Sequence[Clip], checkpoint: Checkpoint) -> int:
    """Run the model on `clips` and append each prediction to `checkpoint` as its clip
    finishes (a run over thousands of clips holds a bounded number of frames, and a crash
    loses only what was in progress); returns how many were appended."""
    by_path = {str(c.path): c for c in clips}
    names: dict[str, str] = {}
    appended = 0
    for outcome in analysis.run(local_jobs(list(by_path), names)):
        clip = by_path[names.pop(outcome.job.event.event_id)]
        verdict = outcome.verdict
        checkpoint.append(
            Prediction(
                source=clip.source,
                clip_id=clip.clip_id,
                label=verdict.label if verdict else None,
                fake_probability=verdict.fake_probability if verdict else None,
            )
        )
        appended += 1
    return appended


def pending_clips(root: Path, checkpoint: Checkpoint) -> list[Clip]:
    """The clips under `root` that `checkpoint` has no prediction for yet."""
    return [c for c in discover(root) if (c.source, c.clip_id) not in checkpoint.done]


# -- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneratorScore:
    generator: str
    pairs: int
    balanced_accuracy: float
    fake_recall: float
    fake_f1: float


def score(predictions: Iterable[Prediction]) -> tuple[list[GeneratorScore], dict[str, float]]:
    """Per-generator paired metrics and their plain means over generators."""
    by_source: dict[str, dict[str, Prediction]] = {}
    for p in predictions:
        by_source.setdefault(p.source, {})[p.clip_id] = p  # the last prediction of a clip wins
    real = by_source.get(REAL, {})
    order = {name: i for i, name in enumerate(PAPER_ORDER)}
    scores = []
    for generator in sorted(
        (s for s in by_source if s != REAL), key=lambda s: (order.get(s, len(order)), s)
    ):
        fakes = by_source[generator]
        ids = sorted(set(fakes) & set(real))
        if not ids:
            continue
        y_true = [0] * len(ids) + [1] * len(ids)
        y_pred = [int(real[i].says_fake) for i in ids] + [int(fakes[i].says_fake) for i in ids]
        scores.append(GeneratorScore(generator, len(ids), *_binary_metrics(y_true, y_pred)))
    means = {
        m: float(np.mean([getattr(s, m) for s in scores])) if scores else float("nan")
        for m in METRICS
    }
    return scores, means


def _binary_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[float, float, float]:
    tp = sum(t == 1 and p == 1 for t, p in zip(y_true, y_pred, strict=True))
    tn = sum(t == 0 and p == 0 for t, p in zip(y_true, y_pred, strict=True))
    fp = sum(t == 0 and p == 1 for t, p in zip(y_true, y_pred, strict=True))
    fn = sum(t == 1 and p == 0 for t, p in zip(y_true, y_pred, strict=True))
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return (recall + specificity) / 2, recall, f1


def write_report(scores: list[GeneratorScore], means: dict[str, float], out: Path) -> list[Path]:
    """metrics.json, metrics.csv and one bar chart PNG per metric."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(s) for s in scores]
    (out / "metrics.json").write_text(json.dumps({"generators": rows, "mean": means}, indent=2))
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["generator", "pairs", *METRICS])
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"generator": "mean", "pairs": sum(s.pairs for s in scores), **means})
    written = [out / "metrics.json", out / "metrics.csv"]
    written.extend(_charts(scores, means, out))
    return written


def _charts(scores: list[GeneratorScore], means: dict[str, float], out: Path) -> Iterator[Path]:
    import matplotlib  # noqa: PLC0415 - plotting is optional and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    for metric in METRICS:
        values = [getattr(s, metric) * 100 for s in scores]
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(scores) + 2), 4.5))
        ax.bar([s.generator for s in scores], values, color="#4c72b0")
        ax.axhline(
            means[metric] * 100,
            color="#dd8452",
            linestyle="--",
            label=f"mean {means[metric] * 100:.2f}",
        )
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.set_title(f"ViF-Bench {metric.replace('_', ' ')} per generator")
        ax.tick_params(axis="x", labelrotation=60)
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = out / f"{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        yield path
