"""ViF-Bench scoring checked against scikit-learn on predictions whose answers are known."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from skyra_stream.evaluation.vifbench import (
    REAL,
    Checkpoint,
    Prediction,
    discover,
    read_predictions,
    score,
    write_report,
)
from skyra_stream.media.images import load_frames_folder

GENERATORS = ["Wan2.1-T2V-1.3B", "sora-2", "kling-v1"]


def random_predictions(seed: int) -> list[Prediction]:
    rnd = random.Random(seed)
    labels = ["fake", "real", None, "fake"]
    preds = [Prediction(REAL, f"c{i}", rnd.choice(labels)) for i in range(40)]
    for g in GENERATORS:
        # each generator covers a different subset of the real clips, plus unpaired extras
        ids = rnd.sample(range(45), 30)
        preds += [Prediction(g, f"c{i}", rnd.choice(labels)) for i in ids]
    return preds


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_per_generator_metrics_match_scikit_learn(seed: int) -> None:
    preds = random_predictions(seed)
    scores, means = score(preds)
    real = {p.clip_id: p for p in preds if p.source == REAL}
    assert [s.generator for s in scores] == ["Wan2.1-T2V-1.3B", "kling-v1", "sora-2"]
    for s in scores:
        fakes = {p.clip_id: p for p in preds if p.source == s.generator}
        ids = sorted(set(fakes) & set(real))
        assert s.pairs == len(ids)
        y_true = [0] * len(ids) + [1] * len(ids)
        y_pred = [int(real[i].label == "fake") for i in ids] + [
            int(fakes[i].label == "fake") for i in ids
        ]
        assert s.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert s.fake_recall == pytest.approx(recall_score(y_true, y_pred, zero_division=0))
        assert s.fake_f1 == pytest.approx(f1_score(y_true, y_pred, zero_division=0))
    assert means["fake_f1"] == pytest.approx(np.mean([s.fake_f1 for s in scores]))


def test_perfect_and_inverted_detectors() -> None:
    perfect = [Prediction(REAL, "a", "real"), Prediction("g", "a", "fake")]
    inverted = [Prediction(REAL, "a", "fake"), Prediction("g", "a", "real")]
    assert score(perfect)[0][0].balanced_accuracy == 1.0
    assert score(inverted)[0][0].balanced_accuracy == 0.0


def test_no_answer_counts_as_real() -> None:
    scores, _ = score([Prediction(REAL, "a", None), Prediction("g", "a", None)])
    assert (scores[0].balanced_accuracy, scores[0].fake_recall) == (0.5, 0.0)


def test_reference_json_format(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(
        json.dumps(
            [
                {
                    "video_id": "001",
                    "aigc_model_name": "sora-2",
                    "gt": "Fake",
                    "answer": "<think>x</think><answer>Fake</answer>",
                },
                {"video_id": "001", "aigc_model_name": "Real", "gt": "Real", "answer": "Real"},
                {"video_id": "002", "aigc_model_name": "sora-2", "gt": "Fake", "answer": "garbled"},
                {"video_id": "002", "aigc_model_name": "", "gt": "Real", "answer": "<answer>Fake"},
            ]
        )
    )
    preds = read_predictions(path)
    assert {(p.source, p.clip_id, p.label) for p in preds} == {
        ("sora-2", "001", "fake"),
        (REAL, "001", "real"),
        ("sora-2", "002", None),
        (REAL, "002", None),
    }
    [s], _ = score(preds)
    assert (s.pairs, s.fake_recall) == (2, 0.5)


def test_checkpoint_resumes(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path / "p.jsonl")
    cp.append(Prediction(REAL, "a", "real", 0.1))
    again = Checkpoint(tmp_path / "p.jsonl")
    assert again.done == {(REAL, "a")}
    assert read_predictions(tmp_path / "p.jsonl") == [Prediction(REAL, "a", "real", 0.1)]


def test_report_files(tmp_path: Path) -> None:
    scores, means = score(random_predictions(5))
    written = write_report(scores, means, tmp_path)
    assert {p.name for p in written} == {
        "metrics.json",
        "metrics.csv",
        "balanced_accuracy.png",
        "fake_recall.png",
        "fake_f1.png",
    }
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["mean"]["balanced_accuracy"] == pytest.approx(means["balanced_accuracy"])
    assert Image.open(tmp_path / "fake_f1.png").size[0] > 300


def test_discover_and_frame_folders(tmp_path: Path) -> None:
    (tmp_path / REAL / "001").mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (320, 180), (i * 10, 0, 0)).save(tmp_path / REAL / "001" / f"{i:03d}.png")
    (tmp_path / REAL / "001" / "timestamps.txt").write_text(
        "\n".join(f"{i * 0.25:.2f}" for i in range(20))
    )
    (tmp_path / "sora-2").mkdir()
    (tmp_path / "sora-2" / "001.mp4").write_bytes(b"")
    clips = discover(tmp_path)
    assert [(c.source, c.clip_id) for c in clips] == [(REAL, "001"), ("sora-2", "001")]
    video = load_frames_folder(tmp_path / REAL / "001")
    assert video.info.frames_sampled == 16
    assert video.frames[0].shape == (256, 455, 3)
    assert video.info.timestamps_s[0] == 0.0
    assert video.info.timestamps_s[-1] == pytest.approx(19 * 0.25)
