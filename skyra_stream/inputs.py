"""Which local paths are videos: shared by the CLI, the producer tool and the evaluation,
none of which should have to import the engine (and vLLM) to find their inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".gif",
        ".ts",
        ".mts",
        ".m2ts",
        ".mpg",
        ".mpeg",
        ".flv",
        ".3gp",
        ".ogv",
        ".wmv",
        ".mxf",
    }
)


def collect_inputs(paths: Sequence[str]) -> list[str]:
    """Files as given, folders expanded (recursively, video extensions), s3:// URIs as given.
    A path that does not exist raises FileNotFoundError (a usage error)."""
    out: list[str] = []
    for raw in paths:
        if raw.startswith("s3://"):
            out.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            out.extend(
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
        elif path.exists():
            out.append(str(path))
        else:
            raise FileNotFoundError(raw)
    return out
