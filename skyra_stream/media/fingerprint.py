"""A perceptual fingerprint of the frames the model saw, for clustering re-encoded copies.

The content hash (`content_sha256`) finds byte-identical reposts; a re-encode, a resize or a
new container changes every byte and none of the picture. Each sampled frame gets a 64-bit
difference hash (dHash: a 9x8 grey thumbnail, one bit per horizontally adjacent pair,
set when the left pixel is brighter), written as 16 hex digits. Two videos sampled the same
way are compared frame by frame:

    distance(a, b) = mean over frames of popcount(a[i] XOR b[i])   (0 .. 64 bits)

Re-encodes of one video stay within a few bits (`tests/test_reuse.py` measures them);
unrelated videos sit near 32, as independent random bits would. `SAME_CONTENT_BITS` is the
threshold this project uses; downstream services may pick their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

SAME_CONTENT_BITS: Final = 10.0


def dhash(frame: npt.NDArray[np.uint8]) -> str:
    grey = Image.fromarray(frame).convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def fingerprint(frames: Sequence[npt.NDArray[np.uint8]]) -> list[str]:
    return [dhash(frame) for frame in frames]


def distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Mean Hamming distance in bits between aligned frame hashes (64.0 when the two were
    not sampled alike: different frame counts)."""
    if not a or len(a) != len(b):
        return 64.0
    return sum(bin(int(x, 16) ^ int(y, 16)).count("1") for x, y in zip(a, b, strict=True)) / len(a)
