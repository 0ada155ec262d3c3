"""The held-out case of docs/operations.md ("Bounded work per video"): a worker on the tiny
model WITHOUT guided decoding, where every generation runs on (a random model never writes
`</answer>`), fed 16 uploads at once. Before the deadline existed it answered none of them in
400 s (each generation ran to 8,192 tokens, about 85 s of engine time per upload on 2 cores).
With `SKYRA_ENGINE_DEADLINE_S` every event must end as a verdict (status `unparseable`,
reason `deadline` or `token_cap`) within the deadline plus its queueing.

The real stack: Tansu, moto, `skyra-stream worker` as a child process configured only by
SKYRA_* variables, the tiny model on vLLM's CPU build, and the reference's own max_tokens
(8192), so that the deadline, not the cap, is what ends each answer.

Last line: `deadline events=16 answered=<n> cut_deadline=<n> cut_token_cap=<n>
seconds=<s> deadline_s=<d>` (seconds from the first event produced to the last outcome read).

    python -m benchmarks.deadline [--events 16] [--deadline-s 60] [--out bench-deadline]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from campaigns.stack import BUCKET, TOPICS, Collector, loopback_stack, wait_until
from skyra_stream.devstack.broker import read_all
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=16)
    ap.add_argument("--deadline-s", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path("bench-deadline"))
    args = ap.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    shutil.rmtree(args.out, ignore_errors=True)
    with loopback_stack(args.out, partitions=1) as stack:
        stack.s3.create_bucket(Bucket=BUCKET)
        for i in range(args.events):
            path = write_video(args.out / "videos" / f"u{i}.mp4", VideoSpec(frames=30, seed=i))
            stack.s3.upload_file(str(path), BUCKET, f"u{i}.mp4")
        worker = ChildProcess(
            "worker",
            args.out / "logs" / "worker.log",
            stack.worker_settings(
                guided="off",
                max_tokens=8192,
                max_model_len=None,
                engine_deadline_s=args.deadline_s,
                max_num_seqs=args.events,
                max_in_flight=args.events,
                pipeline_max_messages=args.events,
                kv_cache_bytes=1 << 30,
            ),
        )
        collector = Collector(stack.broker.bootstrap)
        try:
            worker.wait_ready(400)
            producer = IngestProducer(
                kafka_config(
                    Settings(
                        kafka_bootstrap_servers=[stack.broker.bootstrap],
                        ingest_topic=TOPICS["ingest"],
                    )
                )
            )
            started = time.monotonic()
            for i in range(args.events):
                doc = {"event_id": f"h{i}", "video_id": f"h{i}", "uri": f"s3://{BUCKET}/u{i}.mp4"}
                producer.send_raw(json.dumps(doc).encode(), key=f"h{i}".encode())
            producer.flush(timeout_s=30)
            producer.close()
            budget = 2 * args.deadline_s * max(1, args.events // 16) + 300
            wait_until(lambda: len(collector.ids) >= args.events, budget, step_s=0.5)
            seconds = time.monotonic() - started
        finally:
            collector.close()
            worker.stop(timeout_s=120)
        verdicts = [
            json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, TOPICS["verdicts"])
        ]
        dead = [json.loads(v) for _, v, _ in read_all(stack.broker.bootstrap, TOPICS["dead"])]
    reasons = Counter(v.get("unparseable_reason") for v in verdicts)
    answered = len({v["event_id"] for v in verdicts} | {d["event_id"] for d in dead})
    print(f"verdicts {len(verdicts)}, dead letters {len(dead)}, reasons {dict(reasons)}")
    print(
        f"deadline events={args.events} answered={answered} cut_deadline={reasons['deadline']} "
        f"cut_token_cap={reasons['token_cap']} seconds={seconds:.0f} deadline_s={args.deadline_s:g}"
    )


if __name__ == "__main__":
    main()
