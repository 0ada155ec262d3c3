"""Fleet campaign: a consumer group scaled up and down while events flow, workers killed in
the middle of rebalances, and a ledger that proves nothing was lost or left behind.

    python -m campaigns.fleet [--events 560] [--seed 1] [--out fleet-out]
    CHAOS_SHORT=1 python -m campaigns.fleet      # the short form CI runs

One Tansu broker with an 8-partition ingest topic, moto S3 behind the fault proxy, and the
chaos campaign's mixed stream (valid videos of many codecs, hostile inputs, S3
notifications, duplicates). The group is scaled 1 -> 3 -> 2 -> 4 -> 1 -> 2 workers, as KEDA
does with a Deployment, and on the way:

- a worker is SIGKILLed (alone, as the OOM killer does) while its partitions are being
  revoked for a scale-up, then restarted in place as its pod would be;
- a worker is SIGTERMed (scaled down) while partitions are moving for another member's join;
- the broker is frozen while two new members join, and a worker is SIGKILLed once it thaws;
- during the scale-down to one, a leaving worker is SIGKILLed instead of stopped.

Every SIGKILL is followed by a count of the processes of the killed worker's tree that are
still alive 10 s later (`orphans`, must be 0). In the full form the first worker runs the
real engine (vLLM's CPU build, the tiny model), so that its SIGKILL leaves vLLM's engine
processes behind unless the reaper ends them; the other members, and every member of the
short form, run `model.fake_engine.FakeEngine` with a fixed latency (four vLLM engines do
not fit a 2-core machine). Fake members journal every request they submit, so videos
analysed more than once are counted across kills.

The full form then measures the revoke budget: the same scale-only schedule (a member
joins, then leaves, three times, while a steady stream flows) once with
`SKYRA_KAFKA_REVOKE_BUDGET_S` at its default and once at 0, counting duplicate analyses per
rebalance from the journals.

The last line is `fleet events=... rebalance_duplicates=... missing=0 orphans=0
scale_steps=... kills=...`; the exit status is 1 on any loss, wrong outcome, orphan,
unplanned exit or uncommitted offset.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from campaigns.corpus import Planned, build_objects, plan
from campaigns.ledger import Ledger
from campaigns.stack import (
    BUCKET,
    PRIVATE_BUCKET,
    TOPICS,
    WORKER_SETTINGS,
    Collector,
    Stack,
    balance_outputs,
    log,
    loopback_stack,
    wait_until,
)
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.settings import Settings

PARTITIONS = 8
SCALE = (1, 3, 2, 4, 1, 2)
# About what the tiny model takes per video on 2 cores, so that work is in flight when a
# rebalance or a kill comes, as it is with vLLM.
FAKE_LATENCY_S = 0.5
ORPHAN_GRACE_S = 10.0


@dataclass
class Kill:
    member: str
    when: str
    mid_rebalance: bool
    tree: int  # processes in the killed worker's tree
    left: list[str]  # of those, alive ORPHAN_GRACE_S later


@dataclass
class Fleet:
    """The consumer group's members by name, started and stopped as a Deployment scales and
    as Kubernetes restarts a killed container in place (same name)."""

    stack: Stack
    group: str
    topics: dict[str, str]
    journal_dir: Path
    real: frozenset[str] = frozenset()
    overrides: dict[str, object] = field(default_factory=dict)
    members: dict[str, ChildProcess] = field(default_factory=dict)
    exits: list[tuple[str, str, int]] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    starts: int = 0

    def start(self, name: str) -> ChildProcess:
        self.starts += 1
        engine: dict[str, object] = (
            {"engine": "vllm"}
            if name in self.real
            else {
                "engine": "fake",
                "fake_engine_latency_s": FAKE_LATENCY_S,
                "fake_engine_journal": self.journal_dir / f"{name}.journal",
            }
        )
        member = ChildProcess(
            "worker",
            self.stack.out / "logs" / f"{self.group}-{name}-{self.starts}.log",
            self.stack.worker_settings(
                worker_id=name,
                group_id=self.group,
                ingest_topic=self.topics["ingest"],
                verdict_topic=self.topics["verdicts"],
                dead_letter_topic=self.topics["dead"],
                **{**engine, **self.overrides},
            ),
        )
        self.members[name] = member
        return member

    def ready(self, *names: str, timeout_s: float = 400.0) -> None:
        for name in names:
            self.members[name].wait_ready(timeout_s)

    def rebalances(self, name: str) -> float:
        return self.members[name].metric("skyra_rebalances_total") or 0.0

    def in_flight(self, name: str) -> float:
        return self.members[name].metric("skyra_in_flight_messages") or 0.0

    def settled(self, partitions: int, still_s: float = 3.0, timeout_s: float = 90.0) -> bool:
        """Until every partition is owned by a member and no member's rebalance count has
        moved for `still_s`: the group is between rebalances, not in the middle of one (a
        member revoked and waiting for its new assignment owns nothing)."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, float] = {}
        since = time.monotonic()
        while time.monotonic() < deadline:
            now = {name: self.rebalances(name) for name in self.members}
            owned = sum(m.metric("skyra_assigned_partitions") or 0 for m in self.members.values())
            if now != last or owned != partitions:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= still_s:
                return True
            time.sleep(0.2)
        return False

    def wait_rebalance(self, name: str, since: float, timeout_s: float = 60.0) -> bool:
        """Until `name` has started a rebalance after `since` (its revocation callback runs:
        it is inside the revoke budget, partitions half moved)."""
        return wait_until(lambda: self.rebalances(name) > since, timeout_s, 0.05)

    def stop(self, name: str, why: str) -> None:
        member = self.members.pop(name)
        member.terminate()
        code = member.wait(180)
        self.exits.append((name, why, code))
        if code != 0:
            self.problems.append(f"{name} ({why}) exited {code} after SIGTERM, not 0")

    def kill(self, name: str, when: str, mid_rebalance: bool) -> Kill:
        """SIGKILL the worker process alone; its tree must be gone ORPHAN_GRACE_S later."""
        member = self.members.pop(name)
        root = psutil.Process(member.pid)
        tree = [root, *root.children(recursive=True)]
        member.kill_alone()
        self.exits.append((name, "sigkill", member.wait(30)))
        # A process that is gone stays gone: polling until the tree is empty, or the grace
        # has passed, is the same check as looking once after the grace.
        wait_until(lambda: not any(_alive(p) for p in tree), ORPHAN_GRACE_S, 0.2)
        left = [f"{p.pid} {_name(p)}" for p in tree if _alive(p)]
        kill = Kill(name, when, mid_rebalance, len(tree), left)
        self.kills.append(kill)
        log(
            f"  SIGKILL {name} ({when}, mid-rebalance {mid_rebalance}): "
            f"{len(tree)} processes in its tree, {len(left)} alive after {ORPHAN_GRACE_S:.0f} s"
        )
        for leftover in tree:
            if _alive(leftover):  # do not let an orphan spoil the rest of the run
                leftover.kill()
        return kill

    def check_alive(self) -> None:
        for name, member in list(self.members.items()):
            code = member.proc.poll()
            if code is not None:
                self.problems.append(f"{name} exited by itself with {code}")
                self.exits.append((name, "unplanned", code))
                self.start(name)

    def stop_all(self) -> None:
        for name in list(self.members):
            self.stop(name, "final")

    def kill_all(self) -> None:
        for member in self.members.values():
            member.signal(signal.SIGKILL)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


class Stream:
    """Produces the planned messages in slices: an opening backlog, then one slice when each
    step of the schedule begins (sent at `rate`), so that every step meets work in flight.
    Learns the Kafka position of messages that carry no usable id."""

    def __init__(
        self, stack: Stack, topic: str, items: list[Planned], rate: float, slices: int = 0
    ) -> None:
        self.rate = rate
        self.sent = 0
        self.slices = slices
        self._gate = threading.Semaphore(0)
        self._items = items
        settings = Settings(kafka_bootstrap_servers=[stack.broker.bootstrap], ingest_topic=topic)
        self._producer = IngestProducer(
            kafka_config(settings), retries=1000, request_timeout_ms=60_000
        )
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self, backlog: int) -> Stream:
        self._backlog = backlog
        self._thread.start()
        return self

    def next_slice(self) -> None:
        self._gate.release()

    def _run(self) -> None:
        head, rest = self._items[: self._backlog], self._items[self._backlog :]
        parts = max(self.slices, 1)
        chunks = [rest[len(rest) * i // parts : len(rest) * (i + 1) // parts] for i in range(parts)]
        try:
            self._send(head, paced=False)
            for chunk in chunks:
                if self.slices:
                    self._gate.acquire()
                self._send(chunk, paced=True)
            self._producer.flush(timeout_s=120)
        finally:
            self._producer.close()

    def _send(self, items: list[Planned], paced: bool) -> None:
        for item in items:
            future = self._producer.send_raw(item.raw, key=item.key)
            if item.by_position:
                meta = future.get(timeout=120)
                item.ids = [f"kafka:{meta.topic}:{meta.partition}:{meta.offset}"]
            self.sent += 1
            if paced:
                time.sleep(1.0 / self.rate)

    def join(self) -> None:
        self.next_slice()  # a slice still waiting for a step goes now
        self._thread.join()


class Campaign:
    def __init__(self, stack: Stack, items: list[Planned], args: argparse.Namespace) -> None:
        self.stack = stack
        self.items = items
        self.args = args
        self.rng = random.Random(args.seed)
        real = frozenset({"w1"}) if args.real_engine else frozenset()
        journals = fresh_folder(stack.out / "journals" / "main")
        self.fleet = Fleet(stack, "fleet", TOPICS, journals, real)
        self.collector = Collector(stack.broker.bootstrap)
        self.scale_steps = 0
        self.freezes = 0

    # -- the schedule -------------------------------------------------------------------

    def scale_to(self, target: int, step: Callable[[], None]) -> None:
        before = len(self.fleet.members)
        log(f"scale {before} -> {target}")
        step()
        if len(self.fleet.members) != target:
            self.fleet.problems.append(f"scaled to {len(self.fleet.members)}, not {target}")
        self.scale_steps += 1
        self.settle()

    def settle_group(self) -> None:
        if not self.fleet.settled(PARTITIONS):
            log("  the group did not settle within 90 s; going on")

    def settle(self) -> None:
        """Let the group finish its rebalance and work a little before the next step."""
        time.sleep(self.rng.uniform(*self.args.settle_s))
        self.fleet.check_alive()
        self.progress()

    def up_1_to_3(self) -> None:
        # The first member is SIGKILLed as soon as the joins reach it: inside its revocation
        # callback, with its partitions' work in flight.
        fleet = self.fleet
        self.settle_group()
        since = fleet.rebalances("w1")
        log(f"  w1 has {fleet.in_flight('w1'):.0f} messages in flight")
        fleet.start("w2")
        fleet.start("w3")
        hit = fleet.wait_rebalance("w1", since)
        fleet.kill("w1", "while w2 and w3 join", hit)
        fleet.start("w1")  # restarted in place, as its pod would be
        fleet.ready("w1", "w2", "w3")

    def down_3_to_2(self) -> None:
        # w3 is scaled away while partitions move for another member: w1's restart joins the
        # group again, so SIGTERM reaches w3 during that rebalance.
        fleet = self.fleet
        fleet.stop("w1", "rolling restart")
        self.settle_group()
        since = fleet.rebalances("w3")
        fleet.start("w1")  # joins once its engine is up (a minute with vLLM here)
        hit = fleet.wait_rebalance("w3", since, timeout_s=400)
        fleet.ready("w1")
        log(f"  SIGTERM w3 with partitions moving: {hit}")
        fleet.stop("w3", "scaled down mid-rebalance")

    def up_2_to_4(self) -> None:
        # Two members join while the broker is frozen; once it thaws, w2 is SIGKILLed inside
        # the rebalance the joins caused, and comes back.
        fleet = self.fleet
        self.settle_group()
        since = fleet.rebalances("w2")
        fleet.start("w3")
        fleet.start("w4")
        hit = fleet.wait_rebalance("w2", since)
        seconds = self.rng.uniform(5, 8 if self.args.short else 15)
        log(f"  broker frozen for {seconds:.0f} s while w3 and w4 join (join begun: {hit})")
        self.stack.broker.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.stack.broker.proc.send_signal(signal.SIGCONT)
        self.freezes += 1
        fleet.kill("w2", "as the broker thaws, joins pending", hit)
        fleet.ready("w3", "w4")
        fleet.start("w2")
        fleet.ready("w2")

    def down_4_to_1(self) -> None:
        # Three members leave; the second of them is killed instead of stopped, inside the
        # rebalance that the first one's leaving started.
        fleet = self.fleet
        self.settle_group()
        since = fleet.rebalances("w4")
        fleet.stop("w3", "scaled down")
        hit = fleet.wait_rebalance("w4", since)
        fleet.kill("w4", "while scaling down", hit)
        fleet.stop("w2", "scaled down")

    def up_1_to_2(self) -> None:
        self.fleet.start("w2")
        self.fleet.ready("w2")

    # -- the run ------------------------------------------------------------------------

    def run(self) -> FleetLedger:
        started = time.monotonic()
        fleet = self.fleet
        fleet.start("w1")
        fleet.ready("w1")
        log(f"w1 ready after {time.monotonic() - started:.0f} s")
        window = int(WORKER_SETTINGS["pipeline_max_messages"])  # type: ignore[call-overload]
        steps = [self.up_1_to_3, self.down_3_to_2, self.up_2_to_4, self.down_4_to_1]
        steps.append(self.up_1_to_2)
        stream = Stream(
            self.stack, TOPICS["ingest"], self.items, self.args.rate, slices=len(steps)
        ).start(backlog=2 * window)
        wait_until(lambda: fleet.in_flight("w1") >= window // 2, 60, 0.2)
        for target, step in zip(SCALE[1:], steps, strict=True):
            stream.next_slice()
            self.scale_to(target, step)
        stream.join()
        log(f"produced {stream.sent} messages")
        self.drain(started)
        fleet.stop_all()
        self.collector.close()
        ledger = self.balance()
        log(f"campaign took {time.monotonic() - started:.0f} s")
        return ledger

    def drain(self, started: float) -> None:
        expected = self.expected()
        deadline = time.monotonic() + self.args.drain_timeout
        while not expected <= self.collector.ids and time.monotonic() < deadline:
            self.fleet.check_alive()
            time.sleep(2)
            if int(time.monotonic() - started) % 20 < 2:
                self.progress()
        self.progress()

    def expected(self) -> set[str]:
        return {eid for item in self.items for eid in item.ids}

    def progress(self) -> None:
        expected = self.expected()
        done = len(expected & self.collector.ids)
        log(f"  accounted {done}/{len(expected)} event ids ({self.collector.records} records)")

    def balance(self) -> FleetLedger:
        base, verdicts = balance_outputs(self.stack, self.items, self.fleet.group)
        base.problems += self.fleet.problems
        analyses = journal_counts(self.fleet.journal_dir)
        # The real member journals nothing: its analyses are its published verdicts.
        for record in verdicts:
            if record.get("worker_id") in self.fleet.real:
                analyses[str(record["event_id"])] += 1
        base.faults = Counter(
            {
                "sigkill_mid_rebalance": len(self.fleet.kills),
                "sigterm_mid_rebalance": 1,
                "rolling_restart": 1,
                "broker_freeze_during_join": self.freezes,
            }
        )
        ledger = FleetLedger(
            base=base,
            kills=self.fleet.kills,
            scale_steps=self.scale_steps,
            analysed_again=sum(1 for n in analyses.values() if n > 1),
            extra_analyses=sum(n - 1 for n in analyses.values() if n > 1),
            intended_copies=sum(1 for item in self.items if item.copy_of),
        )
        exits = Counter(f"{why}->{code}" for _, why, code in self.fleet.exits)
        log("worker exits: " + ", ".join(f"{k} x{v}" for k, v in sorted(exits.items())))
        dump = {
            "line": ledger.line(),
            "dead_letters": dict(base.dead_letters),
            "kinds": dict(base.kinds),
            "kills": [vars(k) for k in self.fleet.kills],
            "worker_exits": dict(exits),
            "broker_freezes": self.freezes,
            "analysed_again": ledger.analysed_again,
            "problems": base.problems,
            "missing": base.missing,
            "wrong": base.wrong,
        }
        (self.stack.out / "ledger.json").write_text(json.dumps(dump, indent=2))
        return ledger


def fresh_folder(folder: Path) -> Path:
    """An empty folder: journals of an earlier run in the same --out would be counted."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def journal_counts(folder: Path) -> Counter[str]:
    """Requests submitted per event id, over every fake member's journal."""
    counts: Counter[str] = Counter()
    for path in folder.glob("*.journal"):
        counts.update(line for line in path.read_text().splitlines() if line)
    return counts


@dataclass
class FleetLedger:
    base: Ledger
    kills: list[Kill]
    scale_steps: int
    analysed_again: int  # event ids whose video went to an engine more than once
    extra_analyses: int
    intended_copies: int  # messages planned as duplicates of an earlier event

    @property
    def orphans(self) -> int:
        return sum(len(k.left) for k in self.kills)

    @property
    def lost(self) -> bool:
        return self.base.lost or self.orphans > 0

    def report(self) -> list[str]:
        lines = self.base.report()[:-1]
        for kill in self.kills:
            lines.append(
                f"kill {kill.member} ({kill.when}, mid-rebalance {kill.mid_rebalance}): "
                f"{kill.tree} processes, left alive: {kill.left or 'none'}"
            )
        lines.append(
            f"videos analysed more than once: {self.analysed_again} event ids, "
            f"{self.extra_analyses} extra analyses (planned duplicate messages: "
            f"{self.intended_copies})"
        )
        if self.orphans:
            lines.append(f"ORPHANS: {self.orphans} processes outlived their killed worker")
        lines.append(self.line())
        return lines

    def line(self) -> str:
        b = self.base
        return (
            f"fleet events={b.events} verdicts={b.verdicts} "
            f"dead_letters={sum(b.dead_letters.values())} duplicates={b.duplicates} "
            f"rebalance_duplicates={b.redeliveries} missing={len(b.missing)} "
            f"orphans={self.orphans} scale_steps={self.scale_steps} kills={len(self.kills)}"
        )


# -- the revoke budget, measured ------------------------------------------------------------


def budget_arm(
    stack: Stack, objects_valid: list[str], budget_s: float, args: argparse.Namespace
) -> tuple[int, int]:
    """The scale-only schedule on fresh topics: (extra analyses, rebalances)."""
    tag = f"budget{budget_s:g}".replace(".", "_")
    topics = {k: f"{tag}.{k}" for k in ("ingest", "verdicts", "dead")}
    stack.broker.create_topics(list(topics.values()), PARTITIONS)
    journals = fresh_folder(stack.out / "journals" / tag)
    fleet = Fleet(
        stack,
        tag,
        topics,
        journals,
        # Slower answers than the main run's: more work in flight when a member joins.
        overrides={"kafka_revoke_budget_s": budget_s, "fake_engine_latency_s": 2.0},
    )
    rng = random.Random(args.seed)
    items = [
        Planned(
            "valid",
            json.dumps(
                {
                    "event_id": f"{tag}-{i}",
                    "video_id": f"v{i}",
                    "uri": f"s3://{BUCKET}/{rng.choice(objects_valid)}",
                }
            ).encode(),
            frozenset({"verdict"}),
            ids=[f"{tag}-{i}"],
        )
        for i in range(args.budget_events)
    ]
    log(f"revoke budget {budget_s:g} s: {len(items)} events, 2 members, one joins and leaves x3")
    fleet.start("w1")
    fleet.start("w2")
    fleet.ready("w1", "w2")
    try:
        fleet.settled(PARTITIONS)
        stream = Stream(stack, topics["ingest"], items, args.budget_rate).start(backlog=0)
        time.sleep(args.budget_hold_s)
        rebalances_before = fleet.rebalances("w1")
        for _ in range(3):
            fleet.start("w3")
            fleet.ready("w3")
            time.sleep(args.budget_hold_s)
            fleet.stop("w3", "scaled down")
            fleet.settled(PARTITIONS)
            time.sleep(args.budget_hold_s)
        rebalances = int(fleet.rebalances("w1") - rebalances_before)
        stream.join()
        ids = {item.ids[0] for item in items}
        reader = Collector(stack.broker.bootstrap, topics=(topics["verdicts"], topics["dead"]))
        try:
            wait_until(lambda: ids <= reader.ids, args.drain_timeout, 1.0)
        finally:
            reader.close()
        fleet.stop_all()
    finally:
        fleet.kill_all()
    if fleet.problems:
        raise RuntimeError(f"budget arm {budget_s:g}: {fleet.problems}")
    counts = journal_counts(journals)
    extra = sum(n - 1 for n in counts.values() if n > 1)
    log(f"  {extra} extra analyses over {rebalances} rebalances seen by w1")
    return extra, rebalances


def main(argv: list[str] | None = None) -> int:
    short = os.environ.get("CHAOS_SHORT", "") not in ("", "0")
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=220 if short else 560)
    ap.add_argument("--rate", type=float, default=4.0, help="messages/s after the backlog")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    ap.add_argument("--out", type=Path, default=Path("fleet-out"))
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--short", action="store_true", default=short)
    ap.add_argument(
        "--real-engine",
        action=argparse.BooleanOptionalAction,
        default=not short,
        help="the first member runs vLLM with the tiny model (its SIGKILL tests the reaper)",
    )
    ap.add_argument(
        "--budget",
        action=argparse.BooleanOptionalAction,
        default=not short,
        help="measure duplicate analyses per rebalance with the revoke budget and without",
    )
    ap.add_argument("--budget-events", type=int, default=360)
    ap.add_argument("--budget-rate", type=float, default=6.0)
    ap.add_argument("--budget-hold-s", type=float, default=6.0)
    args = ap.parse_args(argv)
    args.settle_s = (3.0, 6.0) if args.short else (8.0, 15.0)
    for key, value in (("AWS_ACCESS_KEY_ID", "fleet"), ("AWS_SECRET_ACCESS_KEY", "fleet")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(
        f"fleet campaign ({'short' if args.short else 'full'}): {args.events} messages, "
        f"{PARTITIONS} partitions, members {' -> '.join(map(str, SCALE))}, seed {args.seed}, "
        f"real engine in w1: {args.real_engine}, out {args.out}"
    )
    with loopback_stack(args.out, partitions=PARTITIONS) as stack:
        cap = int(WORKER_SETTINGS["max_object_bytes"])  # type: ignore[call-overload]
        objects = build_objects(args.out / "videos", stack.s3, BUCKET, PRIVATE_BUCKET, cap)
        ratio_line = None
        if args.budget:
            default_budget = float(Settings.model_fields["kafka_revoke_budget_s"].default)
            with_budget, rebalances_on = budget_arm(stack, objects.valid, default_budget, args)
            without, rebalances_off = budget_arm(stack, objects.valid, 0.0, args)
            per_on = with_budget / max(rebalances_on, 1)
            per_off = without / max(rebalances_off, 1)
            ratio_line = (
                f"duplicate analyses per rebalance: {per_on:.2f} with the revoke budget, "
                f"{per_off:.2f} without ({with_budget}/{rebalances_on} and "
                f"{without}/{rebalances_off}); ratio budget_vs_none="
                f"{per_on / per_off if per_off else float('nan'):.2f}"
            )
            log(ratio_line)
        items = plan(objects, args.events, seed=args.seed, proxy_url=stack.proxy.url)
        campaign = Campaign(stack, items, args)
        try:
            ledger = campaign.run()
        finally:
            campaign.fleet.kill_all()
    if ratio_line:
        print(ratio_line)
    for line in ledger.report():
        print(line)
    return 1 if ledger.lost else 0


if __name__ == "__main__":
    sys.exit(main())
