"""Decode in threads or in processes? The worker's decode stage, both ways, side by side.

PyAV releases the GIL while FFmpeg decodes, so threads may be enough; processes add the cost
of pickling 16 frames back (about 4 MB a video) but escape the GIL for the Python parts
(packet scan, conversion). Each arm decodes the same clips from disk with the same number of
workers (`--workers`, default: the core count) and one FFmpeg thread per decode, as the
worker does under load; arms alternate over `--repeats` rounds and medians are kept.
Last line, for scripts: `ratio processes_vs_threads=<x.xx>` (videos/s of processes over
threads; above 1 means processes are faster).

    python -m benchmarks.decode_pool [--clips 16] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time
from pathlib import Path

from skyra_stream.frames import DecodeLimits, sample_video
from skyra_stream.samples import VideoSpec, write_video

LIMITS = DecodeLimits(threads=1, timeout_s=600)


def decode(path: str) -> int:
    video = sample_video(path, LIMITS)
    return sum(f.nbytes for f in video.frames)


def decode_frames(path: str) -> list[object]:
    """What the worker needs back from a decode: the frames themselves (pickled)."""
    return list(sample_video(path, LIMITS).frames)


def run(pool: concurrent.futures.Executor, paths: list[str]) -> float:
    start = time.perf_counter()
    results = list(pool.map(decode_frames, paths))
    elapsed = time.perf_counter() - start
    assert len(results) == len(paths)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out/decode-pool"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.clips):
        path = args.out / f"clip{i}.mp4"
        if not path.exists():
            write_video(
                path,
                VideoSpec(
                    width=1280,
                    height=720,
                    fps=30,
                    frames=150,
                    gop=60,
                    seed=i,
                    options={"preset": "veryfast"},
                ),
            )
        paths.append(str(path))
    times: dict[str, list[float]] = {"threads": [], "processes": []}
    with (
        concurrent.futures.ThreadPoolExecutor(args.workers) as threads,
        concurrent.futures.ProcessPoolExecutor(args.workers) as processes,
    ):
        list(processes.map(decode, paths[: args.workers]))  # start the workers
        for _ in range(args.repeats):
            times["threads"].append(run(threads, paths))
            times["processes"].append(run(processes, paths))
    rate = {k: args.clips / statistics.median(v) for k, v in times.items()}
    print(f"{args.clips} clips of 720p x 5 s, {args.workers} workers, 1 FFmpeg thread each")
    for name, values in times.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<10} {rate[name]:6.2f} videos/s   runs (s): {runs}")
    print(f"ratio processes_vs_threads={rate['processes'] / rate['threads']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
