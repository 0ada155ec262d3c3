"""Frame sampler against a naive decode-everything-keep-16 baseline.

Clips (generated once into bench-out/, H.264 with x264's default 250-frame GOP):
  short: 10 s of 1080p at 30 fps;  long: 10 min of 360p at 30 fps.
Each arm runs `--repeats` times, interleaved, and the median is kept, so both arms see the
same machine noise. Last line, for scripts: `ratio long_vs_naive=<x.xx> long_vs_short=<x.xx>`
(long_vs_naive: how many times faster the sampler is than the baseline on the long clip;
long_vs_short: the sampler's cost on the long clip over its cost on the short one).

    python -m benchmarks.frames [--repeats 3] [--out bench-out]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.media.samples import INDEX_BITS, read_index
from skyra_stream.model.prompt import resized_size


def write_clip(path: Path, width: int, height: int, seconds: int, fps: int = 30) -> Path:
    """A clip with moving content and the frame index drawn in, cheap to generate."""
    if path.exists():
        return path
    tmp = path.with_suffix(".part.mp4")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(height + 64, width + 64, 3), dtype=np.uint8)
    band = max(4, height // 4)
    half = INDEX_BITS // 2
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "28"}
        for i in range(seconds * fps):
            dx, dy = i % 64, (i // 2) % 64
            img = np.ascontiguousarray(base[dy : dy + height, dx : dx + width])
            for b in range(INDEX_BITS):
                row, col = divmod(b, half)
                bit = (i >> (INDEX_BITS - 1 - b)) & 1
                img[
                    row * band // 2 : (row + 1) * band // 2,
                    col * width // half : (col + 1) * width // half,
                ] = 255 if bit else 0
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.rename(path)
    return path


def naive(path: Path) -> list[int]:
    """Decode every frame, keep the 16 at linspace indices (converted like the sampler)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = DecodeLimits().threads  # same decoder set-up
        total = stream.frames
        wanted = {int(i) for i in np.linspace(0, total - 1, 16)}
        picked = []
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                w, h = resized_size(frame.width, frame.height)
                img = frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC")
                picked.append(read_index(img.to_ndarray()))
        return picked


def sampler(path: Path) -> list[int]:
    video = sample_video(str(path), DecodeLimits(timeout_s=600))
    return [read_index(f) for f in video.frames]


def timed(fn: Callable[[Path], Any], path: Path) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(path)
    return time.perf_counter() - start, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("generating clips (cached in", args.out, ")", flush=True)
    clips = {
        "short": write_clip(args.out / "short_1080p_10s.mp4", 1920, 1080, 10),
        "long": write_clip(args.out / "long_360p_10min.mp4", 640, 360, 600),
    }
    arms = {"sampler": sampler, "naive": naive}
    times: dict[tuple[str, str], list[float]] = {}
    picks: dict[tuple[str, str], list[int]] = {}
    for _ in range(args.repeats):
        for clip, path in clips.items():
            for arm, fn in arms.items():
                seconds, picked = timed(fn, path)
                times.setdefault((arm, clip), []).append(seconds)
                picks[(arm, clip)] = picked
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'clip':<8}{'arm':<10}{'median s':>10}{'runs':>24}")
    for (arm, clip), values in sorted(times.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"{clip:<8}{arm:<10}{med[(arm, clip)]:>10.3f}{runs:>24}")
    for clip in clips:
        same = picks[("sampler", clip)] == picks[("naive", clip)]
        print(f"{clip}: sampler and naive picked the same frames: {same}")
        if not same:
            print("  sampler", picks[("sampler", clip)], "\n  naive  ", picks[("naive", clip)])
    long_vs_naive = med[("naive", "long")] / med[("sampler", "long")]
    long_vs_short = med[("sampler", "long")] / med[("sampler", "short")]
    print(
        f"targets: long_vs_naive >= 5 ({'met' if long_vs_naive >= 5 else 'MISSED'}), "
        f"long_vs_short <= 3 ({'met' if long_vs_short <= 3 else 'MISSED'})"
    )
    print(f"ratio long_vs_naive={long_vs_naive:.2f} long_vs_short={long_vs_short:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
