"""The command line as a user drives it: subprocesses, real files, real broker and S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from skyra_stream.media.samples import VideoSpec, write_video

pytestmark = pytest.mark.subprocess

SKYRA = str(Path(sys.executable).with_name("skyra-stream"))
ENGINE_ENV = {
    "SKYRA_MAX_TOKENS": "800",  # room for the grammar's longest form
    "SKYRA_GUIDED": "regex",  # the untrained model then always answers in the contract's form
    "SKYRA_GUIDED_MAX_TEXT_CHARS": "10",
    "SKYRA_KV_CACHE_BYTES": str(128 << 20),
    "SKYRA_MM_MAX_PIXELS": str(160 * 28 * 28),
}


def run(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SKYRA, *args],
        env={**os.environ, **ENGINE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        "analyze",
        "produce",
        "eval",
        "demo",
        "worker",
        "serve",
        "tiny-model",
        "schema",
        "inspect",
        "samples",
        "review-console",
        "reviews",
        "reviews stats",
    ],
)
def test_every_command_explains_itself(command: str) -> None:
    # In process (typer's runner): the entry point itself is run by every test below.
    from typer.testing import CliRunner

    from skyra_stream.cli import app

    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_analyze_usage_errors_exit_1(tmp_path: Path) -> None:
    model = str(tmp_path / "model")  # never loaded: the inputs are refused first
    assert run("analyze", str(tmp_path / "missing.mp4"), "--model", model).returncode == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("analyze", str(empty), "--model", model).returncode == 1


def test_analyze_folder_writes_verdicts_rejections_and_sheets(tmp_path: Path) -> None:
    # The command's own work (inputs, the streaming window, JSON lines, sheets, exit codes)
    # on the fake engine; the same analysis path runs on the real engine in test_api.py,
    # and the demo below runs the real engine end to end.
    videos = tmp_path / "in"
    write_video(videos / "a.mp4", VideoSpec(seed=1))
    write_video(videos / "nested" / "b.webm", VideoSpec(codec="libvpx-vp9", seed=2))
    (videos / "c.mp4").write_text("not a video")
    (videos / "notes.txt").write_text("ignored: not a video extension")
    out, sheets = tmp_path / "out.jsonl", tmp_path / "sheets"
    proc = run(
        "analyze", str(videos), "--out", str(out), "--render", str(sheets), SKYRA_ENGINE="fake"
    )
    assert proc.returncode == 2, proc.stderr[-3000:]  # one input was rejected
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_source = {
        Path(doc["video_id"] if "video_id" in doc else doc["source"]).name: doc for doc in lines
    }
    assert set(by_source) == {"a.mp4", "b.webm", "c.mp4"}
    assert by_source["c.mp4"]["status"] == "rejected"
    assert by_source["c.mp4"]["error"]["code"] == "not_a_video"
    for name in ("a.mp4", "b.webm"):
        verdict = by_source[name]
        assert verdict["status"] == "ok"
        assert verdict["label"] in ("fake", "real")
        assert verdict["model"]["name"] == "fake-engine"
        assert verdict["video"]["frames_sampled"] == 16
    assert sorted(p.name.split("-")[0] for p in sheets.glob("*.png")) == ["a", "b"]


def test_eval_runs_resumes_and_scores(tmp_path: Path) -> None:
    # The command's own logic (discovery, streaming, checkpoint, scoring, charts) on the
    # fake engine; `analyze` above runs the same analysis path on the real one.
    root = tmp_path / "bench"
    for source in ("Real", "sora-2"):
        for i in range(3):
            write_video(root / source / f"clip{i}.mp4", VideoSpec(frames=20, seed=i))
    (root / "sora-2" / "clip2.mp4").write_bytes(b"broken")  # no prediction, no crash
    out = tmp_path / "eval"
    first = run("eval", "--bench-root", str(root), "--out", str(out), SKYRA_ENGINE="fake")
    assert first.returncode == 0, first.stderr[-3000:]
    predictions = (out / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 6
    broken = [json.loads(p) for p in predictions if '"clip2"' in p and "sora-2" in p]
    assert len(broken) == 1
    assert broken[0]["label"] is None
    assert "sora-2" in first.stdout
    assert "mean" in first.stdout
    for name in (
        "metrics.json",
        "metrics.csv",
        "balanced_accuracy.png",
        "fake_recall.png",
        "fake_f1.png",
        "reliability.png",
    ):
        assert (out / name).exists(), name
    reliability = json.loads((out / "reliability.json").read_text())
    assert (reliability["n"], reliability["without_probability"]) == (5, 1)
    assert 0.0 <= reliability["ece"] <= 1.0
    assert "raw P(fake): ECE" in first.stdout
    # Nothing left to run: the engine is never started (the vLLM engine here has no model
    # and would fail with exit 1 if it were).
    again = run("eval", "--bench-root", str(root), "--out", str(out), SKYRA_ENGINE="vllm")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sora-2" in again.stdout
    assert (out / "predictions.jsonl").read_text().splitlines() == predictions


@pytest.mark.stack
def test_demo_end_to_end_and_leaves_no_process_behind(tmp_path: Path) -> None:
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen(
        [SKYRA, "demo", "--out", str(tmp_path / "demo")], stdout=log, stderr=log
    )
    # Everything the demo starts (broker, worker, vLLM's engine processes), seen while it
    # runs: other tests may start such processes at the same time, so the check after the
    # demo is about these, not about whatever else is running.
    seen: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for child in root.children(recursive=True):
                seen.setdefault(child.pid, child.create_time())
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.5)
    log.close()
    stderr = (tmp_path / "demo.log").read_text()
    assert proc.returncode == 0, stderr[-4000:]
    assert "6 of 6 events answered" in stderr
    assert "broken-upload.mp4: dead letter not_a_video" in stderr
    assert "UNTRAINED" in stderr
    assert len(list((tmp_path / "demo" / "sheets").glob("*.png"))) == 5
    assert len(seen) >= 3, "the broker, the worker and its engine process"
    leftovers = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                leftovers.append(p.cmdline())
        except psutil.NoSuchProcess:
            continue
    assert leftovers == []
