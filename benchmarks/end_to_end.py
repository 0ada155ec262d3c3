"""End-to-end worker throughput against the engine alone, and memory under a large backlog.

Everything real on loopback: Tansu (Kafka protocol), moto (S3), vLLM on the CPU with the
tiny model.
1. Throughput, one engine shared by both arms, clips of their own per arm (no cache hits):
   engine-only: frames decoded beforehand, then `VerdictEngine.run_many` over them;
   end-to-end:  ingest events -> consumer -> S3 fetch -> decode -> engine -> verdict topic,
                timed from the first event produced to the last verdict acknowledged.
2. Memory: `skyra-stream worker` as a subprocess on a backlog of `--backlog` events, and
   again on `--small` events, each for `--rss-seconds` after it is ready; peak RSS of the
   worker's process tree is sampled every 0.2 s.
Last line, for scripts: `ratio e2e_vs_engine=<x.xx> rss_backlog_vs_small=<x.xx>`.

    python -m benchmarks.end_to_end [--videos 16] [--backlog 5000] [--small 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import psutil

from skyra_stream.consumers.ingest_loop import IngestLoop
from skyra_stream.devstack.broker import TansuBroker
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.media.decode import sample_video
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent
from skyra_stream.metrics import Metrics
from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import EngineRequest, VerdictEngine
from skyra_stream.pipeline import Pipeline
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.producers.outcomes import OutcomePublisher
from skyra_stream.runtime.configs import engine_config, kafka_config, pipeline_config
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings

BUCKET = "bench-uploads"
ENGINE = {
    "max_tokens": 32,
    "kv_cache_bytes": 512 << 20,
    "mm_max_pixels": 160 * 28 * 28,
    "max_num_seqs": 16,
    "max_in_flight": 16,
    "pipeline_max_messages": 24,
    "decode_concurrency": 2,
    "log_format": "json",
}


def published(metrics: Metrics) -> float:
    return sum(
        metrics.registry.get_sample_value("skyra_verdicts_total", {"label": label}) or 0
        for label in ("fake", "real", "none")
    )


def throughput(
    settings: Settings, broker: TansuBroker, s3_url: str, clips: dict[str, Path], n: int
) -> tuple[float, float]:
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    engine_paths = [clips[f"engine-{i}"] for i in range(n)]
    for i in range(n):
        s3.upload_file(str(clips[f"e2e-{i}"]), BUCKET, f"e2e-{i}.mp4")
    engine = VerdictEngine(engine_config(settings)).start()
    try:
        warm = [
            EngineRequest(
                f"warm{i}",
                sample_video(str(clips[f"warm-{i}"])).frames,
                sample_video(str(clips[f"warm-{i}"])).timestamps_s,
            )
            for i in range(2)
        ]
        list(engine.run_many(warm))
        requests = []
        for i, path in enumerate(engine_paths):
            video = sample_video(str(path))
            requests.append(EngineRequest(f"engine-{i}", video.frames, video.timestamps_s))
        start = time.perf_counter()
        results = [r for _, r in engine.run_many(requests)]
        engine_s = time.perf_counter() - start
        assert not [r for r in results if isinstance(r, BaseException)], results

        metrics = Metrics()
        publisher = OutcomePublisher(kafka_config(settings))
        pipeline = Pipeline(
            pipeline_config(settings), build_analysis(settings, engine, metrics=metrics), publisher
        )
        worker = IngestLoop(
            kafka_config(settings), pipeline, flush=publisher.flush, metrics=metrics
        )
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while not worker.assignment and time.monotonic() < deadline:
            time.sleep(0.2)
        producer = IngestProducer(kafka_config(settings))
        start = time.perf_counter()
        for i in range(n):
            producer.send(
                IngestEvent(event_id=f"e2e-{i}", video_id=f"v{i}", uri=f"s3://{BUCKET}/e2e-{i}.mp4")
            )
        producer.flush()
        while published(metrics) < n:
            if time.perf_counter() - start > 1800:
                raise RuntimeError("end-to-end arm did not finish")
            time.sleep(0.05)
        e2e_s = time.perf_counter() - start
        worker.stop()
        thread.join(60)
        pipeline.close()
        publisher.close()
        producer.close()
        return engine_s, e2e_s
    finally:
        engine.close()


def _tree_rss(main: psutil.Process) -> list[int]:
    """RSS of the process and its live descendants; vLLM starts short-lived helpers, and
    one that exits between the listing and the reading is simply not counted."""
    rss = []
    for proc in [main, *main.children(recursive=True)]:
        try:
            rss.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            rss.append(0)
    return rss


def peak_rss(
    settings: Settings,
    broker: TansuBroker,
    s3_url: str,
    *,
    model: Path,
    events: int,
    seconds: float,
    tag: str,
) -> tuple[int, int]:
    """Peak RSS (bytes) of the worker's main process and of its whole process tree."""
    topic = f"rss-{tag}"
    broker.create_topics([topic, f"{topic}-out", f"{topic}-dlq"], 3)
    producer = IngestProducer(kafka_config(settings.model_copy(update={"ingest_topic": topic})))
    for i in range(events):
        producer.send(
            IngestEvent(
                event_id=f"{tag}-{i}", video_id=f"v{i}", uri=f"s3://{BUCKET}/e2e-{i % 8}.mp4"
            )
        )
    producer.flush()
    producer.close()
    worker = ChildProcess(
        "worker",
        Path(tempfile.gettempdir()) / f"skyra-bench-worker-{tag}.log",
        {
            "kafka_bootstrap_servers": broker.bootstrap,
            "group_id": f"g-{tag}",
            "ingest_topic": topic,
            "verdict_topic": f"{topic}-out",
            "dead_letter_topic": f"{topic}-dlq",
            "s3_endpoint_url": s3_url,
            "s3_allowed_buckets": BUCKET,
            "model_path": model,
            **ENGINE,
        },
    )
    main = psutil.Process(worker.pid)
    peak_main = peak_tree = 0
    ready_at: float | None = None
    try:
        while True:
            if worker.proc.poll() is not None:
                break
            rss = _tree_rss(main)
            if ready_at is None:
                if worker.get("/readyz", timeout_s=1)[0] == 200:
                    ready_at = time.monotonic()
            else:
                peak_main = max(peak_main, rss[0])
                peak_tree = max(peak_tree, sum(rss))
                if time.monotonic() - ready_at > seconds:
                    break
            time.sleep(0.2)
    finally:
        worker.stop(180)
    return peak_main, peak_tree


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument("--small", type=int, default=50)
    ap.add_argument("--rss-seconds", type=float, default=90.0)
    args = ap.parse_args()
    # Imported here, not at the top: vLLM's workers re-import this module (spawn), and its
    # CPU kernel rebinding walks every loaded module, tripping over Flask's context proxies
    # that moto brings in ("Working outside of application context").
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = build_tiny_model(tmp / "tiny")
        clips = {}
        for arm, count in (("engine", args.videos), ("e2e", args.videos), ("warm", 2)):
            for i in range(count):
                seed = {"engine": 1000, "e2e": 2000, "warm": 3000}[arm] + i
                clips[f"{arm}-{i}"] = write_video(
                    tmp / f"{arm}-{i}.mp4", VideoSpec(frames=60, seed=seed)
                )
        broker = TansuBroker(tmp / "tansu.log")
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        s3_url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1").create_bucket(
            Bucket=BUCKET
        )
        try:
            broker.create_topics(["bench-in", "bench-out", "bench-dlq"], 3)
            settings = Settings(
                model_path=model,
                kafka_bootstrap_servers=[broker.bootstrap],
                group_id="bench",
                ingest_topic="bench-in",
                verdict_topic="bench-out",
                dead_letter_topic="bench-dlq",
                s3_endpoint_url=s3_url,
                s3_allowed_buckets=[BUCKET],
                http_port=0,
                **ENGINE,
            )
            engine_s, e2e_s = throughput(settings, broker, s3_url, clips, args.videos)
            big = peak_rss(
                settings,
                broker,
                s3_url,
                model=model,
                events=args.backlog,
                seconds=args.rss_seconds,
                tag="big",
            )
            small = peak_rss(
                settings,
                broker,
                s3_url,
                model=model,
                events=args.small,
                seconds=args.rss_seconds,
                tag="small",
            )
        finally:
            broker.stop()
            moto.stop()
    n = args.videos
    print(f"throughput, {n} videos per arm, tiny model, 32 tokens each")
    print(f"  engine only   {engine_s:7.2f} s  {n / engine_s:6.3f} videos/s")
    print(f"  end to end    {e2e_s:7.2f} s  {n / e2e_s:6.3f} videos/s")
    mib = 1 << 20
    print(
        f"peak RSS over {args.rss_seconds:.0f} s of work (worker process / with engine processes)"
    )
    print(f"  backlog {args.backlog:>5}  {big[0] / mib:8.1f} MiB / {big[1] / mib:8.1f} MiB")
    print(f"  backlog {args.small:>5}  {small[0] / mib:8.1f} MiB / {small[1] / mib:8.1f} MiB")
    print(
        f"ratio e2e_vs_engine={engine_s / e2e_s:.2f} rss_backlog_vs_small={big[1] / small[1]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
