"""The `skyra-stream` command line: the services (worker, serve, reviews), the demo, the
producer and `analyze`. Each command parses its arguments and calls one function of its
stage; the offline commands (eval, schema, export-sft, policy, ...) are in `cli_offline`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from skyra_stream import __version__
from skyra_stream.cli_offline import (
    commands,
    docs,
    engine_settings,
    load_settings,
    ops_app,
    policy_app,
    start_logging,
    warn_if_tiny,
)
from skyra_stream.logs import configure_logging
from skyra_stream.settings import Settings

if TYPE_CHECKING:
    from skyra_stream.decisions.receipts import ReceiptSigner

app = typer.Typer(
    help="Grounded AI-generated-video verdicts with Skyra on vLLM.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def worker() -> None:
    """Run the streaming worker: ingest topic -> verdict and dead-letter topics.

    Configured entirely by SKYRA_* environment variables (docs/reference/configuration.md).
    Exits 0 after a graceful SIGTERM drain, 1 when the engine or Kafka fails, 2 on invalid
    configuration.
    """
    settings = load_settings()
    start_logging(settings)
    if settings.api_enabled:
        require_api_auth(settings)
    receipt_key_or_exit(settings)
    from skyra_stream.runtime.process import run

    raise typer.Exit(run(settings, kafka=True))


def receipt_key_or_exit(settings: Settings) -> ReceiptSigner | None:
    """The receipt signer (None: receipts off); a key and certificate that cannot sign:
    exit 2 with the reason, before anything starts."""
    from skyra_stream.decisions.receipts import ReceiptError
    from skyra_stream.runtime.wiring import receipt_signer

    try:
        return receipt_signer(settings)
    except ReceiptError as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve() -> None:
    """Serve the HTTP analyze API alone: POST /v1/analyze, /v1/analyze_batch, /v1/analyze_frames.

    Same SKYRA_* settings as the worker (SKYRA_MODEL_PATH, SKYRA_HTTP_HOST/PORT, SKYRA_S3_*,
    the limits) plus SKYRA_API_*. Bearer tokens (SKYRA_API_TOKENS or SKYRA_API_TOKENS_FILE)
    are optional on a loopback address and required on any other. Exits 0 after SIGTERM once
    running requests finish, 1 when the engine dies, 2 on invalid configuration.
    """
    settings = load_settings()
    start_logging(settings)
    require_api_auth(settings)
    receipt_key_or_exit(settings)
    if settings.model_path is None and settings.engine == "vllm":
        typer.echo("invalid configuration: SKYRA_MODEL_PATH: required", err=True)
        raise typer.Exit(2)
    from skyra_stream.runtime.process import run

    raise typer.Exit(run(settings, kafka=False))


def require_api_auth(settings: Settings) -> None:
    """An API on a non-loopback address without tokens would let anyone spend the GPU."""
    from skyra_stream.api.guards import ApiTokens

    try:
        tokens = settings.bearer_tokens()
        ApiTokens.parse(tokens, rate_per_s=settings.api_rate_per_s, burst=settings.api_burst)
    except (OSError, ValueError) as exc:
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


@app.command()
def webhooks() -> None:
    """Deliver outcomes as signed webhooks: read the verdict and dead-letter topics, record
    async jobs' outcomes (SKYRA_JOBS_STORE_URL), POST each outcome whose event has a callback
    (Standard Webhooks, the tenant's secret from SKYRA_WEBHOOK_TENANTS_FILE); a delivery that
    never lands is a webhook_failed record. Exits 0 after SIGTERM, 1 on a Kafka failure,
    2 on invalid configuration."""
    from pydantic import ValidationError as Invalid

    from skyra_stream.runtime.process import run_with_probes
    from skyra_stream.runtime.wiring import build_webhook_loop

    settings = load_settings()
    start_logging(settings)
    try:
        loop = build_webhook_loop(settings)
    except (OSError, ValueError, Invalid) as exc:
        typer.echo(f"invalid configuration: SKYRA_WEBHOOK_TENANTS_FILE: {exc}", err=True)
        raise typer.Exit(2) from None
    # /healthz, /readyz (partitions assigned), /metrics
    raise typer.Exit(run_with_probes(settings, loop))


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
    receipts: Annotated[
        Path | None,
        typer.Option(
            help="Write a signed C2PA receipt (<name>.c2pa) per verdict of a local file into "
            "this folder (SKYRA_RECEIPT_KEY_FILE and SKYRA_RECEIPT_CERT_FILE)."
        ),
    ] = None,
) -> None:
    """Analyse videos without Kafka: one JSON line per input, a Verdict or a rejection.

    Exit codes: 0 every input got a verdict, 2 some input was rejected (the line says why,
    with the dead-letter code), 1 usage or engine error.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from skyra_stream.media.inputs import collect_inputs

    try:
        sources = collect_inputs(paths)
    except FileNotFoundError as exc:
        typer.echo(f"no such file or folder: {exc}", err=True)
        raise typer.Exit(1) from None
    if not sources:
        typer.echo("no video files found", err=True)
        raise typer.Exit(1)

    from skyra_stream.errors import EngineDeadError
    from skyra_stream.runtime.local import analysis_session, analyze_sources

    settings = engine_settings(model)
    buckets = {s[5:].split("/", 1)[0] for s in sources if s.startswith("s3://")}
    settings = settings.model_copy(
        update={"s3_allowed_buckets": sorted(set(settings.s3_allowed_buckets) | buckets)}
    )
    configure_logging(settings.log_level if settings.log_level != "INFO" else "WARNING", "console")
    signing = receipts_or_exit(settings, receipts)
    warn_if_tiny(settings.model_path)
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=Console(stderr=True),
    )
    try:
        with progress, analysis_session(settings) as analysis:
            task = progress.add_task("analysing", total=len(sources))
            rejected = analyze_sources(
                analysis,
                sources,
                sink,
                sheets=render,
                receipts=signing,
                advance=lambda: progress.advance(task),
            )
    except EngineDeadError as exc:
        typer.echo(f"engine failed: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if out:
            sink.close()
    raise typer.Exit(2 if rejected else 0)


def receipts_or_exit(settings: Settings, folder: Path | None) -> tuple[Path, ReceiptSigner] | None:
    """The receipts folder and signer for `analyze --receipts`, or exit 2 with the reason."""
    if folder is None:
        return None
    signer = receipt_key_or_exit(settings)
    if signer is None:
        typer.echo(
            "invalid configuration: --receipts needs SKYRA_RECEIPT_KEY_FILE and "
            "SKYRA_RECEIPT_CERT_FILE",
            err=True,
        )
        raise typer.Exit(2)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, signer


receipt_app = typer.Typer(help="Signed verdict receipts (C2PA sidecars; docs/receipts.md).")


@receipt_app.command("verify")
def receipt_verify(
    video: Annotated[Path, typer.Argument(help="The video the receipt is about.")],
    receipt: Annotated[Path, typer.Option("--receipt", help="The receipt (.c2pa sidecar).")],
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="PEM bundle of the receipt signers' roots you trust."),
    ] = None,
    label: Annotated[
        str, typer.Option(help="The verdict assertion's label (the platform's own).")
    ] = "org.skyra-stream.verdict",
) -> None:
    """Check a receipt against the video's bytes: prints valid, untrusted or invalid and the
    verdict it carries. Exit codes: 0 valid, 1 untrusted, 2 invalid."""
    import json

    from skyra_stream.decisions.receipts import verify_receipt

    try:
        anchors = trust.read_text(encoding="ascii") if trust else None
        with video.open("rb") as body:
            check = verify_receipt(
                body, receipt.read_bytes(), trust_anchors_pem=anchors, label=label
            )
    except OSError as exc:
        typer.echo(f"cannot read: {exc}", err=True)
        raise typer.Exit(2) from None
    codes = f" ({', '.join(check.codes)})" if check.codes else ""
    typer.echo(f"{check.state}{codes}")
    if check.signer:
        typer.echo(f"signer: {check.signer}")
    if check.manifest_id:
        typer.echo(f"manifest: {check.manifest_id}")
    if check.ingredient_manifest:
        typer.echo(f"the upload's own manifest: {check.ingredient_manifest}")
    if check.assertion is not None:
        typer.echo(json.dumps(check.assertion.model_dump(mode="json"), indent=2))
    raise typer.Exit({"valid": 0, "untrusted": 1, "invalid": 2}[check.state])


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
    from skyra_stream.runtime.configs import fetch_config, kafka_config

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
        fetch = fetch_config(settings)
        events = list(upload_files(fetch, paths, target, prefix)) if paths and target else []
        if from_s3:
            events.extend(list_prefix(fetch, from_s3))
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"cannot produce: {exc}", err=True)
        raise typer.Exit(1) from None
    sent = 0
    for event in publish(kafka_config(settings), events, rate):
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


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


reviews_app = typer.Typer(
    invoke_without_command=True,
    help="Run the review loop (no subcommand), or report on the audit trail (`stats`).",
)


@reviews_app.callback()
def reviews(ctx: typer.Context) -> None:
    """Run the review loop: review events (SKYRA_REVIEW_RESULTS_TOPIC) are checked and
    appended to SKYRA_AUDIT_TOPIC, linked to their verdict; a malformed one becomes an
    `invalid_review` dead letter. Exits 0 after SIGTERM, 1 on a Kafka failure."""
    if ctx.invoked_subcommand is not None:
        return
    from skyra_stream.consumers.review_loop import ReviewLoop
    from skyra_stream.runtime.configs import kafka_config
    from skyra_stream.runtime.process import run_with_probes
    from skyra_stream.runtime.wiring import review_tickets

    settings = load_settings()
    start_logging(settings)
    tickets = review_tickets(settings)
    if tickets is None:
        typer.echo("invalid configuration: SKYRA_REVIEW_TICKET_KEY: required", err=True)
        raise typer.Exit(2)
    worker = ReviewLoop(kafka_config(settings), tickets=tickets)
    # /healthz, /readyz, /metrics (skyra_review_results: failed tickets page security)
    raise typer.Exit(run_with_probes(settings, worker))


@reviews_app.command("stats")
def reviews_stats(
    audit: Annotated[
        list[Path], typer.Option("--audit", help="JSON lines of the audit topic (repeatable).")
    ],
) -> None:
    """Per reviewer and per model version: reviews, overturn rate, agreement with the model,
    median time from verdict to review."""
    from skyra_stream.decisions.training_export import read_audit_records
    from skyra_stream.evaluation.review_stats import render, review_stats

    records = []
    for path in audit:
        found, problems = read_audit_records(path)
        records += found
        for problem in problems:
            typer.echo(problem, err=True)
    if not records:
        typer.echo("no audit records", err=True)
        raise typer.Exit(1)
    typer.echo(render(review_stats(records)))


@app.command("review-console")
def review_console() -> None:
    """Bridge the review topic to Label Studio: one task per verdict sent to review, with the
    model's answer pre-loaded; reviewers' annotations come back (Label Studio's webhook and a
    catch-up poll) as review events on SKYRA_REVIEW_RESULTS_TOPIC. Exits 0 after SIGTERM,
    1 on a failure, 2 on a configuration error."""
    from pydantic import ValidationError as Invalid

    from skyra_stream.api.label_studio_hooks import label_studio_router
    from skyra_stream.runtime.process import run_with_probes
    from skyra_stream.runtime.wiring import build_review_console

    settings = load_settings()
    start_logging(settings)
    try:
        console = build_review_console(settings)
    except (ValueError, Invalid) as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    secret = settings.review_console_webhook_secret
    routers = [label_studio_router(secret.get_secret_value(), console.notify)] if secret else []
    # /healthz, /readyz (project ready, partitions assigned), /metrics, and the webhook
    raise typer.Exit(run_with_probes(settings, console, routers))


# The offline commands, on the same app (one `skyra-stream --help`).
app.registered_commands.extend(commands.registered_commands)
app.add_typer(policy_app, name="policy")
app.add_typer(ops_app, name="ops")
app.add_typer(receipt_app, name="receipt")
app.command("docs")(docs)
app.add_typer(reviews_app, name="reviews")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
