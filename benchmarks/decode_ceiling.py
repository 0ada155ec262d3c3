"""The pre-GPU ceiling: how many uploads per second the CPUs in front of one GPU can feed it.

Uploads shaped like production (`benchmarks.uploads`: 1080p and 4K, long GOPs, B-frames, a
minute long) sit in a real S3 endpoint (moto's server, in its own process so that its CPU is
not counted). Two measurements, side by side in one run:

1. CPU-seconds per video by stage, one video at a time on one thread, for every upload
   shape: fetch (S3 GET into the spool, as the worker fetches), decode (demux scan, seeks,
   decoding up to each sample), resize (scaling and RGB conversion of the 16 samples) and
   image processing (the Qwen2-VL image processor that vLLM runs in the worker process on
   those frames). Arms: today's sampler (every frame decoded) and with unreferenced frames
   skipped.
2. The worker's analysis path with `FakeEngine` answering at once (so the CPUs are the only
   limit), over a stream of the same uploads, three arms: today's settings (2 decodes at
   once, FFmpeg picking its thread count), with frame skipping, and with the sizing from
   the container's CPU quota (one decode per CPU, one FFmpeg thread each). Reports videos/s
   and CPU-seconds per video (process CPU time, all threads).

Image processing is not in the pipeline arms: with FakeEngine nothing runs vLLM's processor,
so stage 1 is where its cost shows; the per-core figure adds it.

Last line: `ratio skip_vs_today=<x.xx> videos_per_core_s=<x.xx>`: CPU-seconds per video
with skipping over today's, on the B-frame shapes (fetch + decode + resize + image
processing), and videos per CPU-second with skipping and sizing, all shapes, image
processing included.

    python -m benchmarks.decode_ceiling [--repeats 3] [--stream 24] [--out bench-out]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np

from benchmarks.uploads import Upload, write_uploads
from skyra_stream.analysis import Job, ObjectInput
from skyra_stream.devstack.broker import free_port
from skyra_stream.media.cpu import available_cpus
from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.media.fetch import ObjectFetcher
from skyra_stream.messages import IngestEvent
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.runtime.configs import fetch_config
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings

BUCKET = "uploads"
STAGES = ("fetch", "decode", "resize", "image_processing")


def start_s3(out: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (out / "moto.log").open("ab")
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return proc, url


def image_processor(out: Path) -> Callable[[list[np.ndarray]], Any]:
    """The processor vLLM would run for the model, on the tiny model's processor config
    (the same class and pixel bounds as Skyra's)."""
    import torch
    from transformers import AutoImageProcessor

    from skyra_stream.model.tiny_model import build_tiny_model

    torch.set_num_threads(1)  # one thread per video, as in a busy worker
    proc = AutoImageProcessor.from_pretrained(build_tiny_model(out / "tiny-model"))
    print(f"image processor: {type(proc).__name__}")

    def run(frames: list[np.ndarray]) -> Any:
        return proc(images=frames, return_tensors="pt")

    return run


def stage_costs(
    uploads: dict[Upload, Path],
    fetcher: ObjectFetcher,
    process: Callable[[list[np.ndarray]], Any],
    repeats: int,
) -> dict[tuple[str, str], dict[str, float]]:
    """Median CPU-seconds by stage, per (upload, arm), one video at a time."""
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(repeats):
        for upload in uploads:
            for arm, skip in (("today", False), ("skip", True)):
                costs: dict[str, float] = {}
                t0 = time.process_time()
                obj = fetcher.fetch(f"s3://{BUCKET}/{upload.name}.mp4")
                costs["fetch"] = time.process_time() - t0
                with obj:
                    t0 = time.process_time()
                    video = sample_video(obj.body, DecodeLimits(threads=1, skip_nonref=skip))
                    sampled = time.process_time() - t0
                costs["resize"] = video.convert_cpu_s
                costs["decode"] = sampled - video.convert_cpu_s
                t0 = time.process_time()
                process(video.frames)
                costs["image_processing"] = time.process_time() - t0
                costs["frames_decoded"] = video.frames_decoded
                runs.setdefault((upload.name, arm), []).append(costs)
    return {
        key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in runs.items()
    }


def pipeline_arm(settings: Settings, names: list[str], label: str) -> tuple[float, float]:
    """(videos/s, CPU-seconds per video) of the analysis path on FakeEngine(latency 0)."""
    engine = FakeEngine().start()
    analysis = build_analysis(settings, engine)
    jobs = [
        Job(IngestEvent(event_id=f"{label}-{i}", video_id=name, uri=uri), ObjectInput(uri))
        for i, name in enumerate(names)
        for uri in [f"s3://{BUCKET}/{name}.mp4"]
    ]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        outcomes = list(analysis.run(jobs))
    finally:
        analysis.close()
        engine.close()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    failed = [o.error for o in outcomes if o.verdict is None]
    if failed:
        raise RuntimeError(f"{label}: {len(failed)} failed: {failed[:3]}")
    return len(jobs) / wall, cpu / len(jobs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stream", type=int, default=24, help="videos per pipeline arm")
    ap.add_argument("--out", type=Path, default=Path("bench-out/ceiling"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    print(f"encoding uploads (cached in {args.out / 'uploads'})", flush=True)
    uploads = write_uploads(args.out / "uploads")
    moto, url = start_s3(args.out)
    try:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for upload, path in uploads.items():
            s3.upload_file(str(path), BUCKET, f"{upload.name}.mp4")
            print(f"  {upload.name}: {path.stat().st_size / 2**20:.1f} MiB")
        base = Settings(
            engine="fake",
            s3_endpoint_url=url,
            s3_allowed_buckets=[BUCKET],
            max_object_bytes=512 << 20,
            decode_timeout_s=600,
            verdict_cache=False,  # the stream repeats the four uploads
        )
        process = image_processor(args.out)
        stages = stage_costs(uploads, ObjectFetcher(fetch_config(base)), process, args.repeats)
        cpus = available_cpus()
        names = [u.name for u in uploads] * max(1, args.stream // len(uploads))
        arms = {
            "today": base.model_copy(
                update={"decode_concurrency": 2, "decode_threads": 0, "decode_skip_nonref": False}
            ),
            "skip": base.model_copy(
                update={"decode_concurrency": 2, "decode_threads": 0, "decode_skip_nonref": True}
            ),
            "sizing": base.model_copy(
                update={"decode_concurrency": cpus, "decode_threads": 1, "decode_skip_nonref": True}
            ),
        }
        flow: dict[str, list[tuple[float, float]]] = {arm: [] for arm in arms}
        for _ in range(args.repeats):
            for arm, settings in arms.items():
                flow[arm].append(pipeline_arm(settings, names, arm))
    finally:
        moto.terminate()
        moto.wait(10)

    print(f"\nCPU-seconds per video by stage (median of {args.repeats}, one thread):")
    header = "".join(f"{s:>18}" for s in STAGES)
    print(f"{'upload':<28}{'arm':<7}{header}{'total':>9}{'frames':>8}")
    totals: dict[tuple[str, str], float] = {}
    for upload in uploads:
        for arm in ("today", "skip"):
            c = stages[(upload.name, arm)]
            totals[(upload.name, arm)] = sum(c[s] for s in STAGES)
            print(
                f"{upload.name:<28}{arm:<7}"
                + "".join(f"{c[s]:>18.3f}" for s in STAGES)
                + f"{totals[(upload.name, arm)]:>9.3f}{c['frames_decoded']:>8.0f}"
            )
    bshapes = [u.name for u in uploads if u.bframes]
    b_today = sum(totals[(n, "today")] for n in bshapes)
    b_skip = sum(totals[(n, "skip")] for n in bshapes)
    decode_today = sum(stages[(n, "today")]["decode"] for n in bshapes)
    decode_skip = sum(stages[(n, "skip")]["decode"] for n in bshapes)
    mean_skip = statistics.mean(totals[(u.name, "skip")] for u in uploads)
    mean_today = statistics.mean(totals[(u.name, "today")] for u in uploads)
    print(
        f"\nB-frame shapes: {b_today:.2f} -> {b_skip:.2f} CPU-s for one of each "
        f"(decode alone {decode_today:.2f} -> {decode_skip:.2f}, "
        f"x{decode_skip / decode_today:.2f})"
    )
    print(f"all shapes, mean CPU-s per video: today {mean_today:.2f}, skipping {mean_skip:.2f}")

    print(f"\nanalysis path on FakeEngine, {len(names)} videos per arm, {cpus} CPUs available:")
    for arm, results in flow.items():
        rate = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        print(f"  {arm:<7} {rate:6.2f} videos/s  {cpu:6.2f} CPU-s per video (no image processing)")
    rate = {arm: statistics.median(r[0] for r in rs) for arm, rs in flow.items()}
    print(
        f"  sizing vs today: x{rate['sizing'] / rate['today']:.2f} videos/s; "
        f"skip vs today: x{rate['skip'] / rate['today']:.2f}"
    )
    per_core = 1.0 / mean_skip
    print(
        f"\nper core: {per_core:.2f} videos/s with skipping (fetch, decode, resize and image "
        f"processing); one GPU at G videos/s needs G / {per_core:.2f} CPUs in front of it"
    )
    print(f"ratio skip_vs_today={b_skip / b_today:.2f} videos_per_core_s={per_core:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
