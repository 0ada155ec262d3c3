"""Long uploads as windows: what 8 windows cost against 1, in the decoder and in the engine.

Two 3-minute 720p H.264 uploads it generates (`benchmarks.uploads`' textured panning scene):
a desktop export with B-frames and one keyframe every 10 s, and a phone-style clip with a
keyframe every second and no B-frames.

1. Decode: CPU-seconds (median of the repeats, one thread, frame skipping on as in the
   worker) of sampling the upload as one window of 16 frames against as 8 windows of 16
   frames each in one pass. A window's 16 frames are a few hundred milliseconds apart, so
   most of them sit after the same keyframe: the long-GOP clip decodes its GOPs once; the
   phone clip, whose keyframes are a second apart, pays for a seek and a short roll per
   frame either way.
2. Engine: wall-clock seconds on one tiny-model vLLM engine of the 8 windows submitted
   together (as the worker submits a long upload's windows) against the same 8 requests one
   after another (8 separate one-window videos, each alone on the engine).

Last line: `ratio decode_8w_vs_1w=<x.xx> engine_8w_vs_8req=<x.xx>` (decode: the long-GOP
clip's ratio; the target is at most 3).

    python -m benchmarks.windows [--repeats 3] [--out bench-out]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from benchmarks.uploads import Upload, write_upload
from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.model.engine import EngineRequest
from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import VerdictEngine
from skyra_stream.runtime.configs import engine_config
from skyra_stream.settings import Settings

LONG = (
    Upload(
        "export_720p_h264_gop300_3min",
        "libx264",
        1280,
        720,
        180,
        30,
        {"preset": "veryfast", "crf": "26", "bf": "3", "g": "300", "x264-params": "b-adapt=0"},
        bframes=True,
    ),
    Upload(
        "phone_720p_h264_gop30_3min",
        "libx264",
        1280,
        720,
        180,
        30,
        {"preset": "veryfast", "crf": "26", "bf": "0", "g": "30"},
    ),
)
ONE = DecodeLimits(threads=1)
EIGHT = dataclasses.replace(ONE, window_s=180 / 8, window_threshold_s=20.0, max_windows=8)


def cpu_s(path: Path, limits: DecodeLimits, repeats: int) -> tuple[float, int]:
    times, decoded = [], 0
    for _ in range(repeats):
        start = time.process_time()
        video = sample_video(str(path), limits)
        times.append(time.process_time() - start)
        decoded = video.frames_decoded
    return statistics.median(times), decoded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    folder = args.out / "long-uploads"
    print(f"encoding 3-minute uploads (cached in {folder})", flush=True)
    paths = {u.name: write_upload(folder, u) for u in LONG}

    print(f"\ndecode, CPU-seconds per upload (median of {args.repeats}, one thread):")
    print(f"{'upload':<32}{'1 window':>10}{'8 windows':>11}{'ratio':>8}{'frames decoded':>20}")
    ratios = {}
    for name, path in paths.items():
        one, n1 = cpu_s(path, ONE, args.repeats)
        eight, n8 = cpu_s(path, EIGHT, args.repeats)
        ratios[name] = eight / one
        print(f"{name:<32}{one:10.2f}{eight:11.2f}{eight / one:8.2f}{n1:>10} -> {n8}")

    windows = sample_video(str(paths[LONG[0].name]), EIGHT).windows
    assert len(windows) == 8
    model = build_tiny_model(args.out / "tiny-model")
    settings = Settings(
        model_path=model,
        max_tokens=48,
        kv_cache_bytes=512 << 20,
        mm_max_pixels=160 * 28 * 28,
        max_num_seqs=8,
        max_in_flight=8,
        enforce_eager=True,
    )
    print("\nengine, wall-clock seconds for the 8 windows of one upload (tiny model, CPU):")
    runs: dict[str, list[float]] = {"together": [], "one_by_one": []}
    with VerdictEngine(engine_config(settings)).start() as engine:

        def requests(tag: str) -> list[EngineRequest]:
            return [
                EngineRequest(f"{tag}-w{k}", w.frames, w.timestamps_s)
                for k, w in enumerate(windows)
            ]

        for f in [engine.submit(r) for r in requests("warm")]:
            f.result(timeout=600)
        for r in range(args.repeats):
            start = time.monotonic()
            for f in [engine.submit(q) for q in requests(f"together-{r}")]:
                f.result(timeout=600)
            runs["together"].append(time.monotonic() - start)
            start = time.monotonic()
            for q in requests(f"alone-{r}"):
                engine.submit(q).result(timeout=600)
            runs["one_by_one"].append(time.monotonic() - start)
            print(
                f"  round {r}: together {runs['together'][-1]:.2f} s, "
                f"one by one {runs['one_by_one'][-1]:.2f} s",
                flush=True,
            )
    together = statistics.median(runs["together"])
    alone = statistics.median(runs["one_by_one"])
    print(
        f"\nphone-style clip decode ratio {ratios[LONG[1].name]:.2f} (bounded by its keyframe "
        f"spacing); engine median together {together:.2f} s, one by one {alone:.2f} s"
    )
    print(
        f"ratio decode_8w_vs_1w={ratios[LONG[0].name]:.2f} engine_8w_vs_8req={together / alone:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
