"""Soak: the worker at a steady rate for a long time, faults off, watched for anything that grows.

    python -m campaigns.soak [--minutes 20] [--rate 0.5] [--out soak-out]

Against the same loopback stack as the chaos campaign. Events are produced at `--rate` per
second with `submitted_at` set, so latency is measured the way a platform sees it: from the
event's time to the verdict's (`created_at`, set when the verdict is built, just before it
is published). Every 10 s the worker's RSS (its own and with vLLM's engine processes), open
file descriptors and threads are sampled. At the end: throughput, p50/p95/p99 latency, peak
and final RSS, fds and threads at start and end, and the RSS trend over the second half
projected to a week (the worker's own, and with its engine processes). Every event names a
video of its own, as uploads do, so caches keyed by content fill up during the soak instead
of serving every event after the first few. Exit 1 if anything was lost, either trend would
add more than `--max-week-growth-mib` in a week, or fds/threads grew by more than a few.
Last line: `soak minutes=.. events=.. verdicts=.. throughput=../s p50=..s p95=..s p99=..s
rss_peak_mib=.. rss_end_mib=.. week_growth_mib=.. fds=..->.. threads=..->..`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

from campaigns.stack import BUCKET, TOPICS, Collector, Supervisor, loopback_stack
from skyra_stream.devstack.broker import read_all
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.settings import Settings

MiB = 1 << 20


@dataclass
class Sample:
    t: float
    rss_main: int
    rss_tree: int
    fds: int
    threads: int


@dataclass
class Watch:
    pid: int
    samples: list[Sample] = field(default_factory=list)

    def take(self, t0: float) -> None:
        main = psutil.Process(self.pid)
        tree = [main, *main.children(recursive=True)]
        rss = []
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                rss.append(p.memory_info().rss)
        self.samples.append(
            Sample(time.monotonic() - t0, rss[0], sum(rss), main.num_fds(), main.num_threads())
        )


def produce(
    settings: Settings, keys: list[str], rate: float, seconds: float
) -> dict[str, datetime]:
    """Events at a steady rate; returns each event id with its `submitted_at`."""
    producer = IngestProducer(kafka_config(settings))
    submitted: dict[str, datetime] = {}
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        event = IngestEvent(
            event_id=f"soak-{i}",
            video_id=f"video-{i}",
            uri=f"s3://{BUCKET}/{keys[i % len(keys)]}",
            submitted_at=datetime.now(UTC),
        )
        producer.send(event)
        assert event.submitted_at is not None
        submitted[event.event_id] = event.submitted_at
        i += 1
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
    producer.flush()
    producer.close()
    return submitted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=0.5, help="events per second")
    ap.add_argument(
        "--clips",
        type=int,
        default=0,
        help="distinct videos in rotation; 0 (the default): a new video for every event, as "
        "real uploads are, so vLLM's processed-input cache fills instead of hitting",
    )
    ap.add_argument("--out", type=Path, default=Path("soak-out"))
    ap.add_argument("--max-week-growth-mib", type=float, default=1024.0)
    args = ap.parse_args(argv)
    for key, value in (("AWS_ACCESS_KEY_ID", "soak"), ("AWS_SECRET_ACCESS_KEY", "soak")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    clips = args.clips or math.ceil(args.rate * args.minutes * 60) + 1
    print(f"soak: {args.minutes:g} min at {args.rate:g} events/s, {clips} clips", flush=True)
    with loopback_stack(args.out) as stack:
        stack.s3.create_bucket(Bucket=BUCKET)
        keys = []
        for i in range(clips):
            path = write_video(args.out / "videos" / f"c{i}.mp4", VideoSpec(frames=30, seed=i))
            stack.s3.upload_file(str(path), BUCKET, f"soak/c{i}.mp4")
            keys.append(f"soak/c{i}.mp4")
        supervisor = Supervisor(stack)
        collector = Collector(stack.broker.bootstrap)
        try:
            supervisor.ready()
            watch = Watch(supervisor.worker.pid)
            t0 = time.monotonic()
            watch.take(t0)
            stop = threading.Event()

            def sampler() -> None:
                while not stop.wait(10):
                    watch.take(t0)
                    s = watch.samples[-1]
                    print(
                        f"[{s.t / 60:5.1f} min] rss {s.rss_main / MiB:.0f} MiB "
                        f"(tree {s.rss_tree / MiB:.0f}) fds {s.fds} threads {s.threads} "
                        f"answered {len(collector.ids)}",
                        flush=True,
                    )

            thread = threading.Thread(target=sampler, daemon=True)
            thread.start()
            settings = Settings(
                kafka_bootstrap_servers=[stack.broker.bootstrap], ingest_topic=TOPICS["ingest"]
            )
            submitted = produce(settings, keys, args.rate, args.minutes * 60)
            deadline = time.monotonic() + 600
            while not set(submitted) <= collector.ids and time.monotonic() < deadline:
                time.sleep(1)
            drained_s = time.monotonic() - t0
            stop.set()
            thread.join()
            watch.take(t0)
            if supervisor.worker.proc.poll() is not None or supervisor.unplanned:
                print("the worker exited during the soak", flush=True)
                return 1
        finally:
            collector.close()
            supervisor.worker.stop(120)
        verdicts = [
            json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, TOPICS["verdicts"])
        ]
        dead = [json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, TOPICS["dead"])]
    return report(args, submitted, verdicts, dead, watch=watch, drained_s=drained_s)


def report(
    args: argparse.Namespace,
    submitted: dict[str, datetime],
    verdicts: list[dict[str, object]],
    dead: list[dict[str, object]],
    *,
    watch: Watch,
    drained_s: float,
) -> int:
    latencies: dict[str, float] = {}
    for v in verdicts:
        eid = str(v["event_id"])
        if eid in submitted and eid not in latencies:
            created = datetime.fromisoformat(str(v["created_at"]))
            latencies[eid] = (created - submitted[eid]).total_seconds()
    dead_ids = {str(d["event_id"]) for d in dead}
    missing = len(set(submitted) - set(latencies) - dead_ids)
    lat = np.array(sorted(latencies.values()))
    p50, p95, p99 = (float(np.percentile(lat, q)) for q in (50, 95, 99))
    first, last = watch.samples[0], watch.samples[-1]
    # Pools and connections open lazily on the first events: growth is judged from the end
    # of a warm-up (2 minutes, or a quarter of a short run), the cold start is printed too.
    warm = next(s for s in watch.samples if s.t >= min(120.0, last.t / 4))
    peak = max(s.rss_main for s in watch.samples)
    peak_tree = max(s.rss_tree for s in watch.samples)
    half = [s for s in watch.samples if s.t >= last.t / 2]
    slope = float(np.polyfit([s.t for s in half], [s.rss_main for s in half], 1)[0])  # B/s
    week = slope * 7 * 24 * 3600 / MiB
    tree_slope = float(np.polyfit([s.t for s in half], [s.rss_tree for s in half], 1)[0])
    tree_week = tree_slope * 7 * 24 * 3600 / MiB
    minutes = args.minutes
    throughput = len(latencies) / drained_s
    print(
        f"events {len(submitted)}, verdicts {len(latencies)}, dead letters {len(dead)}, "
        f"missing {missing}"
    )
    print(f"throughput {throughput:.3f} verdicts/s over {drained_s:.0f} s (offered {args.rate}/s)")
    print(
        f"latency event->verdict: p50 {p50:.2f} s, p95 {p95:.2f} s, p99 {p99:.2f} s, "
        f"max {lat[-1]:.2f} s"
    )
    print(
        f"worker RSS: start {first.rss_main / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, "
        f"end {last.rss_main / MiB:.0f} MiB; with engine processes peak "
        f"{peak_tree / MiB:.0f} MiB, end {last.rss_tree / MiB:.0f} MiB"
    )
    print(
        f"RSS trend over the second half: {slope * 3600 / MiB:+.1f} MiB/h "
        f"({week:+.0f} MiB over a week); with engine processes {tree_slope * 3600 / MiB:+.1f} "
        f"MiB/h ({tree_week:+.0f} MiB over a week)"
    )
    print(
        f"open fds {first.fds} at start, {warm.fds} after warm-up, {last.fds} at end; "
        f"threads {first.threads}, {warm.threads}, {last.threads}"
    )
    ok = (
        missing == 0
        and week < args.max_week_growth_mib
        and tree_week < args.max_week_growth_mib
        and last.fds <= warm.fds + 8
        and last.threads <= warm.threads + 8
    )
    print(
        f"soak minutes={minutes:g} events={len(submitted)} verdicts={len(latencies)} "
        f"throughput={throughput:.3f}/s p50={p50:.2f}s p95={p95:.2f}s p99={p99:.2f}s "
        f"rss_peak_mib={peak / MiB:.0f} rss_end_mib={last.rss_main / MiB:.0f} "
        f"week_growth_mib={week:.0f} fds={warm.fds}->{last.fds} "
        f"threads={warm.threads}->{last.threads}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
