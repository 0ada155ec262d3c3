"""Synthetic videos for tests, benchmarks and the demo, written with PyAV.

Each frame carries its own index as a 16-bit pattern of black and white blocks across the top
(robust to lossy codecs and to scaling), so a test can read back which frame the sampler
picked. A red square in the coded top-left corner makes rotation visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

INDEX_BITS = 16


@dataclass(frozen=True)
class VideoSpec:
    """What to write; the defaults make a 2 s, 30 fps, 320x240 H.264 MP4."""

    codec: str = "libx264"
    width: int = 320
    height: int = 240
    fps: int = 30
    frames: int = 60
    pix_fmt: str = "yuv420p"
    gop: int | None = None
    rotation: int = 0
    # Presentation times in seconds for a variable frame rate; overrides `fps` spacing.
    times_s: Sequence[float] | None = None
    options: dict[str, str] = field(default_factory=dict)
    audio: bool = False
    seed: int = 0


def index_frame(index: int, width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """An RGB frame whose top band encodes `index`; the rest is a moving gradient."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (base[0] + x * 60 // max(width, 1) + index) % 256
    img[..., 1] = (base[1] + y * 60 // max(height, 1)) % 256
    img[..., 2] = (base[2] + (x + y + 3 * index) % 64) % 256
    band = max(4, height // 4)
    bits = [(index >> (INDEX_BITS - 1 - b)) & 1 for b in range(INDEX_BITS)]
    half = INDEX_BITS // 2
    for row in range(2):
        for col in range(half):
            x0, x1 = col * width // half, (col + 1) * width // half
            y0, y1 = row * band // 2, (row + 1) * band // 2
            img[y0:y1, x0:x1] = 255 if bits[row * half + col] else 0
    marker = max(2, min(width, height) // 8)
    img[band : band + marker, :marker] = (255, 0, 0)
    return img


def read_index(img: npt.NDArray[np.uint8]) -> int:
    """Inverse of `index_frame` on an upright (unrotated) decoded frame of any size."""
    height, width = img.shape[:2]
    band = max(2, height // 4)
    gray = img.astype(np.float32).mean(axis=2)
    half = INDEX_BITS // 2
    value = 0
    for row in range(2):
        for col in range(half):
            x0, x1 = col * width // half, (col + 1) * width // half
            y0, y1 = row * band // 2, (row + 1) * band // 2
            # Read the middle of each block: edges blur under lossy codecs and scaling.
            cy0, cy1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
            cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
            value = (value << 1) | int(
                gray[cy0 : max(cy1, cy0 + 1), cx0 : max(cx1, cx0 + 1)].mean() > 127
            )
    return value


def write_video(path: Path, spec: VideoSpec | None = None) -> Path:
    """Encode `spec` into `path`; the container follows the file extension."""
    spec = spec or VideoSpec()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = cast(VideoStream, container.add_stream(spec.codec, rate=spec.fps))
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = spec.pix_fmt
        options: dict[str, object] = dict(spec.options)
        if spec.gop is not None:
            options.setdefault("g", str(spec.gop))
        if options:
            stream.options = {k: str(v) for k, v in options.items()}
        if spec.times_s is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        audio = _add_audio(container) if spec.audio else None
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(
                index_frame(i, spec.width, spec.height, spec.seed), format="rgb24"
            )
            if spec.times_s is not None:
                frame.pts = round(spec.times_s[i] * 1000)
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            _write_silence(container, audio, seconds=spec.frames / spec.fps)
    return path


def _add_audio(container: av.container.OutputContainer) -> AudioStream:
    stream = container.add_stream("aac", rate=48000)
    stream.layout = "mono"
    return stream


def _write_silence(
    container: av.container.OutputContainer, stream: AudioStream, seconds: float
) -> None:
    samples = int(seconds * 48000)
    for start in range(0, samples, 1024):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 48000
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An audio file with no video stream (`no_video_stream`)."""
    with av.open(str(path), mode="w") as container:
        _write_silence(container, _add_audio(container), seconds)
    return path


DEMO_SET: dict[str, VideoSpec] = {
    "h264_landscape.mp4": VideoSpec(),
    "hevc_10bit.mkv": VideoSpec(
        codec="libx265", pix_fmt="yuv420p10le", options={"x265-params": "log-level=error"}
    ),
    "vp9.webm": VideoSpec(codec="libvpx-vp9", seed=2),
    "portrait_rotated.mp4": VideoSpec(rotation=90, seed=3),
    "gif_loop.gif": VideoSpec(codec="gif", pix_fmt="rgb8", fps=10, frames=20, seed=4),
}


def write_demo_set(folder: Path) -> list[Path]:
    """The sample videos the demo analyses: small, varied, a few seconds to encode."""
    return [write_video(folder / name, spec) for name, spec in DEMO_SET.items()]
