"""Uploads shaped like what platforms receive, for the decode benchmarks.

Small synthetic clips once hid the decode bottleneck: they decode in milliseconds whatever
the sampler does. These have the sizes, lengths and GOP structures of real uploads:

- a desktop editor's 1080p H.264 export: B-frames, one keyframe every 250 frames (x264's
  default), 15 s;
- a phone's 1080p H.264 clip: no B-frames, a keyframe every second, 20 s;
- a social-network 720p H.264 re-encode: B-frames, a keyframe every 2 s, 60 s;
- a phone's 4K HEVC clip: B-frames, a keyframe every second, 6 s.

The content is a textured scene panning at a few pixels a frame, with the frame index drawn
in, so motion compensation works as it does on camera footage. B-frame placement is fixed
(`b-adapt=0`): x264's adaptive choice reacts to synthetic content differently than to camera
footage, and a fixed pattern is what hardware and most export presets use. Clips are encoded
once into the output folder and reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skyra_stream.media.samples import INDEX_BITS


@dataclass(frozen=True, eq=False)  # hashed by identity: the shapes key result tables
class Upload:
    name: str
    codec: str
    width: int
    height: int
    seconds: int
    fps: int
    options: dict[str, str] = field(default_factory=dict)
    bframes: bool = False

    @property
    def frames(self) -> int:
        return self.seconds * self.fps


UPLOADS = (
    Upload(
        "desktop_1080p_h264_gop250",
        "libx264",
        1920,
        1080,
        15,
        30,
        {"preset": "veryfast", "crf": "23", "bf": "3", "g": "250", "x264-params": "b-adapt=0"},
        bframes=True,
    ),
    Upload(
        "phone_1080p_h264_gop30",
        "libx264",
        1920,
        1080,
        20,
        30,
        {"preset": "veryfast", "crf": "23", "bf": "0", "g": "30"},
    ),
    Upload(
        "social_720p_h264_gop60",
        "libx264",
        1280,
        720,
        60,
        30,
        {"preset": "veryfast", "crf": "26", "bf": "2", "g": "60", "x264-params": "b-adapt=0"},
        bframes=True,
    ),
    Upload(
        "phone_4k_hevc_gop30",
        "libx265",
        3840,
        2160,
        6,
        30,
        {
            "preset": "ultrafast",
            "crf": "28",
            "x265-params": "log-level=error:keyint=30:min-keyint=30:bframes=3:b-adapt=0",
        },
        bframes=True,
    ),
)


def write_upload(folder: Path, upload: Upload) -> Path:
    path = folder / f"{upload.name}.mp4"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    w, h = upload.width, upload.height
    rng = np.random.default_rng(0)
    # A scene with structure at several scales: coarse blocks upsampled, fine noise on top.
    coarse = rng.integers(30, 220, size=((h + 256) // 16 + 1, (w + 256) // 16 + 1, 3))
    scene = np.kron(coarse, np.ones((16, 16, 1))).astype(np.int16)
    scene += rng.integers(-12, 12, size=scene.shape, dtype=np.int16)
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    band = max(4, h // 4)
    half = INDEX_BITS // 2
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream(upload.codec, rate=upload.fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = dict(upload.options)
        for i in range(upload.frames):
            dx, dy = (3 * i) % 256, (i // 2) % 256
            img = np.ascontiguousarray(scene[dy : dy + h, dx : dx + w])
            for b in range(INDEX_BITS):
                row, col = divmod(b, half)
                bit = (i >> (INDEX_BITS - 1 - b)) & 1
                img[
                    row * band // 2 : (row + 1) * band // 2,
                    col * w // half : (col + 1) * w // half,
                ] = 255 if bit else 0
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, upload.fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.rename(path)
    return path


def write_uploads(folder: Path) -> dict[Upload, Path]:
    return {upload: write_upload(folder, upload) for upload in UPLOADS}
