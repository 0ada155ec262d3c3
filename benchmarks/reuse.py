"""Content reuse: throughput of the analysis path on a stream where 30 % of the events repost
content seen earlier, with the verdict cache against without, on the same engine.

The stream: `--events` events over distinct 640x360 H.264 clips (4 s, a keyframe every
2 s, B-frames), 30 % of them reposts of an earlier clip, byte for byte, each at least a
window of events after its original (a repost arrives once the original has been analysed,
as viral copies do; one that arrives while its original is still in flight is analysed
again, which this benchmark does not measure). Both arms run the analysis path the worker
runs (fetch from a local root, decode, engine, decision) on one tiny-model vLLM engine with
the same window; the cache arm uses the in-process store. Arms alternate (none, reuse,
none, reuse) so that neither gets a warmer machine.

vLLM's own prefix cache and processed-input cache are off in both arms by default
(`--vllm-caches` turns them on). A repost arrives minutes to days after its original; by then
a GPU engine has long evicted the original's KV blocks (an H100 holds about 230 videos' KV,
some 30 s of traffic at its throughput) and processed frames. On this CPU engine, with a
512 MiB KV cache and a stream of 40 videos, they would still be there, and the none arm
would get the repost's prefill for free: a reuse that production does not have.

Last line: `ratio reuse_vs_none=<x.xx>` (videos/s with reuse over without; the target is at
least 1.3).

    python -m benchmarks.reuse [--events 40] [--repost-share 0.3] [--out bench-out]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from skyra_stream.analysis import Analysis, FileInput, Job
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent
from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import VerdictEngine
from skyra_stream.runtime.configs import decode_workers, engine_config
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings


def stream(clips: list[Path], events: int, share: float, gap: int, seed: int) -> list[Path]:
    """The originals in order, with `events - len(clips)` reposts inserted at random, each
    more than `gap` events after its original."""
    rng = random.Random(seed)
    order = list(clips)
    for _ in range(events - len(clips)):
        original = clips[rng.randrange(0, max(1, len(clips) - gap))]
        earliest = order.index(original) + gap + 1
        order.insert(rng.randint(min(earliest, len(order)), len(order)), original)
    return order


def run_arm(analysis: Analysis, order: list[Path], tag: str) -> float:
    jobs = (
        Job(IngestEvent(event_id=f"{tag}-{i}", video_id=f"{tag}-{i}", uri=p.as_uri()), FileInput(p))
        for i, p in enumerate(order)
    )
    started = time.monotonic()
    outcomes = list(analysis.run(jobs))
    elapsed = time.monotonic() - started
    assert all(o.verdict is not None for o in outcomes), [o.error for o in outcomes]
    return len(outcomes) / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--repost-share", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--vllm-caches", action="store_true", help="keep vLLM's own caches on")
    args = ap.parse_args()
    folder = (args.out / "reuse").resolve()
    model = build_tiny_model(folder / "model")
    base = Settings(
        model_path=model,
        local_roots=[str(folder.resolve())],  # type: ignore[arg-type]
        max_tokens=48,
        kv_cache_bytes=512 << 20,
        mm_max_pixels=160 * 28 * 28,
        max_num_seqs=8,
        max_in_flight=8,
        enforce_eager=True,
        decode_device="cpu",
        prefix_caching=args.vllm_caches,
        mm_processor_cache_gb=1.0 if args.vllm_caches else 0.0,
    )
    window = decode_workers(base) + base.max_in_flight
    originals = args.events - round(args.events * args.repost_share)
    print(f"encoding clips in {folder}", flush=True)
    rates: dict[str, list[float]] = {"none": [], "reuse": []}
    with VerdictEngine(engine_config(base)).start() as engine:
        warm = build_analysis(base.model_copy(update={"verdict_cache": False}), engine)
        warm_clip = write_video(folder / "warm.mp4", VideoSpec(width=640, height=360, frames=30))
        run_arm(warm, [warm_clip] * 2, "warm")
        warm.close()
        for r in range(args.rounds):
            for arm in ("none", "reuse"):
                # Fresh content per arm and round: neither vLLM's processor cache nor the
                # page cache carries anything from one arm to the next.
                clips = [
                    write_video(
                        folder / f"{arm}-{r}-{i}.mp4",
                        VideoSpec(
                            width=640,
                            height=360,
                            frames=120,
                            gop=60,
                            options={"bf": "2"},
                            seed=10_000 * (r + 1) + 1000 * (arm == "reuse") + i,
                        ),
                    )
                    for i in range(originals)
                ]
                order = stream(clips, args.events, args.repost_share, window, seed=r)
                settings = base.model_copy(update={"verdict_cache": arm == "reuse"})
                analysis = build_analysis(settings, engine)
                try:
                    rate = run_arm(analysis, order, f"{arm}-{r}")
                finally:
                    analysis.close()
                rates[arm].append(rate)
                hits = analysis.metrics.reuse.labels("hit")._value.get()
                print(
                    f"round {r} {arm:<5} {rate:5.2f} videos/s  ({len(order)} events, "
                    f"{len(set(order))} distinct, {hits:.0f} answered from the cache)",
                    flush=True,
                )
    none, reuse = statistics.median(rates["none"]), statistics.median(rates["reuse"])
    caches = "on" if args.vllm_caches else "off"
    print(
        f"median: without {none:.2f} videos/s, with reuse {reuse:.2f} videos/s "
        f"(vLLM caches {caches})"
    )
    print(f"ratio reuse_vs_none={reuse / none:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
