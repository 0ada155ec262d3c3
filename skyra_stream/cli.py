"""The `skyra-stream` command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from skyra_stream import __version__
from skyra_stream.logs import configure_logging
from skyra_stream.schemas import json_schemas, openapi_spec, render, write_schemas
from skyra_stream.settings import Settings

if TYPE_CHECKING:
    from skyra_stream.analysis import Analysis, Job, Outcome, VideoInput
    from skyra_stream.policy import PolicyFile

app = typer.Typer(
    help="Grounded AI-generated-video verdicts with Skyra on vLLM.",
    no_args_is_help=True,
    add_completion=False,
)


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with every invalid variable named (the
    policy file included: a worker never starts with a policy it cannot apply)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            name = f"SKYRA_{field.upper()}" if field else "configuration"
            typer.echo(f"invalid configuration: {name}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    _policies_or_exit(settings.policy_file, "invalid configuration: SKYRA_POLICY_FILE: ")
    return settings


def _policies_or_exit(path: Path | None, prefix: str = "") -> PolicyFile:
    from skyra_stream.policy import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        typer.echo(f"{prefix}{exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker() -> None:
    """Run the streaming worker: ingest topic -> verdict and dead-letter topics.

    Configured entirely by SKYRA_* environment variables (see the README). Exits 0 after a
    graceful SIGTERM drain, 1 when the engine or Kafka fails, 2 on invalid configuration.
    """
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.api_enabled:
        require_api_auth(settings)
    from skyra_stream.runtime import run

    raise typer.Exit(run(settings, kafka=True))


@app.command()
def serve() -> None:
    """Serve the HTTP analyze API alone: POST /v1/analyze, /v1/analyze_batch, /v1/analyze_frames.

    Same SKYRA_* settings as the worker (SKYRA_MODEL_PATH, SKYRA_HTTP_HOST/PORT, SKYRA_S3_*,
    the limits) plus SKYRA_API_*. Bearer tokens (SKYRA_API_TOKENS or SKYRA_API_TOKENS_FILE)
    are optional on a loopback address and required on any other. Exits 0 after SIGTERM once
    running requests finish, 1 when the engine dies, 2 on invalid configuration.
    """
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    require_api_auth(settings)
    if settings.model_path is None and settings.engine == "vllm":
        typer.echo("invalid configuration: SKYRA_MODEL_PATH: required", err=True)
        raise typer.Exit(2)
    from skyra_stream.runtime import run

    raise typer.Exit(run(settings, kafka=False))


def require_api_auth(settings: Settings) -> None:
    """An API on a non-loopback address without tokens would let anyone spend the GPU."""
    try:
        tokens = settings.bearer_tokens()
    except OSError as exc:
        typer.echo(f"invalid configuration: SKYRA_API_TOKENS_FILE: {exc}", err=True)
        raise typer.Exit(2) from None
    if not tokens and not settings.http_is_loopback():
        typer.echo(
            f"invalid configuration: SKYRA_API_TOKENS: the API binds {settings.http_host}, "
            "not a loopback address, so bearer tokens are required "
            "(SKYRA_API_TOKENS or SKYRA_API_TOKENS_FILE)",
            err=True,
        )
        raise typer.Exit(2)


def _engine_settings(model: Path | None) -> Settings:
    settings = load_settings()
    if model is not None:
        settings = settings.model_copy(update={"model_path": model})
    if settings.worker_id is None:
        settings = settings.model_copy(update={"worker_id": "skyra-stream-cli"})
    if settings.model_path is None and settings.engine == "vllm":
        typer.echo(
            "no model: pass --model DIR or set SKYRA_MODEL_PATH "
            "(`skyra-stream tiny-model DIR` writes a tiny untrained one for trying)",
            err=True,
        )
        raise typer.Exit(1)
    return settings


@app.command()
def analyze(
    paths: Annotated[
        list[str], typer.Argument(help="Video files, folders (recursive) and s3://bucket/key URIs.")
    ],
    model: Annotated[
        Path | None, typer.Option(help="Model folder (default SKYRA_MODEL_PATH).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here, not to stdout.")] = None,
    render: Annotated[
        Path | None, typer.Option(help="Write a PNG evidence sheet per video into this folder.")
    ] = None,
) -> None:
    """Analyse videos without Kafka: one JSON line per input, a Verdict or a rejection.

    Exit codes: 0 every input got a verdict, 2 some input was rejected (the line says why,
    with the dead-letter code), 1 usage or engine error.
    """
    import hashlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from skyra_stream.inputs import collect_inputs

    try:
        sources = collect_inputs(paths)
    except FileNotFoundError as exc:
        typer.echo(f"no such file or folder: {exc}", err=True)
        raise typer.Exit(1) from None
    if not sources:
        typer.echo("no video files found", err=True)
        raise typer.Exit(1)

    from skyra_stream.errors import EngineDeadError
    from skyra_stream.render import render_sheet

    settings = _engine_settings(model)
    buckets = {s[5:].split("/", 1)[0] for s in sources if s.startswith("s3://")}
    settings = settings.model_copy(
        update={"s3_allowed_buckets": sorted(set(settings.s3_allowed_buckets) | buckets)}
    )
    configure_logging(settings.log_level if settings.log_level != "INFO" else "WARNING", "console")
    _warn_if_tiny(settings.model_path)
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    rejected = 0
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=_stderr_console(),
    )
    try:
        with progress, _analysis(settings) as analysis:
            task = progress.add_task("analysing", total=len(sources))
            # A bounded window of jobs: each line is written as its video finishes, and
            # memory does not grow with the number of inputs.
            names: dict[str, str] = {}
            for outcome in analysis.run(_cli_jobs(sources, names)):
                source = names.pop(outcome.job.event.event_id)
                sink.write(_cli_line(source, outcome) + "\n")
                sink.flush()
                progress.advance(task)
                if outcome.verdict is None:
                    rejected += 1
                elif render is not None and outcome.video is not None:
                    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
                    name = f"{Path(source).stem}-{digest}.png"
                    render_sheet(outcome.video.frames, outcome.verdict, render / name, title=source)
    except EngineDeadError as exc:
        typer.echo(f"engine failed: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if out:
            sink.close()
    raise typer.Exit(2 if rejected else 0)


@contextmanager
def _analysis(settings: Settings) -> Iterator[Analysis]:
    """The analysis path on the engine SKYRA_ENGINE names, started and closed around use."""
    from skyra_stream.analysis import Analysis
    from skyra_stream.runtime import build_engine

    engine = build_engine(settings).start()
    analysis = Analysis(settings, engine)
    try:
        yield analysis
    finally:
        analysis.close()
        engine.close()


def _cli_jobs(sources: list[str], names: dict[str, str]) -> Iterator[Job]:
    """Jobs for `sources`, lazily; `names` maps each started job's event id to its source."""
    for source in sources:
        job = _cli_job(source)
        names[job.event.event_id] = source
        yield job


def _cli_job(source: str) -> Job:
    """A command-line input as a job: `s3://` through the allowlist like an event, a local
    file or a folder of frames read directly (the operator named it)."""
    import hashlib

    from skyra_stream.analysis import FileInput, FramesFolderInput, Job, ObjectInput
    from skyra_stream.messages import IngestEvent

    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    inp: VideoInput
    if source.startswith("s3://"):
        uri, inp = source, ObjectInput(source)
    else:
        path = Path(source)
        uri = path.resolve().as_uri()
        inp = FramesFolderInput(path) if path.is_dir() else FileInput(path)
    return Job(IngestEvent(event_id=f"cli-{digest}", video_id=source[-512:], uri=uri), inp)


def _cli_line(source: str, outcome: Outcome) -> str:
    """A verdict, or a rejection with the dead-letter code, as one JSON line."""
    from skyra_stream.messages import ErrorReason, Rejection
    from skyra_stream.verdicts import dead_letter_code

    if outcome.verdict is not None:
        return outcome.verdict.model_dump_json()
    assert outcome.error is not None
    reason = ErrorReason(code=dead_letter_code(outcome.error), message=outcome.error.message)
    return Rejection(source=source, error=reason).model_dump_json()


def _stderr_console() -> Console:
    return Console(stderr=True)


def _warn_if_tiny(model: Path | None) -> None:
    from skyra_stream.tiny_model import is_tiny_model

    if model is not None and is_tiny_model(model):
        typer.echo(
            "note: this is the tiny UNTRAINED test model; its verdicts are random. "
            "Point --model at a real Skyra checkpoint (e.g. /path/to/Skyra-RL) on a GPU.",
            err=True,
        )


@app.command()
def produce(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Local videos or folders to upload and announce.")
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option(help="Upload bucket (default: the first of SKYRA_S3_ALLOWED_BUCKETS)."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Key prefix for uploads.")] = "",
    from_s3: Annotated[
        str | None,
        typer.Option("--from", help="Announce every object under this s3://bucket/prefix."),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="At most this many events per second.")] = None,
    topic: Annotated[
        str | None, typer.Option(help="Ingest topic (default SKYRA_INGEST_TOPIC).")
    ] = None,
) -> None:
    """Publish ingest events to Kafka and print each one sent (one JSON line per event)."""
    from skyra_stream.producers.tool import list_prefix, publish, upload_files

    settings = load_settings()
    if topic:
        settings = settings.model_copy(update={"ingest_topic": topic})
    if not paths and not from_s3:
        typer.echo("give local PATHS to upload, or --from s3://bucket/prefix", err=True)
        raise typer.Exit(1)
    target = bucket or (settings.s3_allowed_buckets[0] if settings.s3_allowed_buckets else None)
    if paths and not target:
        typer.echo("no bucket: pass --bucket or set SKYRA_S3_ALLOWED_BUCKETS", err=True)
        raise typer.Exit(1)
    try:
        events = list(upload_files(settings, paths, target, prefix)) if paths and target else []
        if from_s3:
            events.extend(list_prefix(settings, from_s3))
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"cannot produce: {exc}", err=True)
        raise typer.Exit(1) from None
    sent = 0
    for event in publish(settings, events, rate):
        typer.echo(event.model_dump_json(exclude_none=True))
        sent += 1
    typer.echo(f"sent {sent} events to {settings.ingest_topic}", err=True)


@app.command()
def demo(
    model: Annotated[
        Path | None,
        typer.Option(
            help="A real Skyra checkpoint (GPU); the tiny untrained model is built when omitted."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where videos, sheets and logs go.")] = Path("demo-out"),
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the worker and verdicts.")
    ] = 300.0,
) -> None:
    """Run the whole pipeline on this machine: broker, S3, worker, live verdicts, sheets.

    Needs no GPU and no services (the broker and S3 run on loopback and are stopped at the
    end). Exit code 0 when every event got its verdict or dead letter.
    """
    from skyra_stream.devstack.demo import run_demo

    configure_logging("WARNING", "console")
    raise typer.Exit(run_demo(out, model, timeout))


@app.command("eval")
def evaluate(
    out: Annotated[Path, typer.Option(help="Folder for predictions, metrics and charts.")],
    bench_root: Annotated[
        Path | None, typer.Option(help="ViF-Bench root: Real/ and one folder per generator.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model folder (default SKYRA_MODEL_PATH).")
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(help="Score this predictions file (ours, or the reference JSON) instead."),
    ] = None,
) -> None:
    """Evaluate on ViF-Bench: paired balanced accuracy, fake recall and fake F1 per generator.

    Resumable: predictions go to OUT/predictions.jsonl as they come, and a rerun skips the
    clips already there. Writes metrics.json, metrics.csv and a bar chart per metric.
    """
    from skyra_stream.evaluation import (
        METRICS,
        Checkpoint,
        Prediction,
        discover,
        read_predictions,
        score,
        write_report,
    )

    if predictions is None and bench_root is None:
        typer.echo("give --bench-root (run the model) or --predictions (score a file)", err=True)
        raise typer.Exit(1)
    if predictions is None:
        assert bench_root is not None
        checkpoint = Checkpoint(out / "predictions.jsonl")
        try:
            clips = [
                c for c in discover(bench_root) if (c.source, c.clip_id) not in checkpoint.done
            ]
        except FileNotFoundError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        if clips:
            settings = _engine_settings(model)
            _warn_if_tiny(settings.model_path)
            by_path = {str(c.path): c for c in clips}
            with _analysis(settings) as analysis:
                # Streams like `analyze`: predictions are appended as clips finish, so a
                # run over thousands of clips holds a bounded window of frames, and a
                # crash loses only what was in that window.
                names: dict[str, str] = {}
                for outcome in analysis.run(_cli_jobs(list(by_path), names)):
                    clip = by_path[names.pop(outcome.job.event.event_id)]
                    verdict = outcome.verdict
                    checkpoint.append(
                        Prediction(
                            source=clip.source,
                            clip_id=clip.clip_id,
                            label=verdict.label if verdict else None,
                            fake_probability=verdict.fake_probability if verdict else None,
                        )
                    )
        predictions = checkpoint.path
    scores, means = score(read_predictions(predictions))
    written = write_report(scores, means, out)
    for s in scores:
        typer.echo(
            f"{s.generator:<28} pairs={s.pairs:<5} "
            + "  ".join(f"{m}={getattr(s, m) * 100:6.2f}" for m in METRICS)
        )
    typer.echo(f"{'mean':<28} {'':11}" + "  ".join(f"{m}={means[m] * 100:6.2f}" for m in METRICS))
    typer.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


@app.command()
def schema(
    write: Annotated[
        Path | None, typer.Option(help="Write one file per message into this folder.")
    ] = None,
    openapi: Annotated[
        Path | None, typer.Option(help="Also write the HTTP API's OpenAPI document here.")
    ] = None,
) -> None:
    """Print the JSON Schemas of ingest events, verdicts and dead letters."""
    if openapi is not None:
        openapi.parent.mkdir(parents=True, exist_ok=True)
        openapi.write_text(render(openapi_spec()), encoding="utf-8")
        typer.echo(str(openapi))
    if write is not None:
        for path in write_schemas(write):
            typer.echo(str(path))
    if write is not None or openapi is not None:
        return
    for filename, doc in json_schemas().items():
        sys.stdout.write(f"# {filename}\n{render(doc)}")


@app.command()
def inspect(
    paths: Annotated[list[Path], typer.Argument(help="Video files to sample.", exists=True)],
) -> None:
    """Sample each video as the model would see it and print one JSON line per file.

    Shows the 16 timestamps, the displayed size and codec, or the dead-letter code the
    worker would give the file. Exit code 0 when every file decoded, 2 otherwise.
    """
    import json

    from skyra_stream.errors import SkyraError
    from skyra_stream.frames import sample_video

    limits = load_settings().decode_limits()
    failed = False
    for path in paths:
        try:
            video = sample_video(str(path), limits)
        except SkyraError as exc:
            failed = True
            record = {
                "source": str(path),
                "status": "rejected",
                "error": {"code": exc.code.value, "message": exc.message},
            }
        else:
            h, w = video.frames[0].shape[:2]
            record = {
                "source": str(path),
                "status": "ok",
                "frame_size": [w, h],
                "video": video.info.model_dump(),
            }
        typer.echo(json.dumps(record))
    raise typer.Exit(2 if failed else 0)


@app.command("samples")
def samples_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample videos into.")],
) -> None:
    """Write a handful of small synthetic videos (several codecs and containers)."""
    from skyra_stream.samples import write_demo_set

    for path in write_demo_set(out):
        typer.echo(str(path))


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the model into.")],
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
) -> None:
    """Write a tiny random-weight Qwen2.5-VL that vLLM loads on a CPU (tests, demo).

    Its answers are noise; it exercises the whole pipeline, not the detector.
    """
    from skyra_stream.tiny_model import build_tiny_model

    build_tiny_model(out, seed=seed)
    typer.echo(f"wrote tiny random-weight Qwen2.5-VL to {out}")


@app.command()
def reviews() -> None:
    """Run the review loop: review events (SKYRA_REVIEW_RESULTS_TOPIC) are checked and
    appended to SKYRA_AUDIT_TOPIC, linked to their verdict; a malformed one becomes an
    `invalid_review` dead letter. Exits 0 after SIGTERM, 1 on a Kafka failure."""
    import signal

    from skyra_stream.consumers.reviews import ReviewWorker

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    worker = ReviewWorker(settings)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    raise typer.Exit(worker.run())


@app.command("export-sft")
def export_sft_cmd(
    reviews: Annotated[
        Path, typer.Option(help="Audit records, one JSON per line (a dump of the audit topic).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for reviews.jsonl, frames and dataset_info.")],
) -> None:
    """Turn reviewed verdicts into SFT records for k8s/training (LLaMA-Factory sharegpt).

    Each record's frames are sampled again from the verdict's source, through the same
    allowlist and limits as the worker (SKYRA_S3_*, SKYRA_LOCAL_ROOTS), and must have the
    verdict's timestamps. Exit 0 when every record was written, 2 when some were skipped.
    """
    from skyra_stream.fetch import ObjectFetcher
    from skyra_stream.frames import sample_video
    from skyra_stream.messages import AuditRecord
    from skyra_stream.reviews import export_sft

    settings = load_settings()
    fetcher = ObjectFetcher(settings)
    limits = settings.decode_limits()

    def frames_of(record: AuditRecord) -> tuple[list[Any], list[float]]:
        source = record.review.verdict.source
        with fetcher.fetch(source.uri, version_id=source.version_id) as obj:
            video = sample_video(obj.body, limits)
        return list(video.frames), video.timestamps_s

    records, bad = [], 0
    with reviews.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    records.append(AuditRecord.model_validate_json(line))
                except ValidationError as exc:
                    bad += 1
                    typer.echo(
                        f"{reviews}:{n}: not an audit record: {exc.errors()[0]['msg']}", err=True
                    )
    result = export_sft(records, out, frames_of)
    for review_id, why in result.skipped.items():
        typer.echo(f"skipped {review_id}: {why}", err=True)
    typer.echo(f"wrote {result.written} records to {out / 'reviews.jsonl'}")
    raise typer.Exit(2 if result.skipped or bad else 0)


policy_app = typer.Typer(help="Check a policy file, or see what it would decide.")
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="Policy file (YAML or JSON).")],
) -> None:
    """Validate a policy file exactly as the worker does at start. Exit 0 valid, 2 not."""
    policies = _policies_or_exit(file)
    rules = len(policies.default.rules) + sum(len(p.rules) for p in policies.tenants.values())
    typer.echo(
        f"{file}: version {policies.version}, {len(policies.tenants)} tenant policies, "
        f"{rules} rules: valid"
    )


@policy_app.command("test")
def policy_test(
    file: Annotated[Path, typer.Argument(help="Policy file to try.")],
    verdicts: Annotated[Path, typer.Argument(help="Past verdicts, one JSON per line.")],
) -> None:
    """Replay past verdicts under FILE: one JSON line per verdict with the action it got
    then and the one FILE gives, and a summary of the changes on stderr. Each verdict is
    decided from the inputs its decision recorded (its tenant and provenance included)."""
    import json
    from collections import Counter

    from skyra_stream.messages import Verdict
    from skyra_stream.policy import decide, inputs_of

    policies = _policies_or_exit(file)
    changes: Counter[tuple[str | None, str]] = Counter()
    bad = 0
    with verdicts.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                verdict = Verdict.model_validate_json(line)
            except ValidationError as exc:
                bad += 1
                typer.echo(f"{verdicts}:{n}: not a verdict: {exc.errors()[0]['msg']}", err=True)
                continue
            before = verdict.decision
            tenant = before.inputs.tenant if before else None
            after = decide(policies, inputs_of(verdict, tenant))
            was: str | None = before.action if before else None
            changes[(was, after.action)] += 1
            record = {
                "event_id": verdict.event_id,
                "tenant": tenant,
                "was": was,
                "now": after.action,
                "rule": after.rule,
                "policy_id": after.policy_id,
            }
            typer.echo(json.dumps(record))
    for (was, now), count in sorted(changes.items(), key=lambda kv: -kv[1]):
        typer.echo(f"{was or 'none'} -> {now}: {count}", err=True)
    if bad:
        typer.echo(f"{bad} lines were not verdicts", err=True)
    raise typer.Exit(2 if bad else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
