"""Decode in threads or in processes? The worker's CPU work per video, both ways, side by side.

Per video the worker process does more than FFmpeg's decoding, which releases the GIL: the
packet scan and frame conversion in PyAV, and vLLM's image processor (the Qwen2-VL
processor, numpy and torch) on the 16 frames, which hold it for part of their time.
Processes escape the GIL but pay for pickling 16 frames back (about 4 MB a video). Each arm
runs the same uploads shaped like production (`benchmarks.uploads`: 1080p and 4K, long GOPs,
B-frames, up to a minute) from disk, sampled as the worker samples them (one FFmpeg thread,
unreferenced frames skipped) and then processed, with `--workers` at once (default: the
CPUs this container may use); arms alternate over `--repeats` rounds and medians are kept.
Last line: `ratio processes_vs_threads=<x.xx>` (videos/s of processes over threads; above 1
means processes are faster).

    python -m benchmarks.decode_pool [--workers N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.uploads import write_uploads
from skyra_stream.media.cpu import available_cpus
from skyra_stream.media.decode import DecodeLimits, sample_video

LIMITS = DecodeLimits(threads=1, timeout_s=600)
# Per process (each pool worker loads its own processor once): the model folder and the
# loaded processor.
_STATE: dict[str, Any] = {}


def _processor() -> Any:
    if "processor" not in _STATE:
        import torch
        from transformers import AutoImageProcessor

        torch.set_num_threads(1)
        _STATE["processor"] = AutoImageProcessor.from_pretrained(_STATE["model"])
    return _STATE["processor"]


def _init(model: Path) -> None:
    _STATE["model"] = model
    _processor()


def work(path: str) -> list[object]:
    """What the worker process does per video before the engine: sample, then process."""
    video = sample_video(path, LIMITS)
    _processor()(images=video.frames, return_tensors="pt")
    return list(video.frames)


def run(pool: concurrent.futures.Executor, paths: list[str]) -> float:
    start = time.perf_counter()
    results = list(pool.map(work, paths))
    elapsed = time.perf_counter() - start
    assert len(results) == len(paths)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workers", type=int, default=available_cpus())
    ap.add_argument("--copies", type=int, default=2, help="of each upload shape per round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out/ceiling"))
    args = ap.parse_args()
    from skyra_stream.model.tiny_model import build_tiny_model

    model = build_tiny_model(args.out / "tiny-model")
    uploads = write_uploads(args.out / "uploads")
    paths = [str(p) for p in uploads.values()] * args.copies
    _init(model)
    times: dict[str, list[float]] = {"threads": [], "processes": []}
    with (
        concurrent.futures.ThreadPoolExecutor(args.workers) as threads,
        concurrent.futures.ProcessPoolExecutor(
            args.workers, initializer=_init, initargs=(model,)
        ) as processes,
    ):
        list(processes.map(work, paths[: args.workers]))  # start and warm the workers
        list(threads.map(work, paths[: args.workers]))
        for _ in range(args.repeats):
            times["threads"].append(run(threads, paths))
            times["processes"].append(run(processes, paths))
    rate = {k: len(paths) / statistics.median(v) for k, v in times.items()}
    print(
        f"{len(paths)} uploads ({', '.join(u.name for u in uploads)}), "
        f"{args.workers} workers, 1 FFmpeg thread each, image processing included"
    )
    for name, values in times.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<10} {rate[name]:6.2f} videos/s   runs (s): {runs}")
    print(f"ratio processes_vs_threads={rate['processes'] / rate['threads']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
