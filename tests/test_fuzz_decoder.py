"""Mutated real videos through the sampler for a fixed budget: every input either samples or
raises a coded SkyraError, in bounded time. Anything else would crash or hang a worker."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from skyra_stream.errors import SkyraError
from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.media.samples import VideoSpec, write_video

SEEDS = {
    "h264.mp4": VideoSpec(frames=30, gop=10),
    "vp9.webm": VideoSpec(codec="libvpx-vp9", frames=30),
    "hevc.mkv": VideoSpec(codec="libx265", frames=30, options={"x265-params": "log-level=error"}),
    "mpeg4.avi": VideoSpec(codec="mpeg4", frames=30),
    "h264.ts": VideoSpec(frames=30),
    "anim.gif": VideoSpec(codec="gif", pix_fmt="rgb8", fps=10, frames=10),
}
pytestmark = pytest.mark.fuzz

CASES_PER_SEED = 24
LIMITS = DecodeLimits(timeout_s=5.0, max_pixels=1920 * 1080)


def mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rnd.randrange(5)
    if kind == 0:  # flip bytes
        for _ in range(rnd.randint(1, 64)):
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
    elif kind == 1:  # truncate
        del buf[rnd.randrange(1, len(buf)) :]
    elif kind == 2:  # duplicate a chunk
        a = rnd.randrange(len(buf))
        b = min(len(buf), a + rnd.randint(1, 4096))
        buf[a:a] = buf[a:b]
    elif kind == 3:  # zero a run (broken index or headers)
        a = rnd.randrange(len(buf))
        buf[a : a + rnd.randint(1, 512)] = bytes(min(len(buf) - a, 512))
    else:  # overwrite header-ish bytes near the start with large values
        for _ in range(8):
            buf[rnd.randrange(min(len(buf), 256))] = 0xFF
    return bytes(buf)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_videos_sample_or_fail_with_a_code(tmp_path: Path, name: str) -> None:
    original = write_video(tmp_path / name, SEEDS[name]).read_bytes()
    rnd = random.Random(f"fuzz-{name}")
    outcomes: dict[str, int] = {}
    for i in range(CASES_PER_SEED):
        path = tmp_path / f"case{i}{Path(name).suffix}"
        path.write_bytes(mutate(original, rnd))
        started = time.monotonic()
        try:
            video = sample_video(str(path), LIMITS)
        except SkyraError as exc:
            outcomes[exc.code.value] = outcomes.get(exc.code.value, 0) + 1
        else:
            assert 1 <= video.info.frames_sampled <= 16
            assert all(f.dtype.name == "uint8" and f.ndim == 3 for f in video.frames)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        # the deadline is checked between packets: a case may overrun it by one frame's work
        assert time.monotonic() - started < LIMITS.timeout_s + 5, f"case {i} took too long"
    assert sum(outcomes.values()) == CASES_PER_SEED
