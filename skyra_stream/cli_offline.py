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
    calibration_or_exit(settings)
    return settings


def start_logging(settings: Settings) -> None:
    """Logging as the settings say, then a warning for each SKYRA_* variable no setting
    reads (a misspelt name in a manifest, whose default would apply silently)."""
    import os

    import structlog

    from skyra_stream.logs import configure_logging
    from skyra_stream.settings import unknown_variables

    configure_logging(settings.log_level, settings.log_format)
    for name, nearest in unknown_variables(os.environ).items():
        structlog.get_logger(__name__).warning(
            "unknown_setting", variable=name, nearest=nearest, hint="no setting reads it"
        )


def calibration_or_exit(settings: Settings) -> None:
    """A calibration made for another model stops the process before it serves anything."""
    from skyra_stream.decisions.calibration import CalibrationError
    from skyra_stream.runtime.wiring import calibration

    try:
        calibration(settings)
    except CalibrationError as exc:
        typer.echo(f"invalid configuration: SKYRA_CALIBRATION_FILE: {exc}", err=True)
        raise typer.Exit(2) from None


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
    from skyra_stream.evaluation.calibration_fit import write_raw_reliability

    png, raw_ece = write_raw_reliability(predictions, out)
    written += [out / "reliability.json", png]
    for s in scores:
        typer.echo(
            f"{s.generator:<28} pairs={s.pairs:<5} "
            + "  ".join(f"{m}={getattr(s, m) * 100:6.2f}" for m in METRICS)
        )
    typer.echo(f"{'mean':<28} {'':11}" + "  ".join(f"{m}={means[m] * 100:6.2f}" for m in METRICS))
    if raw_ece is not None:
        typer.echo(f"raw P(fake): ECE {raw_ece:.3f} (15 equal-width bins; see reliability.png)")
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


@commands.command("calibrate")
def calibrate_cmd(
    predictions: Annotated[
        list[Path], typer.Option(help="`skyra-stream eval` predictions.jsonl (repeatable).")
    ],
    model: Annotated[str, typer.Option(help="NAME[@REVISION] of the model the scores are of.")],
    out: Annotated[Path, typer.Option(help="The calibration file to write (and a .png).")],
    audit: Annotated[
        list[Path] | None, typer.Option(help="Audit records (reviewed verdicts), repeatable.")
    ] = None,
    method: Annotated[str, typer.Option(help="temperature (default) or isotonic.")] = (
        "temperature"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the fit/held-out split.")] = 0,
) -> None:
    """Fit a calibration of P(fake) for one model on labelled scores, measured on a held-out
    30 % split (stratified by source): ECE, Brier and log loss before and after, overall and
    per source. Last line: `calibration method=.. temperature=.. ece_before=.. ece_after=.. n=..`.
    Exit 0 written, 2 when the data cannot support a fit."""
    from skyra_stream.decisions.calibration import CalibrationError, parse_model
    from skyra_stream.evaluation.calibration_fit import (
        NotEnoughData,
        summary_line,
        write_calibration,
    )
    from skyra_stream.evaluation.labelled import read_labelled

    if method not in ("temperature", "isotonic"):
        typer.echo(f"--method {method!r}: temperature or isotonic", err=True)
        raise typer.Exit(2)
    try:
        data = read_labelled(predictions, audit or [])
        calibration, png = write_calibration(
            data,
            parse_model(model),
            out,
            "isotonic" if method == "isotonic" else "temperature",
            seed,
        )
    except (OSError, CalibrationError, NotEnoughData) as exc:
        typer.echo(f"cannot calibrate: {exc}", err=True)
        raise typer.Exit(2) from None
    for problem in data.problems:
        typer.echo(problem, err=True)
    typer.echo(f"{'source':<28} {'n':>6} {'ece':>13} {'brier':>13} {'log loss':>13}")
    rows = [("all", calibration.overall), *calibration.by_source.items()]
    for name, g in rows:
        typer.echo(
            f"{name:<28} {g.before.n:>6} {g.before.ece:>6.3f}->{g.after.ece:<6.3f}"
            f"{g.before.brier:>6.3f}->{g.after.brier:<6.3f}"
            f"{g.before.log_loss:>6.3f}->{g.after.log_loss:<6.3f}"
        )
    typer.echo(
        f"wrote {out} and {png}; {data.scored and len(data.records) - len(data.scored)} "
        "records without a probability left out",
        err=True,
    )
    typer.echo(summary_line(calibration))


@commands.command("calibrate-check")
def calibrate_check(
    file: Annotated[Path, typer.Argument(help="A calibration file.")],
    model: Annotated[
        str | None,
        typer.Option(help="NAME[@REVISION] to check against (default: the served model)."),
    ] = None,
) -> None:
    """Validate a calibration file as the worker does at start. Exit 0 valid, 2 not."""
    from skyra_stream.decisions.calibration import CalibrationError, load_calibration, parse_model
    from skyra_stream.runtime.wiring import model_info

    try:
        target = parse_model(model) if model else model_info(load_settings())
        calibration = load_calibration(file, target)
    except CalibrationError as exc:
        typer.echo(f"{exc}", err=True)
        raise typer.Exit(2) from None
    o = calibration.overall
    typer.echo(
        f"{file}: {calibration.method} for {target.name}@{target.revision or '-'}, held-out "
        f"ECE {o.before.ece:.3f} -> {o.after.ece:.3f} (n={o.after.n}): valid"
    )


@policy_app.command("tune")
def policy_tune(
    file: Annotated[Path, typer.Argument(help="Policy file to tune.")],
    labels: Annotated[
        list[Path], typer.Option(help="Labelled scores: eval predictions or audit records.")
    ],
    target_precision: Annotated[float, typer.Option(help="Precision `block` must show.")] = 0.95,
    max_review_rate: Annotated[float, typer.Option(help="Largest share sent to review.")] = 0.10,
    tenant: Annotated[str | None, typer.Option(help="Tune this tenant's policy.")] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration in force (default SKYRA_CALIBRATION_FILE).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the tuned policy goes.")] = None,
) -> None:
    """Pick the lowest block threshold whose precision's 95 % lower bound meets the target,
    and a review band under it sized by the maximum review rate; write the tuned policy (a
    new version), print the table and the diff, and a precision-recall PNG beside it. Exit 0
    tuned, 2 when the labels cannot show the target (it says how many more would)."""
    import difflib
    import json

    import yaml

    from skyra_stream.decisions.calibration import CalibrationFile
    from skyra_stream.evaluation.labelled import read_labelled
    from skyra_stream.evaluation.thresholds import precision_recall_png, tune, tuned_policy

    policies = policies_or_exit(file)
    if tenant is not None and tenant not in policies.tenants:
        typer.echo(f"{file}: no tenant {tenant!r}", err=True)
        raise typer.Exit(2)
    path = calibration or Settings().calibration_file
    mapping = None
    if path is not None:
        mapping = CalibrationFile.model_validate_json(path.read_bytes())
    is_audit = [p for p in labels if _looks_like_audit(p)]
    data = read_labelled([p for p in labels if p not in is_audit], is_audit)
    result = tune(
        data.records, target_precision, max_review_rate, mapping.apply if mapping else lambda p: p
    )
    typer.echo(
        f"{'t':>6} {'blocked':>8} {'precision':>9} {'95% CI':>15} {'recall':>7} {'share':>6}"
    )
    for r in result.rows:
        if r.blocked:
            typer.echo(
                f"{r.threshold:>6.3f} {r.blocked:>8} {r.precision:>9.3f} "
                f"[{r.low:.3f}, {r.high:.3f}] {r.recall:>7.3f} {r.share_blocked:>6.3f}"
            )
    target = out or file.with_name(file.stem + ".tuned.yaml")
    png = precision_recall_png(
        result.rows, target_precision, result.block, target.with_suffix(".png")
    )
    typer.echo(result.message, err=True)
    if result.block is None:
        raise typer.Exit(2)
    new = tuned_policy(policies, tenant, result.block, result.review)
    before = yaml.safe_dump(
        json.loads(policies.model_dump_json(exclude_none=True)), sort_keys=False
    )
    after = yaml.safe_dump(json.loads(new.model_dump_json(exclude_none=True)), sort_keys=False)
    target.write_text(after, encoding="utf-8")
    sys.stdout.writelines(
        difflib.unified_diff(
            before.splitlines(True), after.splitlines(True), str(file), str(target)
        )
    )
    typer.echo(
        f"tuned block={result.block} review={result.review} share_review={result.share_review:.3f}"
        f" wrote {target} and {png}",
        err=True,
    )


def _looks_like_audit(path: Path) -> bool:
    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    return '"review_id"' in first


ops_app = typer.Typer(help="Alert rules and dashboards as code (docs/operations.md).")


def ops_files() -> dict[Path, str]:
    """Every file `ops write` makes, with its content: the PrometheusRule object from the
    plain rules file, and one ConfigMap per Grafana dashboard."""
    from skyra_stream.operations.dashboards import DASHBOARDS, config_map
    from skyra_stream.operations.rules import (
        PROMETHEUS_RULE_FILE,
        ROOT,
        load_rules,
        render_prometheus_rule,
    )

    files = {PROMETHEUS_RULE_FILE: render_prometheus_rule(load_rules())}
    for uid in DASHBOARDS:
        files[ROOT / "k8s" / "monitoring" / "dashboards" / f"{uid}.yaml"] = config_map(uid)
    return files


def write_generated(files: dict[Path, str], *, check: bool, command: str) -> None:
    """Write the files whose committed text differs from what the code makes now; with
    `check`, write nothing and exit 1 naming them (CI: a stale generated file fails)."""
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text("utf-8") != text]
    if check:
        if stale:
            typer.echo(f"stale (run `{command}`): " + ", ".join(map(str, stale)), err=True)
            raise typer.Exit(1)
        return
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        typer.echo(f"wrote {path}")


@ops_app.command("write")
def ops_write(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a file is stale.")
    ] = False,
) -> None:
    """Make k8s/base/prometheusrule.yaml from k8s/monitoring/skyra.rules.yml, and the
    dashboards' ConfigMaps under k8s/monitoring/dashboards/."""
    write_generated(ops_files(), check=check, command="skyra-stream ops write")


def docs(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a page is stale.")
    ] = False,
) -> None:
    """Write the documentation site's reference pages (docs/reference/: configuration from
    the Settings model, message schemas, HTTP API) from the code."""
    from skyra_stream.runtime.reference_docs import reference_pages

    write_generated(reference_pages(), check=check, command="skyra-stream docs")
