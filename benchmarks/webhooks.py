"""Webhook delivery under a slow receiver: 1,000 outcomes on the verdict topic (Tansu), each
with a callback, a tenth of them to a receiver that takes `--slow-s` to answer, the rest to
one that answers at once, delivered by the webhook loop (`skyra-stream webhooks`' code, in
this process) over its thread pool.

The outcomes are all on the topic before the loop starts (a backlog, the hard case). What
it shows: nothing is lost (every outcome's id reached its receiver with a 2xx), duplicates by
webhook id (0 without restarts), the delivery rate, and whether the slow receiver held back
the fast one: `slow_blocked_fast=yes` when the fast receiver ever went `--slow-s` without a
delivery while fast outcomes were still waiting (a pool or a partition stuck behind slow
answers would show exactly that gap).

Last line:
`webhooks delivered=<n> lost=0 duplicates_by_id=<n> per_s=<x> slow_blocked_fast=<yes|no>`.

    python -m benchmarks.webhooks [--outcomes 1000] [--slow-share 0.1] [--slow-s 2]
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import itertools
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer

from skyra_stream.consumers.webhook_loop import WebhookLoop
from skyra_stream.delivery.webhooks import TenantHooks, WebhookConfig, WebhookSender
from skyra_stream.devstack.broker import TansuBroker
from skyra_stream.devstack.receiver import Receiver
from skyra_stream.messages import (
    Callback,
    ModelInfo,
    Source,
    Timings,
    Verdict,
    WorkerInfo,
)
from skyra_stream.metrics import Metrics
from skyra_stream.producers.kafka_config import KafkaConfig

SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


def verdict(event_id: str, url: str) -> Verdict:
    return Verdict(
        event_id=event_id,
        video_id=event_id,
        source=Source(uri=f"s3://uploads/{event_id}.mp4"),
        status="ok",
        label="real",
        fake_probability=0.1,
        artifacts=[],
        cleared_regions=[],
        explanation="nothing out of place",
        raw_response="<think>nothing</think><answer>Real</answer>",
        video=None,
        model=ModelInfo(name="bench"),
        timings_ms=Timings(),
        worker=WorkerInfo(id="bench", version="0"),
        callback=Callback(url=url, tenant="bench"),
        created_at=datetime.now(UTC),
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--outcomes", type=int, default=1000)
    ap.add_argument("--slow-share", type=float, default=0.1)
    ap.add_argument("--slow-s", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="skyra-bench-webhooks-") as tmp_name:
        tmp = Path(tmp_name)
        broker = TansuBroker(tmp / "tansu.log")
        fast, slow = Receiver(), Receiver()
        try:
            topics = {"verdict_topic": "b.verdicts", "dead_letter_topic": "b.dead"}
            broker.create_topics([*topics.values(), "b.webhook-dead"], 4)
            config = KafkaConfig(
                kafka_bootstrap_servers=(broker.bootstrap,),
                kafka_commit_interval_s=0.2,
                **topics,
            )
            every = max(1, round(1 / args.slow_share)) if args.slow_share else 0
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            expected: dict[str, str] = {}
            for i in range(args.outcomes):
                to_slow = bool(every) and i % every == 0
                url = slow.url(f"/slow/{args.slow_s}") if to_slow else fast.url("/ok")
                event_id = f"job-{i:05d}"
                expected[event_id] = "slow" if to_slow else "fast"
                record = verdict(event_id, url).model_dump_json().encode()
                producer.send(topics["verdict_topic"], value=record, key=event_id.encode())
            producer.flush()
            producer.close()
            metrics = Metrics()
            sender = WebhookSender(
                WebhookConfig(
                    tenants={"bench": TenantHooks(secret=SECRET, hosts=["127.0.0.1"])},
                    allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
                    http_hosts=("127.0.0.1",),
                    read_timeout_s=args.slow_s + 5,
                )
            )
            delivered: set[str] = set()
            lock = threading.Lock()

            def done(event_id: str) -> None:
                with lock:
                    delivered.add(event_id)

            loop = WebhookLoop(
                config,
                sender,
                dead_letter_topic="b.webhook-dead",
                group_id="bench-webhooks",
                concurrency=args.concurrency,
                metrics=metrics,
                on_delivered=done,
            )
            thread = threading.Thread(target=loop.run, daemon=True)
            started = time.monotonic()
            thread.start()
            deadline = started + 600
            while len(delivered) < args.outcomes and time.monotonic() < deadline:
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            loop.stop()
            thread.join(60)
        finally:
            fast.close()
            slow.close()
            broker.stop()

    requests = fast.received + slow.received
    ids = [r.headers.get("webhook-id", "") for r in requests]
    unique = {i.removeprefix("msg_") for i in ids}
    lost = len(set(expected) - delivered)
    duplicates = len(ids) - len(unique)
    arrivals = sorted(r.at for r in fast.received)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    longest = max(gaps, default=0.0)
    blocked = "yes" if longest >= args.slow_s else "no"
    print(
        f"fast receiver: {len(fast.received)} requests, longest gap between deliveries "
        f"{longest:.3f} s; slow receiver: {len(slow.received)} requests answered after "
        f"{args.slow_s:g} s each"
    )
    print(f"elapsed {elapsed:.1f} s for {args.outcomes} outcomes, concurrency {args.concurrency}")
    print(
        f"webhooks delivered={len(delivered)} lost={lost} duplicates_by_id={duplicates} "
        f"per_s={len(delivered) / elapsed:.1f} slow_blocked_fast={blocked}"
    )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
