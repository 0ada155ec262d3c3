"""How an API call overtakes the backlog: our admission window vs vLLM's priority scheduler.

Each arm starts its own engine (vLLM on the CPU, tiny model), submits `--backlog` videos at
priority 0 (the Kafka backlog), waits until the engine is busy, then submits one video at the
API's priority and times it until its answer:
  fifo:      vLLM fcfs, our window with no priority (every request priority 0): the baseline;
  admission: vLLM fcfs, our window admits by priority (what the worker does by default);
  vllm:      our window as large as the backlog (so it never holds anything back) and vLLM's
             `priority` scheduling policy deciding alone;
  both:      our window, twice vLLM's batch, admits by priority and vLLM's `priority`
             policy orders the part of the window that waits for a batch place
             (SKYRA_SCHEDULING_POLICY=priority, SKYRA_MAX_IN_FLIGHT=2*SKYRA_MAX_NUM_SEQS). With
             the window equal to the batch, vLLM has nothing waiting to reorder.
The same call with the engine idle is the floor. Every video is distinct (the backlog, the idle
call and the call under backlog): vLLM caches processed multimodal inputs by content, so a
backlog that repeats a few clips is cheap after its first pass and hides what real uploads,
all different, cost. Last line (API latency under backlog against fifo; lower wins):
`ratio admission_vs_fifo=<x.xx> vllm_vs_fifo=<x.xx> both_vs_fifo=<x.xx>`

    python -m benchmarks.api_priority [--backlog 48] [--window 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from skyra_stream.media.decode import sample_video
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import EngineRequest, VerdictEngine
from skyra_stream.runtime.configs import engine_config
from skyra_stream.settings import Settings


def arm(
    name: str,
    settings: Settings,
    clips: list[Path],
    idle_clip: Path,
    api_clip: Path,
    *,
    priority: int,
) -> tuple[float, float]:
    """(idle latency, latency under backlog) of one API-priority request, in seconds."""
    *videos, warm_video = [sample_video(str(p)) for p in clips]
    idle_video = sample_video(str(idle_clip))
    api_video = sample_video(str(api_clip))
    backlog = len(videos)
    engine = VerdictEngine(engine_config(settings)).start()
    try:
        warm = EngineRequest("warm", warm_video.frames, warm_video.timestamps_s)
        engine.submit(warm).result()
        started = time.perf_counter()
        engine.submit(
            EngineRequest("idle", idle_video.frames, idle_video.timestamps_s, priority=priority)
        ).result()
        idle = time.perf_counter() - started
        futures = [
            engine.submit(EngineRequest(f"bk{i}", video.frames, video.timestamps_s))
            for i, video in enumerate(videos)
        ]
        while engine.in_flight < min(settings.max_in_flight, backlog):
            time.sleep(0.01)
        time.sleep(0.5)  # the engine is mid-batch when the call arrives
        started = time.perf_counter()
        engine.submit(
            EngineRequest("api", api_video.frames, api_video.timestamps_s, priority=priority)
        ).result()
        busy = time.perf_counter() - started
        done_before = sum(f.done() for f in futures)
        for f in futures:
            f.result()
        print(
            f"{name:10s} idle {idle:6.2f} s   under backlog {busy:6.2f} s   "
            f"backlog finished first: {done_before}/{backlog}",
            flush=True,
        )
        return idle, busy
    finally:
        engine.close()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backlog", type=int, default=48)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_tiny_model(folder / "model")

        def clip(name: str, seed: int) -> Path:
            return write_video(folder / f"{name}.mp4", VideoSpec(frames=30, seed=seed))

        # One set of videos per arm, so no arm finds another's inputs warm; the extra
        # backlog clip warms the engine up.
        def clip_set(arm_no: int) -> tuple[list[Path], Path, Path]:
            base_seed = arm_no * 1000
            backlog = [clip(f"a{arm_no}-{i}", base_seed + i) for i in range(args.backlog + 1)]
            return (
                backlog,
                clip(f"a{arm_no}-idle", base_seed + 900),
                clip(f"a{arm_no}-api", base_seed + 901),
            )

        base = Settings(
            model_path=model,
            max_tokens=args.max_tokens,
            kv_cache_bytes=512 << 20,
            mm_max_pixels=160 * 28 * 28,
            max_num_seqs=args.window,
            max_in_flight=args.window,
        )
        results = {
            "fifo": arm("fifo", base, *clip_set(0), priority=0),
            "admission": arm("admission", base, *clip_set(1), priority=-10),
            "vllm": arm(
                "vllm",
                base.model_copy(
                    update={"scheduling_policy": "priority", "max_in_flight": args.backlog + 1}
                ),
                *clip_set(2),
                priority=-10,
            ),
            "both": arm(
                "both",
                base.model_copy(
                    update={"scheduling_policy": "priority", "max_in_flight": 2 * args.window}
                ),
                *clip_set(3),
                priority=-10,
            ),
        }
    fifo = results["fifo"][1]
    print(
        f"ratio admission_vs_fifo={results['admission'][1] / fifo:.2f} "
        f"vllm_vs_fifo={results['vllm'][1] / fifo:.2f} "
        f"both_vs_fifo={results['both'][1] / fifo:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
