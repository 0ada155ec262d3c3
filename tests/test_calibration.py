"""Calibration and threshold tuning on synthetic labelled data with a known miscalibration:
true logits z, labels drawn with probability sigmoid(z), scores sigmoid(T * z). A correct
temperature fit finds T; the held-out ECE after calibration is small; isotonic is monotone
in [0, 1]; a file for another model is refused at start; `policy tune` picks a threshold
that keeps its precision on a fresh set it never saw."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from skyra_stream.cli import app
from skyra_stream.decisions.calibration import (
    CalibrationError,
    CalibrationFile,
    calibrate_verdict,
    load_calibration,
)
from skyra_stream.evaluation.calibration_fit import calibrate, ece, write_calibration
from skyra_stream.evaluation.labelled import read_labelled
from skyra_stream.evaluation.thresholds import tune, wilson
from skyra_stream.messages import ModelInfo

MODEL = ModelInfo(name="skyra-rl", revision="r1")
N = 10_000


def synthetic(path: Path, temperature: float, n: int = N, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    fake = rng.random(n) < 1 / (1 + np.exp(-z))
    score = 1 / (1 + np.exp(-temperature * z))
    generators = np.where(fake, rng.choice(["gen-a", "gen-b"], n), "Real")
    with path.open("w") as f:
        for g, p in zip(generators, score, strict=True):
            f.write(json.dumps({"source": str(g), "clip_id": "c", "fake_probability": float(p)}))
            f.write("\n")
        f.write(json.dumps({"source": "gen-a", "clip_id": "u", "fake_probability": None}) + "\n")
    return path


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_temperature_scaling_finds_the_miscalibration(tmp_path: Path, temperature: float) -> None:
    data = read_labelled([synthetic(tmp_path / "p.jsonl", temperature)])
    calibration, png = write_calibration(data, MODEL, tmp_path / "cal.json")
    assert calibration.temperature is not None
    assert abs(calibration.temperature - temperature) <= 0.1 * temperature
    assert calibration.overall.after.ece <= 0.03 < calibration.overall.before.ece
    assert calibration.overall.after.log_loss < calibration.overall.before.log_loss
    assert calibration.data.without_probability == 1  # counted, left out of the fit
    assert calibration.data.used == N
    assert calibration.data.fit + calibration.data.held_out == N
    assert set(calibration.by_source) == {"Real", "gen-a", "gen-b"}
    assert png.is_file()
    assert png.read_bytes().startswith(b"\x89PNG")
    # The file on disk is what the worker loads.
    assert load_calibration(tmp_path / "cal.json", MODEL) == calibration


def test_isotonic_is_monotone_within_zero_and_one(tmp_path: Path) -> None:
    data = read_labelled([synthetic(tmp_path / "p.jsonl", 2.5)])
    calibration = calibrate(data, MODEL, "isotonic")
    grid = [i / 200 for i in range(201)]
    values = [calibration.apply(p) for p in grid]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert calibration.overall.after.ece <= 0.03


def test_ece_is_the_weighted_gap_per_bin() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95])  # two bins, two records each
    y = np.array([0, 1, 1, 1])
    # bin 1: observed 0.5, predicted 0.05 -> 0.45; bin 15: 1.0 vs 0.95 -> 0.05
    assert ece(p, y) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def test_a_file_for_another_model_is_refused(tmp_path: Path) -> None:
    data = read_labelled([synthetic(tmp_path / "p.jsonl", 2.5, n=2000)])
    write_calibration(data, MODEL, tmp_path / "cal.json")
    with pytest.raises(CalibrationError, match=r"made for model skyra-rl@r1.*serves other@r1"):
        load_calibration(tmp_path / "cal.json", ModelInfo(name="other", revision="r1"))
    with pytest.raises(CalibrationError, match=r"serves skyra-rl@r2"):
        load_calibration(tmp_path / "cal.json", ModelInfo(name="skyra-rl", revision="r2"))


def test_the_worker_stops_at_start_with_a_file_for_another_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = read_labelled([synthetic(tmp_path / "p.jsonl", 2.5, n=2000)])
    write_calibration(data, MODEL, tmp_path / "cal.json")
    monkeypatch.setenv("SKYRA_ENGINE", "fake")  # serves `fake-engine`, not skyra-rl@r1
    monkeypatch.setenv("SKYRA_CALIBRATION_FILE", str(tmp_path / "cal.json"))
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "SKYRA_CALIBRATION_FILE" in result.output
    assert "made for model skyra-rl@r1, this process serves fake-engine@-" in result.output
    check = CliRunner().invoke(app, ["calibrate-check", str(tmp_path / "cal.json")])
    assert check.exit_code == 2
    ok = CliRunner().invoke(
        app, ["calibrate-check", str(tmp_path / "cal.json"), "--model", "skyra-rl@r1"]
    )
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output


def test_the_calibrate_command_prints_its_summary_last(tmp_path: Path) -> None:
    preds = synthetic(tmp_path / "p.jsonl", 2.5, n=3000)
    out = tmp_path / "cal.json"
    result = CliRunner().invoke(
        app, ["calibrate", "--predictions", str(preds), "--model", "skyra-rl@r1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("calibration method=temperature temperature=2.")
    assert last.endswith("n=3000")
    assert out.with_suffix(".png").is_file()


def test_verdicts_carry_the_calibrated_and_the_raw_probability() -> None:
    from tests.test_reviews import verdict

    calibration = CalibrationFile.model_validate(
        json.loads(Path(__file__).with_name("data").joinpath("calibration.json").read_text())
    )
    v = verdict().model_copy(update={"fake_probability": 0.9})
    out = calibrate_verdict(v, calibration)
    assert out.fake_probability_raw == 0.9
    expected = 1 / (1 + math.exp(-math.log(0.9 / 0.1) / 2.0))
    assert out.fake_probability == pytest.approx(expected)
    assert out.calibration is not None
    assert out.calibration.id == calibration.id
    # Applied again (a reused verdict), it starts from the raw value, not the calibrated one.
    assert calibrate_verdict(out, calibration).fake_probability == pytest.approx(expected)
    plain = calibrate_verdict(out, None)
    assert (plain.fake_probability, plain.calibration) == (0.9, None)


def test_policy_tune_keeps_its_precision_on_a_fresh_set(tmp_path: Path) -> None:
    # Calibrated scores (T = 1): the threshold is chosen on one set, checked on another.
    tuning_set = read_labelled([synthetic(tmp_path / "tune.jsonl", 1.0, seed=1)])
    result = tune(tuning_set.records, target=0.95, max_review_rate=0.10)
    assert result.block is not None
    assert result.review is not None
    assert result.review < result.block
    assert result.share_review <= 0.10
    fresh = read_labelled([synthetic(tmp_path / "fresh.jsonl", 1.0, seed=2)]).scored
    blocked = [r.fake for r in fresh if r.p_raw is not None and r.p_raw >= result.block]
    assert sum(blocked) / len(blocked) >= 0.95
    # the lower bound met the target at the chosen threshold, not the one below
    row = next(r for r in result.rows if r.threshold == result.block)
    assert row.low >= 0.95


def test_policy_tune_with_too_few_labels_says_how_many_more(tmp_path: Path) -> None:
    few = read_labelled([synthetic(tmp_path / "few.jsonl", 1.0, n=60, seed=3)])
    result = tune(few.records, target=0.99, max_review_rate=0.10)
    assert result.block is None
    assert result.needed is None or result.needed > 0
    assert "more" in result.message


def test_policy_tune_writes_a_new_version_with_the_tuned_rules(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: p-1\n"
        "default: {id: platform, otherwise: allow, rules: ["
        "{name: maybe-fake, action: review, when: {min_fake_probability: 0.5}},"
        "{name: blur, action: review, when: {artifact_types: [Unnatural Blur]}}]}\n"
    )
    labels = synthetic(tmp_path / "tune.jsonl", 1.0, seed=4)
    result = CliRunner().invoke(
        app, ["policy", "tune", str(policy), "--labels", str(labels), "--target-precision", "0.95"]
    )
    assert result.exit_code == 0, result.output
    tuned = tmp_path / "policy.tuned.yaml"
    check = CliRunner().invoke(app, ["policy", "check", str(tuned)])
    assert check.exit_code == 0, check.output
    text = tuned.read_text()
    assert "version: p-1+tuned." in text
    assert "tuned-block" in text
    assert "maybe-fake" not in text  # superseded: it would review outside the tuned band
    assert "name: blur" in text  # a rule on artifacts stays
    assert "+  - name: tuned-block" in result.stdout  # the diff
    assert tuned.with_suffix(".png").is_file()


def test_wilson_interval() -> None:
    low, high = wilson(95, 100)
    assert low == pytest.approx(0.8882, abs=1e-3)
    assert high == pytest.approx(0.9785, abs=1e-3)
