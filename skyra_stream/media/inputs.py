"""What a video to analyse can be, and which local paths are videos.

The input kinds are the ways bytes reach the decoder (an allowlisted object, an upload, a
local file, pre-extracted frames, a folder of frames); every front door builds one and the
analysis path takes any. `collect_inputs` is shared by the CLI, the producer tool and the
evaluation, none of which should have to import the engine (and vLLM) to find their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from skyra_stream.media.images import ImageSource


@dataclass(frozen=True, slots=True)
class ObjectInput:
    """An object named by URI, read only through the allowlist (events, API `uri` bodies,
    CLI `s3://` arguments)."""

    uri: str
    version_id: str | None = None
    expected_size: int | None = None


@dataclass(frozen=True, slots=True)
class StreamInput:
    """Bytes the caller handed over (an API upload); nothing is fetched."""

    body: IO[bytes]
    size: int


@dataclass(frozen=True, slots=True)
class FileInput:
    """A local file the operator named on the command line (trusted path, bounded size)."""

    path: Path


@dataclass(frozen=True, slots=True)
class FramesInput:
    """Pre-extracted frames with their timestamps (API /v1/analyze_frames)."""

    images: Sequence[ImageSource]
    timestamps_s: Sequence[float]


@dataclass(frozen=True, slots=True)
class FramesFolderInput:
    """A clip shipped as a folder of frames (ViF-Bench reference data)."""

    folder: Path


VideoInput = ObjectInput | StreamInput | FileInput | FramesInput | FramesFolderInput

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
