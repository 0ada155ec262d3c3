"""The `skyra-stream` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from skyra_stream import __version__
from skyra_stream.schemas import json_schemas, render, write_schemas

app = typer.Typer(
    help="Grounded AI-generated-video verdicts with Skyra on vLLM.",
    no_args_is_help=True,
    add_completion=False,
)


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
