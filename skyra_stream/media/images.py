"""Pre-extracted frames (image files plus timestamps) as a `SampledVideo`.

For callers that decode video themselves (the API's /v1/analyze_frames) and for datasets
shipped as frame folders (ViF-Bench). Images are untrusted input like videos: the pixel
cap is checked on the header, before a single pixel is decoded (PNG and JPEG bombs are a
few KB), and anything PIL cannot read is `not_a_video`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.media.decode import RGBFrame, SampledVideo
from skyra_stream.messages import VideoInfo
from skyra_stream.model.prompt import NUM_FRAMES, resized_size

ImageSource = Path | IO[bytes]


def frames_from_images(
    images: Sequence[ImageSource],
    timestamps_s: Sequence[float],
    *,
    max_pixels: int,
    num_frames: int = NUM_FRAMES,
) -> SampledVideo:
    """Thin to `num_frames` spread uniformly, RGB, short side resized like decoded video."""
    if not images:
        raise SkyraError(ErrorCode.NOT_A_VIDEO, "no frames")
    if len(timestamps_s) != len(images):
        raise SkyraError(
            ErrorCode.INVALID_EVENT, f"{len(images)} frames but {len(timestamps_s)} timestamps"
        )
    if any(not 0 <= t < 1e7 for t in timestamps_s) or list(timestamps_s) != sorted(timestamps_s):
        raise SkyraError(ErrorCode.INVALID_EVENT, "timestamps must be ascending seconds >= 0")
    keep = sorted({int(i) for i in np.linspace(0, len(images) - 1, num_frames)})
    frames: list[RGBFrame] = []
    size: tuple[int, int] | None = None
    for i in keep:
        frame, frame_size = _load(images[i], max_pixels, i)
        size = size or frame_size
        frames.append(frame)
    assert size is not None
    info = VideoInfo(
        duration_s=float(max(timestamps_s)),
        width=size[0],
        height=size[1],
        fps=None,
        codec="frames",
        frames_sampled=len(frames),
        timestamps_s=[round(float(timestamps_s[i]), 4) for i in keep],
    )
    return SampledVideo(frames=frames, info=info)


def _load(source: ImageSource, max_pixels: int, index: int) -> tuple[RGBFrame, tuple[int, int]]:
    try:
        with Image.open(source) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise SkyraError(
                    ErrorCode.VIDEO_TOO_LARGE,
                    f"frame {index} is {w}x{h}, over the limit of {max_pixels} pixels",
                )
            rgb = img.convert("RGB")
    except SkyraError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SkyraError(ErrorCode.NOT_A_VIDEO, f"frame {index} is not an image: {exc}") from None
    out_w, out_h = resized_size(w, h)
    resized = rgb.resize((out_w, out_h), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8), (w, h)


IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
FRAME_FOLDER_MAX_PIXELS = 7680 * 4320  # benchmark data is ours to trust, up to 8K


def load_frames_folder(folder: Path, num_frames: int = NUM_FRAMES) -> SampledVideo:
    """A clip shipped as frames: image files in name order plus `timestamps.txt` (one number
    of seconds per line, or `<file> <seconds>` per line). Uniformly thinned to 16 frames and
    resized like decoded video."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    stamps_file = folder / "timestamps.txt"
    if not images:
        raise SkyraError(ErrorCode.NOT_A_VIDEO, f"{folder} holds no frames")
    stamps = (
        _read_timestamps(stamps_file, images)
        if stamps_file.exists()
        else [float(i) for i in range(len(images))]
    )
    return frames_from_images(
        images, stamps, max_pixels=FRAME_FOLDER_MAX_PIXELS, num_frames=num_frames
    )


def _read_timestamps(path: Path, images: Sequence[Path]) -> list[float]:
    values: dict[str, float] = {}
    ordered: list[float] = []
    for line in path.read_text().splitlines():
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) >= 2:
            values[Path(parts[0]).name] = float(parts[-1])
        else:
            ordered.append(float(parts[0]))
    stamps = [values.get(p.name, float(i)) for i, p in enumerate(images)] if values else ordered
    if len(stamps) != len(images):
        raise SkyraError(
            ErrorCode.DECODE_FAILED, f"{path}: {len(stamps)} timestamps for {len(images)} frames"
        )
    return stamps
