"""The model's input exactly as Skyra was trained on it (docs/model-contract.md, "Input").

Anything that changes here, a space, a newline, the order of frames, costs accuracy, so the
strings are spelled out once and the tests pin them to the contract and to the processor's
own chat template.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any, Final

NUM_FRAMES: Final = 16
SHORT_SIDE: Final = 256
# Qwen2.5-VL processor defaults for this model: 28 px patches (14 px patch x 2 merge).
PATCH_FACTOR: Final = 28
MIN_PIXELS: Final = 224 * 224
MAX_PIXELS: Final = 1280 * 28 * 28

HEADER: Final = "Here are the video frames and their corresponding timestamps:"
INSTRUCTION: Final = (
    "\nPlease analyze the video frames, determine if the video is real or fake, "
    "and provide your reasoning."
)
IMAGE_PLACEHOLDER: Final = "<|vision_start|><|image_pad|><|vision_end|>"


@cache
def system_prompt() -> str:
    """The trained system prompt, byte for byte (it begins and ends with a newline)."""
    return (files("skyra_stream") / "data" / "system_prompt.txt").read_bytes().decode("utf-8")


def frame_label(timestamp_s: float) -> str:
    """The text that precedes frame i: `[T=<seconds with 2 decimals>s] `."""
    return f"[T={timestamp_s:.2f}s] "


def user_content(timestamps_s: Sequence[float]) -> list[dict[str, Any]]:
    """The interleaved user message as chat-template items, one image item per frame.

    The reference joins `header`, `[T=..s] <image>` lines and the instruction with "\\n" and
    then splits on `<image>`; the text items below are exactly the pieces that split gives.
    """
    items: list[dict[str, Any]] = []
    text = HEADER + "\n"
    for i, ts in enumerate(timestamps_s):
        if i:
            text = "\n"
        items.append({"type": "text", "text": text + frame_label(ts)})
        items.append({"type": "image"})
    items.append({"type": "text", "text": "\n" + INSTRUCTION})
    return items


def messages(timestamps_s: Sequence[float]) -> list[dict[str, Any]]:
    """System and user messages in the chat format of Qwen2.5-VL."""
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt()}]},
        {"role": "user", "content": user_content(timestamps_s)},
    ]


def render_prompt(timestamps_s: Sequence[float]) -> str:
    """The prompt string the Qwen2-VL chat template renders for `messages()`.

    Built by hand so the engine does not need a tokenizer round trip per request; the test
    suite checks it against `apply_chat_template` of the processor.
    """
    parts = [f"<|im_start|>system\n{system_prompt()}<|im_end|>\n<|im_start|>user\n"]
    for item in user_content(timestamps_s):
        parts.append(item["text"] if item["type"] == "text" else IMAGE_PLACEHOLDER)
    parts.append("<|im_end|>\n<|im_start|>assistant\n")
    return "".join(parts)


def resized_size(width: int, height: int, short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """(width, height) after scaling the short side to `short_side`, aspect ratio kept."""
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid frame size {width}x{height}")
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def model_frame_size(
    width: int,
    height: int,
    *,
    factor: int = PATCH_FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """(width, height) of a frame as the model sees it after the processor's `smart_resize`.

    Pixel boxes the model emits are in this frame's coordinates, so the parser needs it to
    normalise them. Same arithmetic as transformers' Qwen2-VL `smart_resize`.
    """
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar
