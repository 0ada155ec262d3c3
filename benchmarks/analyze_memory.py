"""Peak memory of `skyra-stream analyze` over many inputs against few: does it stream?

`analyze` (and `eval`, the same loop) keeps a bounded window of jobs in progress and writes
each result as it finishes, so its memory must not grow with the number of inputs. The arms
run the real command as a subprocess over distinct clips it generates (decoded frames are
what would pile up: about 5.6 MiB per 640x360 clip at the model's input size), and the peak
RSS of its whole process tree is sampled every 0.1 s. Arms run back to back in one run.

Memory is bounded by the path's capacity (SKYRA_DECODE_CONCURRENCY + SKYRA_MAX_IN_FLIGHT
videos: 34 by default), so a run of fewer inputs than that never reaches the steady state.
The arms run with SKYRA_MAX_IN_FLIGHT=16 (a capacity of 18 on 2 CPUs), far below the smaller
arm (200), so that the ratio compares steady states over thousands of inputs and shows
growth with their number, if any; a middle arm shows the plateau.

What grew before (1.85x from 20 to 400 clips): a reference cycle per video (the engine
futures' callback closed over the list of futures) kept each finished run, its outcome and
its 16 frames alive until the next cyclic garbage collection, so memory rose by several MiB
per video between collections and the peak with the number of videos in flight between
them. The analysis path now makes no cycle per video (tests/test_analysis.py checks it).

`--engine fake` (the default) measures what `analyze` itself holds; `--engine vllm` runs the
tiny model on the CPU and adds vLLM's own memory (its processed-input cache is turned off,
since it is bounded separately by SKYRA_MM_PROCESSOR_CACHE_GB and would otherwise fill with
the larger arm's distinct frames); expect about 1.6 s of CPU per clip there.

Last line, for scripts: `ratio rss_2000_vs_200=<x.xx>`.

    python -m benchmarks.analyze_memory [--many 2000] [--few 200] [--engine fake|vllm]
        [--clips-dir DIR]  (keep the generated clips there for the next run)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.model.tiny_model import build_tiny_model

SKYRA = str(Path(sys.executable).with_name("skyra-stream"))


def tree_rss(main: psutil.Process) -> int:
    total = 0
    for proc in [main, *main.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def run_arm(clips: list[Path], out: Path, env: dict[str, str]) -> tuple[int, float, int]:
    """(peak tree RSS in bytes, seconds, output lines) of one `analyze` over `clips`."""
    folder = out.with_suffix(".d")
    folder.mkdir(exist_ok=True)
    for clip in clips:  # one folder per arm, as a user would point analyze at a folder
        link = folder / clip.name
        if not link.exists():
            link.symlink_to(clip)
    started = time.monotonic()
    proc = subprocess.Popen(
        [SKYRA, "analyze", str(folder), "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    main = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(main))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 2):
        raise RuntimeError(f"analyze exited {proc.returncode}:\n{stderr[-3000:]}")
    lines = len(out.read_text().splitlines())
    return peak, elapsed, lines


def clip(path: Path, seed: int) -> Path:
    """A distinct 640x360 clip (kept when it is already there from an earlier run)."""
    if path.exists():
        return path
    return write_video(path, VideoSpec(width=640, height=360, frames=30, seed=seed))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--many", type=int, default=2000)
    ap.add_argument("--few", type=int, default=200)
    ap.add_argument("--clips-dir", type=Path, default=None, help="reuse clips written here")
    ap.add_argument("--engine", choices=["fake", "vllm"], default="fake")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="skyra-bench-analyze-") as tmp_name:
        tmp = Path(tmp_name)
        store = args.clips_dir or tmp / "clips"
        print(f"writing {args.many} distinct 640x360 clips to {store} ...", file=sys.stderr)
        clips = [clip(store / f"c{i:04d}.mp4", i) for i in range(args.many)]
        env = {
            **os.environ,
            "SKYRA_ENGINE": args.engine,
            "SKYRA_LOG_LEVEL": "WARNING",
            "SKYRA_MAX_IN_FLIGHT": "16",
        }
        if args.engine == "vllm":
            env.update(
                SKYRA_MODEL_PATH=str(build_tiny_model(tmp / "model")),
                SKYRA_MAX_TOKENS="16",
                SKYRA_KV_CACHE_BYTES=str(512 << 20),
                SKYRA_MM_MAX_PIXELS=str(160 * 28 * 28),
                SKYRA_MM_PROCESSOR_CACHE_GB="0",
            )
        results = {}
        middle = (args.few + args.many) // 4
        arms = (("few", clips[: args.few]), ("middle", clips[:middle]), ("many", clips))
        for name, subset in arms:
            peak, seconds, lines = run_arm(subset, tmp / f"{name}.jsonl", env)
            results[name] = peak
            print(
                f"{name:>6}: {len(subset):4d} clips  {lines:4d} lines  "
                f"peak RSS {peak / 2**20:7.1f} MiB  {seconds:6.1f} s  "
                f"({len(subset) / seconds:.2f} clips/s)"
            )
    print(f"engine={args.engine}")
    print(f"ratio rss_{args.many}_vs_{args.few}={results['many'] / results['few']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
