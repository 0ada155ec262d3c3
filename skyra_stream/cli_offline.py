"""The `skyra-stream` commands that touch no topic and run no service: evaluation, schemas,
inspecting and making sample videos, the tiny model, training export and policy files; and
the settings loader every command shares. Each command parses its arguments and calls one
function of its stage (`skyra_stream.cli` adds these to the one `skyra-stream` app)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from skyra_stream.schemas import json_schemas, openapi_spec, render, write_schemas
from skyra_stream.settings import Settings

if TYPE_CHECKING:
    from skyra_stream.decisions.policy import PolicyFile

commands = typer.Typer()
policy_app = typer.Typer(help="Check a policy file, or see what it would decide.")


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
    policies_or_exit(settings.policy_file, "invalid configuration: SKYRA_POLICY_FILE: ")
    return settings


def policies_or_exit(path: Path | None, prefix: str = "") -> PolicyFile:
    from skyra_stream.decisions.policy import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        typer.echo(f"{prefix}{exc}", err=True)
        raise typer.Exit(2) from None


def engine_settings(model: Path | None) -> Settings:
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


def warn_if_tiny(model: Path | None) -> None:
    from skyra_stream.model.tiny_model import is_tiny_model

    if model is not None and is_tiny_model(model):
        typer.echo(
            "note: this is the tiny UNTRAINED test model; its verdicts are random. "
            "Point --model at a real Skyra checkpoint (e.g. /path/to/Skyra-RL) on a GPU.",
            err=True,
        )


@commands.command("eval")
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
    from skyra_stream.evaluation.vifbench import (
        METRICS,
        Checkpoint,
        pending_clips,
        predict,
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
            clips = pending_clips(bench_root, checkpoint)
        except FileNotFoundError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        if clips:
            from skyra_stream.runtime.local import analysis_session

            settings = engine_settings(model)
            warn_if_tiny(settings.model_path)
            with analysis_session(settings) as analysis:
                predict(analysis, clips, checkpoint)
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


@commands.command()
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


@commands.command()
def inspect(
    paths: Annotated[list[Path], typer.Argument(help="Video files to sample.", exists=True)],
) -> None:
    """Sample each video as the model would see it and print one JSON line per file.

    Shows the 16 timestamps, the displayed size and codec, or the dead-letter code the
    worker would give the file. Exit code 0 when every file decoded, 2 otherwise.
    """
    import json

    from skyra_stream.media.decode import describe
    from skyra_stream.runtime.configs import decode_limits

    limits = decode_limits(load_settings())
    failed = False
    for path in paths:
        record = describe(path, limits)
        failed = failed or record["status"] != "ok"
        typer.echo(json.dumps(record))
    raise typer.Exit(2 if failed else 0)


@commands.command("samples")
def samples_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample videos into.")],
) -> None:
    """Write a handful of small synthetic videos (several codecs and containers)."""
    from skyra_stream.media.samples import write_demo_set

    for path in write_demo_set(out):
        typer.echo(str(path))


@commands.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the model into.")],
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
) -> None:
    """Write a tiny random-weight Qwen2.5-VL that vLLM loads on a CPU (tests, demo).

    Its answers are noise; it exercises the whole pipeline, not the detector.
    """
    from skyra_stream.model.tiny_model import build_tiny_model

    build_tiny_model(out, seed=seed)
    typer.echo(f"wrote tiny random-weight Qwen2.5-VL to {out}")


@commands.command("export-sft")
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
    from skyra_stream.decisions.training_export import export_audit_file
    from skyra_stream.media.fetch import ObjectFetcher
    from skyra_stream.runtime.configs import decode_limits, fetch_config

    settings = load_settings()
    fetcher = ObjectFetcher(fetch_config(settings))
    result, problems = export_audit_file(reviews, out, fetcher, decode_limits(settings))
    for problem in problems:
        typer.echo(problem, err=True)
    for review_id, why in result.skipped.items():
        typer.echo(f"skipped {review_id}: {why}", err=True)
    typer.echo(f"wrote {result.written} records to {out / 'reviews.jsonl'}")
    raise typer.Exit(2 if result.skipped or problems else 0)


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="Policy file (YAML or JSON).")],
) -> None:
    """Validate a policy file exactly as the worker does at start. Exit 0 valid, 2 not."""
    policies = policies_or_exit(file)
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

    from skyra_stream.decisions.policy import replay

    policies = policies_or_exit(file)
    changes: Counter[tuple[str | None, str]] = Counter()
    bad = 0
    for _line, item in replay(policies, verdicts):
        if isinstance(item, str):
            bad += 1
            typer.echo(item, err=True)
            continue
        changes[(item["was"], item["now"])] += 1
        typer.echo(json.dumps(item))
    for (was, now), count in sorted(changes.items(), key=lambda kv: -kv[1]):
        typer.echo(f"{was or 'none'} -> {now}: {count}", err=True)
    if bad:
        typer.echo(f"{bad} lines were not verdicts", err=True)
    raise typer.Exit(2 if bad else 0)
