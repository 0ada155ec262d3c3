"""The `skyra-stream` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from skyra_stream import __version__
from skyra_stream.logs import configure_logging
from skyra_stream.schemas import json_schemas, render, write_schemas
from skyra_stream.settings import Settings

app = typer.Typer(
    help="Grounded AI-generated-video verdicts with Skyra on vLLM.",
    no_args_is_help=True,
    add_completion=False,
)


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with every invalid variable named."""
    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            name = f"SKYRA_{field.upper()}" if field else "configuration"
            typer.echo(f"invalid configuration: {name}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker() -> None:
    """Run the streaming worker: ingest topic -> verdict and dead-letter topics.

    Configured entirely by SKYRA_* environment variables (see the README). Exits 0 after a
    graceful SIGTERM drain, 1 when the engine or Kafka fails, 2 on invalid configuration.
    """
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    from consumers.main import run_worker

    raise typer.Exit(run_worker(settings))


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


@app.command()
def schema(
    write: Annotated[
        Path | None, typer.Option(help="Write one file per message into this folder.")
    ] = None,
) -> None:
    """Print the JSON Schemas of ingest events, verdicts and dead letters."""
    if write is not None:
        for path in write_schemas(write):
            typer.echo(str(path))
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
