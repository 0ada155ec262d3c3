"""Ops campaign: the project's alert rules on a real Prometheus, proved by real faults.

    python -m campaigns.ops [--out ops-out]        # make test-ops

A real Prometheus (Debian's package, loopback) scrapes, every second, a worker group of two
(`skyra-stream worker` on the fake engine, so that a stall is a switch and not a wait), the
API on the tiny model (`skyra-stream serve`, the real vLLM engine: its `vllm:*` series), the
webhook sender, the review loop and the review console, all children configured by SKYRA_*
variables on the loopback stack (Tansu, moto, Redis). It loads k8s/monitoring/skyra.rules.yml
with every duration divided by FACTOR (a 10-minute window takes 10 s; thresholds unchanged)
and causes real faults, one after the other:

- a worker started with a misspelt variable (SKYRA_MAX_TOKEN): SkyraUnknownSetting;
- Label Studio unreachable from the review console: SkyraLabelStudioErrors;
- every worker stopped while events keep arriving: SkyraNoConsumer, resolved by a restart;
- the engine stalled (the fake engine's hold file) while events arrive: SkyraEngineStalled
  and SkyraConsumerLagHigh, resolved when the engine lets go;
- a verdict-cache entry overwritten in Redis, then that content uploaded again:
  SkyraForgedCacheEntry;
- callbacks to a receiver that answers 500: SkyraWebhookFailures;
- a review event with a forged ticket: SkyraReviewTicketFailed.

Each alert is read back from Prometheus's own /api/v1/alerts, with the seconds from the fault
to `firing` and from the repair to its end. Every dashboard panel's queries then run through
/api/v1/query: a panel whose query returns no series is dead. The last line is
`ops alerts_fired=<n>/<n> resolved=<n>/<n> panels_with_data=<n>/<n> rules=<n>`; the exit
status is 1 when any alert did not fire or resolve, or any panel is dead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from campaigns.stack import (
    BUCKET,
    GROUP,
    TOPICS,
    Collector,
    Stack,
    log,
    loopback_stack,
    wait_until,
)
from skyra_stream.devstack.broker import free_port, read_all
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.devstack.prometheus import PrometheusServer
from skyra_stream.devstack.receiver import Receiver
from skyra_stream.devstack.redis_server import RedisServer
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.operations.dashboards import panel_queries
from skyra_stream.operations.rules import compress, load_rules
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import kafka_config
from skyra_stream.settings import Settings

FACTOR = 60  # 10 minutes of rule time in 10 s
KEY = "k" * 40  # verdict cache and review tickets (dev only)
REVIEWS = "ops.review-results"
AUDIT = "ops.audit"
REVIEW_TOPIC = "ops.review"
FIRE_TIMEOUT_S = 150.0
RESOLVE_TIMEOUT_S = 150.0
WEBHOOK_SECRET = "whsec_" + "c2t5cmEtb3BzLXRlc3Qtc2VjcmV0LTMyLWJ5dGVzISE="


@dataclass
class Outcome:
    alert: str
    fault: str
    fired_s: float | None = None
    repaired: bool = False  # the campaign repaired the fault (and waited for the end)
    resolved_s: float | None = None


@dataclass
class Uploads:
    """Small distinct videos in the allowed bucket. `take` hands them out in turn (repeats
    once all were used: answered from the verdict cache); `fresh` hands out ones kept apart
    and never used before, for the stall, whose events must reach the engine."""

    keys: list[str]
    sha256: dict[str, str]
    reserved: list[str] = field(default_factory=list)
    next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> str:
        with self.lock:
            key = self.keys[self.next % len(self.keys)]
            self.next += 1
            return key

    def fresh(self) -> str:
        with self.lock:
            return self.reserved.pop() if self.reserved else self.keys[0]


def upload_videos(stack: Stack, n: int, reserved: int) -> Uploads:
    folder = stack.out / "videos"
    stack.s3.create_bucket(Bucket=BUCKET)
    keys, shas = [], {}
    for i in range(n + reserved):
        path = write_video(folder / f"v{i}.mp4", VideoSpec(width=64, height=48, frames=8, seed=i))
        key = f"ops/v{i}.mp4"
        stack.s3.upload_file(str(path), BUCKET, key)
        keys.append(key)
        shas[hashlib.sha256(path.read_bytes()).hexdigest()] = key
    return Uploads(keys[:n], shas, reserved=keys[n:])


class Events:
    """Ingest events, one at a time or as a steady stream in the background."""

    def __init__(self, stack: Stack) -> None:
        settings = Settings(
            kafka_bootstrap_servers=[stack.broker.bootstrap], ingest_topic=TOPICS["ingest"]
        )
        self.producer = IngestProducer(kafka_config(settings))
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, key: str, **extra: Any) -> str:
        self.sent += 1
        event_id = f"ops-{self.sent}"
        doc = {"event_id": event_id, "video_id": event_id, "uri": f"s3://{BUCKET}/{key}", **extra}
        self.producer.send_raw(json.dumps(doc).encode(), key=event_id.encode())
        self.producer.flush(timeout_s=30)
        return event_id

    def stream(self, take: Callable[[], str], every_s: float = 0.5) -> None:
        def run() -> None:
            while not self._stop.wait(every_s):
                self.send(take())

        self._stop.clear()
        self._thread = threading.Thread(target=run, name="events", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def close(self) -> None:
        self.pause()
        self.producer.close()


class Processes:
    """The children Prometheus scrapes, by job, on fixed ports (a restarted worker comes
    back on its port, as a pod keeps its Service)."""

    def __init__(self, stack: Stack, redis_url: str, receiver: Receiver) -> None:
        self.stack = stack
        self.logs = stack.out / "logs"
        self.hold = stack.out / "hold"
        self.ports = {name: free_port() for name in ("worker-1", "worker-2")}
        self.workers: dict[str, ChildProcess] = {}
        self.redis_url = redis_url
        tenants = stack.out / "tenants.yaml"
        tenants.write_text(
            json.dumps({"tenants": {"default": {"secret": WEBHOOK_SECRET, "hosts": ["127.0.0.1"]}}})
        )
        kafka = {
            "kafka_bootstrap_servers": stack.broker.bootstrap,
            "verdict_topic": TOPICS["verdicts"],
            "dead_letter_topic": TOPICS["dead"],
            "http_host": "127.0.0.1",
            "log_format": "json",
        }
        self.api = ChildProcess(
            "serve",
            self.logs / "api.log",
            stack.worker_settings(
                engine="vllm", guided="regex", guided_max_text_chars=20, max_tokens=96
            ),
        )
        self.webhooks = ChildProcess(
            "webhooks",
            self.logs / "webhooks.log",
            {
                **kafka,
                "webhook_tenants_file": tenants,
                "webhook_allowed_networks": "127.0.0.0/8",
                "webhook_http_hosts": "127.0.0.1",
                "webhook_max_attempts": 4,
                "webhook_backoff_initial_s": 0.3,
                "webhook_backoff_max_s": 1,
                "webhook_group_id": "ops-webhooks",
            },
        )
        self.reviews = ChildProcess(
            "reviews",
            self.logs / "reviews.log",
            {
                **kafka,
                "review_ticket_key": KEY,
                "review_results_topic": REVIEWS,
                "audit_topic": AUDIT,
                "review_group_id": "ops-reviews",
            },
        )
        # Label Studio is not running: the console keeps retrying it (the fault).
        self.console = ChildProcess(
            "review-console",
            self.logs / "review-console.log",
            {
                **kafka,
                "review_console_topic": REVIEW_TOPIC,
                "label_studio_url": f"http://127.0.0.1:{free_port()}",
                "label_studio_token": "t" * 40,
                "label_studio_timeout_s": 1,
                "s3_endpoint_url": stack.proxy.url,
                "s3_allowed_buckets": BUCKET,
            },
        )
        self.started_at = time.monotonic()
        for name in self.ports:
            self.start_worker(name, typo=name == "worker-1")

    def start_worker(self, name: str, *, typo: bool = False, group: str = GROUP) -> ChildProcess:
        extra: dict[str, object] = {"max_token": 5} if typo else {}  # SKYRA_MAX_TOKEN: misspelt
        worker = ChildProcess(
            "worker",
            self.logs / f"{name}.log",
            self.stack.worker_settings(
                worker_id=name,
                engine="fake",
                fake_engine_latency_s=0.1,
                fake_engine_hold_file=self.hold,
                verdict_cache=True,
                verdict_cache_url=self.redis_url,
                verdict_cache_key=KEY,
                pipeline_max_messages=4,
                group_id=group,
                kafka_session_timeout_ms=6000,
                kafka_max_poll_interval_ms=20000,
                **extra,
            ),
            http_port=self.ports[name],
        )
        self.workers[name] = worker
        return worker

    def targets(self) -> dict[str, list[str]]:
        def at(*procs: ChildProcess) -> list[str]:
            return [f"127.0.0.1:{p.http_port}" for p in procs]

        return {
            "skyra-worker": [f"127.0.0.1:{port}" for port in self.ports.values()],
            "skyra-api": at(self.api),
            "skyra-webhooks": at(self.webhooks),
            "skyra-reviews": at(self.reviews),
            "skyra-review-console": at(self.console),
        }

    def all(self) -> list[ChildProcess]:
        return [*self.workers.values(), self.api, self.webhooks, self.reviews, self.console]

    def stop_all(self) -> None:
        for proc in self.all():
            try:
                proc.stop(timeout_s=60)
            except Exception:  # never left behind: the whole session is killed instead
                proc.signal(signal.SIGKILL)


def wait_alert(prom: PrometheusServer, name: str, *, firing: bool, timeout_s: float) -> bool:
    """Whether `name` came to be firing (with firing=False: gone from the active alerts)
    within `timeout_s`; the callers time it from the fault or the repair."""

    def state() -> bool:
        active = [a for a in prom.alerts() if a["labels"].get("alertname") == name]
        if firing:
            return any(a["state"] == "firing" for a in active)
        return not active

    return wait_until(state, timeout_s, step_s=0.5)


def fault(
    prom: PrometheusServer,
    outcomes: list[Outcome],
    names: list[str],
    what: str,
    *,
    cause: Callable[[], None],
    repair: Callable[[], None] | None,
    since: float | None = None,
) -> list[Outcome]:
    """Cause a fault and wait for each of `names` to fire (timed from `since`, when the fault
    began earlier); then, unless `repair` is None (the fault lasts, or is repaired later),
    repair it and wait for each to end."""
    log(f"fault: {what}")
    cause()
    started = since if since is not None else time.monotonic()
    mine = [Outcome(name, what) for name in names]
    for outcome in mine:
        left = FIRE_TIMEOUT_S - (time.monotonic() - started)
        seen = wait_alert(prom, outcome.alert, firing=True, timeout_s=max(1.0, left))
        outcome.fired_s = round(time.monotonic() - started, 1) if seen else None
        log(f"  {outcome.alert}: " + (f"fired after {outcome.fired_s} s" if seen else "NOT FIRED"))
    outcomes.extend(mine)
    if repair is not None:
        resolve(prom, mine, repair)
    return mine


def resolve(prom: PrometheusServer, outcomes: list[Outcome], repair: Callable[[], None]) -> None:
    """Repair a fault and wait for each of its alerts to end."""
    repair()
    repaired = time.monotonic()
    for outcome in outcomes:
        outcome.repaired = True
        if outcome.fired_s is None:
            continue  # never fired: nothing to end (counted as not resolved)
        left = RESOLVE_TIMEOUT_S - (time.monotonic() - repaired)
        seen = wait_alert(prom, outcome.alert, firing=False, timeout_s=max(1.0, left))
        outcome.resolved_s = round(time.monotonic() - repaired, 1) if seen else None
        log(
            f"  {outcome.alert}: "
            + (f"resolved after {outcome.resolved_s} s" if seen else "NOT RESOLVED")
        )


def panels(prom: PrometheusServer) -> tuple[int, int, list[str]]:
    """(panels with data, panels, the dead ones): a panel has data when every one of its
    queries returns at least one series."""
    by_panel: dict[tuple[str, str], bool] = {}
    for uid, title, expr in panel_queries():
        live = bool(prom.query(expr.replace("$__rate_interval", "1m")))
        by_panel[(uid, title)] = by_panel.get((uid, title), True) and live
    dead = [f"{uid}: {title}" for (uid, title), ok in by_panel.items() if not ok]
    return len(by_panel) - len(dead), len(by_panel), dead


def forge_cache_entry(redis_url: str, uploads: Uploads) -> str | None:
    """Overwrite one sealed verdict-cache entry (as someone with write access to Redis but
    without the key would) and return the object whose content it names."""
    client = redis.Redis.from_url(redis_url)
    for raw in client.scan_iter(count=100):
        key = raw.decode()
        sha = key.rsplit(":", 1)[-1]
        if sha in uploads.sha256:
            forged = {"event_id": "forged", "label": "real", "note": "trust me"}
            client.set(raw, json.dumps(forged).encode())
            return uploads.sha256[sha]
    return None


def forged_review(collector_verdict: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "review_id": "forged-review-1",
            "verdict": collector_verdict,
            "outcome": "confirm",
            "reviewer": "mallory",
            "ticket": "not-a-ticket",
        }
    ).encode()


def run(out: Path) -> int:
    started = time.monotonic()
    rules = load_rules()
    outcomes: list[Outcome] = []
    with loopback_stack(out) as stack:
        stack.broker.create_topics([REVIEWS, AUDIT, REVIEW_TOPIC], 1)
        uploads = upload_videos(stack, 40, reserved=120)
        redis_server = RedisServer(out / "logs" / "redis.log")
        receiver = Receiver()
        procs = Processes(stack, redis_server.url, receiver)
        events = Events(stack)
        prom = PrometheusServer(out / "prometheus", procs.targets(), compress(rules, FACTOR))
        collector = Collector(stack.broker.bootstrap)
        try:
            prom.wait_ready()
            for proc in procs.all():
                if proc is procs.console:  # never ready without Label Studio: serving is enough
                    wait_until(lambda: procs.console.get("/metrics")[0] == 200, 60)
                else:
                    proc.wait_ready(timeout_s=400 if proc is procs.api else 120)
            expected = sum(len(g["rules"]) for g in rules["groups"])
            wait_until(lambda: prom.rule_count() == expected, 30)
            loaded = prom.rule_count()
            log(f"stack ready; prometheus on {prom.url} with {loaded} rules")
            if loaded != expected:  # no rule loaded would make every alert a timeout
                raise RuntimeError(f"Prometheus loaded {loaded} of the {expected} rules")
            # Traffic: verdicts, a dead letter, one API video on the tiny model (vLLM).
            for _ in range(6):
                events.send(uploads.take())
            events.send("ops/missing.mp4")
            status, _ = api_analyze(procs.api, f"s3://{BUCKET}/{uploads.take()}")
            log(f"API analyze: {status}")
            wait_until(lambda: collector.records >= 7, 120)

            fault(
                prom,
                outcomes,
                ["SkyraUnknownSetting"],
                "a misspelt SKYRA_MAX_TOKEN",
                cause=lambda: None,
                repair=None,  # by the workers' restart below, without the misspelling
                since=procs.started_at,
            )
            fault(
                prom,
                outcomes,
                ["SkyraLabelStudioErrors"],
                "Label Studio unreachable",
                cause=lambda: None,
                repair=None,  # Label Studio is never started here
                since=procs.started_at,
            )

            def stop_workers() -> None:
                for worker in procs.workers.values():
                    worker.stop(timeout_s=60)
                events.stream(uploads.take)

            def restart_workers() -> None:
                # The same group first, as a restarted Deployment does. Tansu 0.6 sometimes
                # never re-forms a group all of whose members left (seen here: no assignment
                # in 5 minutes, while a new group forms in seconds; Apache Kafka has no such
                # state): then the workers restart under a fresh group id. What the alert
                # reads is the same either way: workers holding the partitions again.
                for attempt, group in enumerate((GROUP, f"{GROUP}-restarted")):
                    if attempt:
                        log(f"  Tansu did not re-form {GROUP}: the workers restart as {group}")
                        for worker in procs.workers.values():
                            worker.stop(timeout_s=60)
                    for name in procs.ports:
                        procs.start_worker(name, group=group)  # no misspelt variable now
                    if all(
                        wait_until(lambda w=w: w.get("/readyz", timeout_s=2)[0] == 200, 90)
                        for w in procs.workers.values()
                    ):
                        return
                raise RuntimeError("the restarted workers never got their partitions")

            fault(
                prom,
                outcomes,
                ["SkyraNoConsumer"],
                "every worker stopped",
                cause=stop_workers,
                repair=restart_workers,
            )
            events.pause()
            log("repaired: the workers restarted without the misspelt variable")
            resolve(prom, [o for o in outcomes if o.alert == "SkyraUnknownSetting"], lambda: None)

            def stall() -> None:
                procs.hold.touch()
                events.stream(uploads.fresh)

            def unstall() -> None:
                procs.hold.unlink()

            fault(
                prom,
                outcomes,
                ["SkyraEngineStalled", "SkyraConsumerLagHigh"],
                "engine stalled while events arrive",
                cause=stall,
                repair=unstall,
            )
            events.pause()

            def forge() -> None:
                key = forge_cache_entry(redis_server.url, uploads)
                if key is None:
                    log("  no cache entry to forge")
                    return
                events.send(key)

            fault(
                prom,
                outcomes,
                ["SkyraForgedCacheEntry"],
                "a forged verdict-cache entry",
                cause=forge,
                repair=lambda: None,  # nothing to repair: the alert's window passes
            )

            def failing_callbacks() -> None:
                for _ in range(3):
                    events.send(uploads.take(), callback_url=receiver.url("/status/500"))
                    time.sleep(1)

            fault(
                prom,
                outcomes,
                ["SkyraWebhookFailures"],
                "a receiver that answers 500",
                cause=failing_callbacks,
                repair=lambda: None,  # nothing to repair: the alert's window passes
            )

            def forge_review() -> None:
                verdict = first_verdict(stack)
                events.producer.send_raw(forged_review(verdict), topic=REVIEWS)
                events.producer.flush(timeout_s=30)

            fault(
                prom,
                outcomes,
                ["SkyraReviewTicketFailed"],
                "a review with a forged ticket",
                cause=forge_review,
                repair=lambda: None,  # nothing to repair: the alert's window passes
            )

            with_data, total, dead = panels(prom)
            for name in dead:
                log(f"dead panel: {name}")
            rule_count = prom.rule_count()
        finally:
            for close in (
                events.close,
                collector.close,
                procs.stop_all,
                prom.stop,
                receiver.close,
                redis_server.stop,
            ):
                try:
                    close()
                except Exception as exc:  # the next ones must still run
                    log(f"cleanup: {close.__qualname__} failed: {exc!r}")
    fired = sum(o.fired_s is not None for o in outcomes)
    repaired = [o for o in outcomes if o.repaired]
    resolved = sum(o.resolved_s is not None for o in repaired)
    report = {
        "alerts": [o.__dict__ for o in outcomes],
        "panels_with_data": with_data,
        "panels": total,
        "dead_panels": dead,
        "rules": rule_count,
        "seconds": round(time.monotonic() - started),
    }
    (out / "ops.json").write_text(json.dumps(report, indent=1))
    for o in outcomes:
        end = o.resolved_s if o.repaired else "not repaired here"
        log(f"{o.alert:28} {o.fault:36} fired={o.fired_s} resolved={end}")
    print(
        f"ops alerts_fired={fired}/{len(outcomes)} resolved={resolved}/{len(repaired)} "
        f"panels_with_data={with_data}/{total} rules={rule_count}",
        flush=True,
    )
    ok = fired == len(outcomes) and resolved == len(repaired) and with_data == total
    return 0 if ok else 1


def first_verdict(stack: Stack) -> dict[str, Any]:
    for _, value, _ in read_all(stack.broker.bootstrap, TOPICS["verdicts"]):
        return dict(json.loads(value))
    raise RuntimeError("no verdict on the verdict topic")


def api_analyze(api: ChildProcess, uri: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{api.http_port}/v1/analyze",
        data=json.dumps({"uri": uri}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("ops-out"))
    args = ap.parse_args()
    for key, value in (("AWS_ACCESS_KEY_ID", "ops"), ("AWS_SECRET_ACCESS_KEY", "ops")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    shutil.rmtree(args.out, ignore_errors=True)

    # SIGTERM (a CI timeout, Ctrl-C's sibling) ends through the `finally` that stops every
    # child: none of them may outlive the campaign.
    def on_term(*_: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    sys.exit(run(args.out))


if __name__ == "__main__":
    main()
