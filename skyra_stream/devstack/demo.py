"""`skyra-stream demo` / `make demo`: the whole product on a laptop, no GPU, no services.

Starts a Kafka-protocol broker (Tansu) and an S3 endpoint (moto) on loopback, writes sample
videos and one broken file, builds the tiny model unless --model is given, runs the real
`skyra-stream worker` as a subprocess, publishes the events, shows verdicts live as they
arrive, renders evidence sheets, and shuts everything down, leaving no process behind.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from skyra_stream.consumers.readers import topic_reader
from skyra_stream.decisions.evidence import render_sheet
from skyra_stream.devstack.broker import TansuBroker
from skyra_stream.devstack.processes import ChildProcess
from skyra_stream.media.decode import sample_video
from skyra_stream.media.samples import write_demo_set
from skyra_stream.messages import DeadLetter, IngestEvent, Verdict
from skyra_stream.model.tiny_model import build_tiny_model, is_tiny_model
from skyra_stream.producers.admin import create_topics
from skyra_stream.producers.tool import publish
from skyra_stream.runtime.configs import fetch_config, kafka_config
from skyra_stream.settings import Settings

BUCKET = "demo-uploads"
TOPICS = {"ingest": "demo.ingest", "verdicts": "demo.verdicts", "dead": "demo.dead-letters"}


def run_demo(out: Path, model: Path | None, timeout_s: float = 240.0) -> int:
    console = Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if model is None:
        console.print("[bold]building[/] the tiny random-weight test model ...")
        model = build_tiny_model(out / "tiny-model")
    if is_tiny_model(model):
        console.print(
            "[yellow]note:[/] this demo runs the tiny UNTRAINED model: the pipeline is real, "
            "its verdicts are random. For real verdicts run it on a GPU with a Skyra "
            "checkpoint: [bold]skyra-stream demo --model /path/to/Skyra-RL[/]"
        )
    videos = write_demo_set(out / "videos")
    broken = out / "videos" / "broken-upload.mp4"
    broken.write_bytes(b"this upload is not a video\n" * 64)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - dev extra, demo only

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    worker: ChildProcess | None = None
    with TansuBroker(out / "logs" / "tansu.log") as broker:
        try:
            host, port = moto.get_host_and_port()
            s3_url = f"http://{host}:{port}"
            settings = Settings(
                kafka_bootstrap_servers=[broker.bootstrap],
                s3_endpoint_url=s3_url,
                s3_allowed_buckets=[BUCKET],
                ingest_topic=TOPICS["ingest"],
            )
            import boto3  # noqa: PLC0415

            boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=BUCKET)
            create_topics(broker.bootstrap, list(TOPICS.values()), partitions=2)
            console.print(f"[bold]broker[/] {broker.bootstrap}   [bold]S3[/] {s3_url}")
            worker = _worker(broker.bootstrap, s3_url, model, out / "logs" / "worker.log")
            console.print(
                "[bold]worker[/] starting (vLLM loads the model; about a minute on a CPU) ..."
            )
            worker.wait_ready(timeout_s)
            from skyra_stream.producers.tool import upload_files  # noqa: PLC0415

            events = list(
                upload_files(
                    fetch_config(settings),
                    [str(p) for p in [*videos, broken]],
                    BUCKET,
                    prefix="uploads/",
                )
            )
            list(publish(kafka_config(settings), events))
            console.print(f"[bold]produced[/] {len(events)} ingest events")
            results = _watch(console, broker.bootstrap, events, timeout_s)
            # What the topics carried, one JSON line each, for whoever reads on (jq, a test).
            with (out / "outcomes.jsonl").open("w", encoding="utf-8") as lines:
                for outcome in results.values():
                    lines.write(outcome.model_dump_json() + "\n")
            sheets = _render(
                results,
                {e.event_id: e for e in events},
                out / "sheets",
                dict(zip([e.event_id for e in events], [*videos, broken], strict=True)),
            )
        finally:
            if worker is not None:
                code = worker.stop(120)
                console.print(f"\n[bold]worker[/] stopped (exit {code})")
            moto.stop()
    missing = len(events) - len(results)
    for event in events:
        console.print(
            f"  {event.video_id}: {_summary(results.get(event.event_id))}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"[bold]evidence sheets[/] in {out / 'sheets'} ({len(sheets)} files); "
        f"verdicts and dead letters in {out / 'outcomes.jsonl'}; logs in {out / 'logs'}"
    )
    console.print(
        f"done in {time.monotonic() - started:.0f} s: {len(results)} of "
        f"{len(events)} events answered" + (f", {missing} missing" if missing else "")
    )
    return 0 if not missing else 1


def _worker(bootstrap: str, s3_url: str, model: Path, log_path: Path) -> ChildProcess:
    settings: dict[str, object] = {
        "kafka_bootstrap_servers": bootstrap,
        "group_id": "demo",
        "ingest_topic": TOPICS["ingest"],
        "verdict_topic": TOPICS["verdicts"],
        "dead_letter_topic": TOPICS["dead"],
        "s3_endpoint_url": s3_url,
        "s3_allowed_buckets": BUCKET,
        "model_path": model,
        "http_host": "127.0.0.1",
        "log_format": "json",
        "worker_id": "demo-worker",
    }
    if is_tiny_model(model):  # defaults only: SKYRA_* in the environment still win
        tiny: dict[str, object] = {
            "max_tokens": 1200,  # room for the grammar's longest form
            "guided": "regex",  # so the untrained model's answers parse
            "guided_max_text_chars": 20,
            "kv_cache_bytes": 256 << 20,
            "mm_max_pixels": 160 * 28 * 28,
            # torch.compile buys a 4 MB model nothing on a CPU and costs ~25 s of start.
            "enforce_eager": True,
            # One worker on loopback: the first group join need not wait out a long session.
            "kafka_session_timeout_ms": 6000,
        }
        settings |= {k: v for k, v in tiny.items() if f"SKYRA_{k.upper()}" not in os.environ}
    return ChildProcess("worker", log_path, settings)


def _watch(
    console: Console, bootstrap: str, events: list[IngestEvent], timeout_s: float
) -> dict[str, Verdict | DeadLetter]:
    wanted = {e.event_id: e for e in events}
    results: dict[str, Verdict | DeadLetter] = {}
    consumer = topic_reader(bootstrap, TOPICS["verdicts"], TOPICS["dead"])
    deadline = time.monotonic() + timeout_s
    try:
        with Live(_table(results, wanted), console=console, refresh_per_second=4) as live:
            while len(results) < len(wanted) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    for record in batch:
                        outcome = _decode(record.topic, record.value)
                        if outcome.event_id in wanted:
                            results[outcome.event_id] = outcome
                live.update(_table(results, wanted))
    finally:
        consumer.close()
    return results


def _decode(topic: str, value: bytes) -> Verdict | DeadLetter:
    doc: dict[str, Any] = json.loads(value)
    return (
        Verdict.model_validate(doc)
        if topic == TOPICS["verdicts"]
        else DeadLetter.model_validate(doc)
    )


def _table(results: dict[str, Verdict | DeadLetter], wanted: dict[str, IngestEvent]) -> Table:
    table = Table(title=f"verdicts ({len(results)}/{len(wanted)})", expand=False)
    for column in ("video", "label", "P(fake)", "artifacts", "latency"):
        table.add_column(column)
    for event_id, event in wanted.items():
        outcome = results.get(event_id)
        if outcome is None:
            table.add_row(event.video_id, "[dim]waiting[/]", "", "", "")
        elif isinstance(outcome, Verdict):
            color = {"fake": "red", "real": "green"}.get(outcome.label or "", "yellow")
            p = f"{outcome.fake_probability:.3f}" if outcome.fake_probability is not None else "-"
            kinds = ", ".join(sorted({a.type for a in outcome.artifacts})) or "-"
            total = outcome.timings_ms.total
            table.add_row(
                event.video_id,
                f"[{color}]{outcome.label or outcome.status}[/]",
                p,
                kinds[:60],
                f"{total / 1000:.1f} s" if total else "",
            )
        else:
            table.add_row(
                event.video_id,
                f"[magenta]dead letter: {outcome.reason.code}[/]",
                "",
                outcome.reason.message[:60],
                "",
            )
    return table


def _summary(outcome: Verdict | DeadLetter | None) -> str:
    if outcome is None:
        return "no answer in time"
    if isinstance(outcome, DeadLetter):
        return f"dead letter {outcome.reason.code}: {outcome.reason.message[:80]}"
    p = "n/a" if outcome.fake_probability is None else f"{outcome.fake_probability:.3f}"
    return f"{outcome.label or outcome.status}, P(fake) {p}, {len(outcome.artifacts)} artifact(s)"


def _render(
    results: dict[str, Verdict | DeadLetter],
    events: dict[str, IngestEvent],
    folder: Path,
    files: dict[str, Path],
) -> list[Path]:
    sheets = []
    for event_id, outcome in results.items():
        if not isinstance(outcome, Verdict) or outcome.video is None:
            continue  # a dead letter, or decided from provenance with no frames decoded
        video = sample_video(str(files[event_id]))
        name = Path(events[event_id].video_id).stem + ".png"
        sheets.append(render_sheet(video.frames, outcome, folder / name))
    return sheets
