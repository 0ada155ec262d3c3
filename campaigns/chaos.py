"""Fault and bad-input campaign: a stream of valid and hostile events, faults at random, and a
ledger that proves nothing was lost.

    python -m campaigns.chaos [--events 520] [--seed 1] [--out chaos-out]
    CHAOS_SHORT=1 python -m campaigns.chaos      # the short form
    CHAOS_SHORT=1 python -m campaigns.chaos --engine fake   # the form CI runs (see below)

Against the real stack on loopback (Tansu, moto S3 behind a fault-injecting proxy, the worker
with the tiny model on vLLM's CPU build), while events are produced:
- SIGKILL of the whole worker (engine included) and a restart, several times;
- SIGTERM while the worker's in-flight window is full (it must drain and exit 0);
- the engine process alone killed (the worker must exit 1 without committing, then restart);
- the broker frozen (SIGSTOP/SIGCONT) for 5-30 s;
- S3 answering 503, and S3 stalling past the read timeout.
Then the verdict and dead-letter topics are read from the start and balanced against the
plan (`campaigns.ledger`).

`--engine fake` runs the worker on `skyra_stream.model.fake_engine.FakeEngine` (SKYRA_ENGINE=fake, a
fixed answer latency) and leaves out the engine kill, which needs vLLM's processes: every
Kafka, S3 and process fault in a few minutes less, which is what lets CI afford it; the
real engine's death is tested by `make test` and by this campaign without the flag.

The last line is the ledger; the exit status is 1 on any loss, wrong code, fetch outside the
allowlist, unplanned worker exit or uncommitted offset.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from campaigns.corpus import Planned, build_objects, plan
from campaigns.ledger import Ledger
from campaigns.stack import (
    BUCKET,
    GROUP,
    PRIVATE_BUCKET,
    TOPICS,
    WORKER_SETTINGS,
    Collector,
    Stack,
    Supervisor,
    balance_outputs,
    loopback_stack,
    wait_until,
)
from skyra_stream.devstack.faulty_proxy import Fault
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.settings import Settings

FAULT_KINDS = (
    "sigkill",
    "sigterm_full_pipeline",
    "engine_kill",
    "broker_freeze",
    "s3_503",
    "s3_stall",
)


KILLS = frozenset({"sigkill", "engine_kill"})
# With --engine fake: about what the tiny model takes per video on 2 cores, so that work is
# in flight when a fault comes, as it is with vLLM.
FAKE_LATENCY_S = 0.5
KILL_AT_IN_FLIGHT = 3


def schedule(rng: random.Random, short: bool, engine: str = "vllm") -> list[str]:
    """Each kind at least once; the full campaign repeats the kills and the outages."""
    kinds = [k for k in FAULT_KINDS if engine == "vllm" or k != "engine_kill"]
    if not short:
        kinds += ["sigkill", "sigkill", "broker_freeze", "s3_503", "s3_503", "s3_stall"]
    kinds.remove("sigterm_full_pipeline")
    rng.shuffle(kinds)
    # SIGTERM needs a full in-flight window: first, while the opening burst is a backlog.
    return ["sigterm_full_pipeline", *kinds]


class Campaign:
    def __init__(self, stack: Stack, items: list[Planned], args: argparse.Namespace) -> None:
        self.stack = stack
        self.items = items
        self.args = args
        self.rng = random.Random(args.seed)
        self.faults: Counter[str] = Counter()
        self.problems: list[str] = []
        self.produced = threading.Event()
        self.schedule = schedule(self.rng, args.short, args.engine)
        self.slices = len(self.schedule)
        self.release = threading.Semaphore(0)  # one slice of the stream per fault
        fake = {"engine": "fake", "fake_engine_latency_s": FAKE_LATENCY_S}
        self.supervisor = Supervisor(stack, **(fake if args.engine == "fake" else {}))
        self.collector = Collector(stack.broker.bootstrap)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    # -- the stream -------------------------------------------------------------------------

    def produce(self) -> None:
        """An opening backlog, then one slice of the stream released before each fault, so
        that every fault meets work in flight (a slice before a kill arrives at once, the
        others at --rate); each message's position is learned."""
        settings = Settings(
            kafka_bootstrap_servers=[self.stack.broker.bootstrap], ingest_topic=TOPICS["ingest"]
        )
        producer = IngestProducer(kafka_config(settings), retries=1000, request_timeout_ms=60_000)
        burst = 3 * int(WORKER_SETTINGS["pipeline_max_messages"])  # type: ignore[call-overload]
        rest = self.items[burst:]
        slices = [self.items[:burst]] + [rest[i :: self.slices] for i in range(self.slices)]
        try:
            for n, chunk in enumerate(slices):
                if n > 0:
                    self.release.acquire()
                for item in chunk:
                    future = producer.send_raw(item.raw, key=item.key)
                    if item.by_position:
                        meta = future.get(timeout=120)
                        item.ids = [f"kafka:{meta.topic}:{meta.partition}:{meta.offset}"]
                    if n > 0 and not self.kill_follows(n):
                        time.sleep(1.0 / self.args.rate)
            producer.flush(timeout_s=120)
        finally:
            producer.close()
            self.produced.set()
            self.log(f"produced {len(self.items)} messages")

    # -- faults -----------------------------------------------------------------------------

    def inject(self, kind: str) -> None:
        self.log(f"fault: {kind}")
        sup = self.supervisor
        if kind in KILLS:
            self.log(f"  {self.in_flight():.0f} messages in flight")
        if kind == "sigkill":
            sup.worker.signal(signal.SIGKILL)
            sup.ended("sigkill", 60)
            sup.restart()
        elif kind == "sigterm_full_pipeline":
            window = int(WORKER_SETTINGS["pipeline_max_messages"])  # type: ignore[call-overload]
            full = wait_until(
                lambda: (sup.worker.metric("skyra_in_flight_messages") or 0) >= window, 90
            )
            self.log(f"  in-flight window {'full' if full else 'NOT full'} at SIGTERM")
            sup.worker.terminate()
            code = sup.ended("sigterm", 180)
            if code != 0:
                self.problems.append(f"SIGTERM with a full window exited {code}, not 0")
            sup.restart()
        elif kind == "engine_kill":
            children = psutil.Process(sup.worker.pid).children(recursive=True)
            for child in children:
                child.kill()
            code = sup.ended("engine_kill", 180)
            if code != 1:
                self.problems.append(f"a killed engine made the worker exit {code}, not 1")
            sup.restart()
        elif kind == "broker_freeze":
            low, high = (5, 10) if self.args.short else (5, 30)
            seconds = self.rng.uniform(low, high)
            self.log(f"  broker frozen for {seconds:.0f} s")
            self.stack.broker.proc.send_signal(signal.SIGSTOP)
            try:
                time.sleep(seconds)
            finally:
                self.stack.broker.proc.send_signal(signal.SIGCONT)
        elif kind in ("s3_503", "s3_stall"):
            # One burst at a time, shorter than the retry budget, so no fetch can exhaust it.
            if not wait_until(lambda: self.stack.proxy.pending == 0, 60):
                self.stack.proxy.drop_faults()
            if kind == "s3_503":
                self.stack.proxy.inject(3, Fault(status=503, code="SlowDown"))
            else:
                stall = float(WORKER_SETTINGS["s3_read_timeout_s"]) + 1.5  # type: ignore[arg-type]
                self.stack.proxy.inject(2, Fault(status=0, delay_s=stall))
        self.faults[kind] += 1

    def kill_follows(self, slice_no: int) -> bool:
        """Slice n (n >= 1) is released just before fault n of the schedule."""
        return slice_no < len(self.schedule) and self.schedule[slice_no] in KILLS

    def work_to_interrupt(self, kind: str) -> bool:
        """A kill or a SIGTERM only tests recovery or the drain when it interrupts work, so
        those go as soon as the work is there rather than when a burst has finished."""
        if kind == "sigterm_full_pipeline":
            return self.in_flight() >= int(WORKER_SETTINGS["pipeline_max_messages"])  # type: ignore[call-overload]
        return kind in KILLS and self.in_flight() >= KILL_AT_IN_FLIGHT

    def in_flight(self) -> float:
        return self.supervisor.worker.metric("skyra_in_flight_messages") or 0

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Ledger:
        started = time.monotonic()
        self.supervisor.ready()
        self.log(f"worker ready after {time.monotonic() - started:.0f} s")
        producer = threading.Thread(target=self.produce, name="producer", daemon=True)
        producer.start()
        low, high = (6, 12) if self.args.short else (10, 30)
        for n, kind in enumerate(self.schedule):
            if n > 0:  # the opening backlog is the first fault's work
                self.release.release()
            deadline = time.monotonic() + self.rng.uniform(low, high)
            while time.monotonic() < deadline:
                self.supervisor.check_alive()
                if self.work_to_interrupt(kind):
                    break
                time.sleep(0.25)
            self.inject(kind)
            self.progress()
        self.release.release()  # the last slice meets no fault: the recovered worker's work
        producer.join()
        expected = {eid for item in self.items for eid in item.ids}
        deadline = time.monotonic() + self.args.drain_timeout
        while not expected <= self.collector.ids and time.monotonic() < deadline:
            self.supervisor.check_alive()
            time.sleep(2)
            if int(time.monotonic() - started) % 30 < 2:
                self.progress()
        self.progress()
        self.log("all accounted for; SIGTERM to the last worker")
        self.supervisor.worker.terminate()
        if self.supervisor.ended("final sigterm", 180) != 0:
            self.problems.append("the final SIGTERM did not exit 0")
        self.collector.close()
        ledger = self.balance()
        ledger.faults = self.faults
        self.log(f"campaign took {time.monotonic() - started:.0f} s")
        return ledger

    def progress(self) -> None:
        expected = {eid for item in self.items for eid in item.ids}
        done = len(expected & self.collector.ids)
        self.log(f"  accounted {done}/{len(expected)} event ids ({self.collector.records} records)")

    def balance(self) -> Ledger:
        ledger, _ = balance_outputs(self.stack, self.items, GROUP)
        ledger.problems += self.problems + self.supervisor.unplanned
        exits = Counter(f"{why}->{code}" for why, code in self.supervisor.exits)
        self.log("worker exits: " + ", ".join(f"{k} x{v}" for k, v in sorted(exits.items())))
        self.log(f"worker starts: {self.supervisor.started}")
        dump = {
            "line": ledger.line(),
            "dead_letters": dict(ledger.dead_letters),
            "kinds": dict(ledger.kinds),
            "faults": dict(self.faults),
            "redeliveries": ledger.redeliveries,
            "worker_exits": dict(exits),
            "problems": ledger.problems,
            "missing": ledger.missing,
            "wrong": ledger.wrong,
        }
        (self.stack.out / "ledger.json").write_text(json.dumps(dump, indent=2))
        return ledger


def main(argv: list[str] | None = None) -> int:
    short = os.environ.get("CHAOS_SHORT", "") not in ("", "0")
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=90 if short else 520)
    ap.add_argument("--rate", type=float, default=2.0, help="messages/s after the backlog")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    ap.add_argument("--out", type=Path, default=Path("chaos-out"))
    ap.add_argument("--drain-timeout", type=float, default=300.0 if short else 900.0)
    ap.add_argument("--short", action="store_true", default=short)
    ap.add_argument(
        "--engine",
        choices=["vllm", "fake"],
        default="vllm",
        help="fake: the worker on FakeEngine, without the engine-kill fault",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "chaos")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "chaos")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    mode = "short" if args.short else "full"
    print(
        f"chaos campaign ({mode}, engine {args.engine}): {args.events} messages, "
        f"seed {args.seed}, out {args.out}"
    )
    with loopback_stack(args.out) as stack:
        cap = int(WORKER_SETTINGS["max_object_bytes"])  # type: ignore[call-overload]
        objects = build_objects(args.out / "videos", stack.s3, BUCKET, PRIVATE_BUCKET, cap)
        items = plan(objects, args.events, seed=args.seed, proxy_url=stack.proxy.url)
        campaign = Campaign(stack, items, args)
        try:
            ledger = campaign.run()
        finally:
            campaign.supervisor.worker.kill()
    for line in ledger.report():
        print(line)
    return 1 if ledger.lost else 0


if __name__ == "__main__":
    sys.exit(main())
