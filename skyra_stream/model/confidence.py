"""P(fake) from the top logprobs at the answer position.

The label is the greedy token after `<answer>`; its probability against the alternative is the
raw score platforms threshold on (the model's own, not calibrated: see docs/model-contract.md).
Tokenisers may split the word ("F" + "ake") or glue
it to the end of the marker (Qwen's pre-tokeniser allows ">Fake"), so a candidate counts for a
word when, after the marker's tail, its text is a prefix of that word.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Per generated token: {candidate text: logprob} for the top-k candidates (chosen included).
TopLogprobs = Sequence[Mapping[str, float]]

MARKER = "<answer>"


def fake_probability(token_texts: Sequence[str], top: TopLogprobs) -> float | None:
    """P(Fake) / (P(Fake) + P(Real)) at the token that starts the first answer word, or None
    when there is no answer or neither word is among the candidates there."""
    found = _answer_position(token_texts)
    if found is None or found[0] >= len(top):
        return None
    position, tail = found
    p_fake = p_real = 0.0
    for text, logprob in top[position].items():
        if not math.isfinite(logprob):
            continue
        word = (text[len(tail) :] if tail and text.startswith(tail) else text).strip().lower()
        if not word:
            continue
        if "fake".startswith(word):
            p_fake += math.exp(logprob)
        elif "real".startswith(word):
            p_real += math.exp(logprob)
    if p_fake + p_real <= 0.0:
        return None
    return round(p_fake / (p_fake + p_real), 6)


def _answer_position(token_texts: Sequence[str]) -> tuple[int, str] | None:
    """(index of the token holding the answer word's first letter, the part of that token that
    still belongs to the marker or whitespace before the word)."""
    text = ""
    marker_end: int | None = None
    for i, piece in enumerate(token_texts):
        start = len(text)
        text += piece
        if marker_end is None:
            at = text.find(MARKER)
            if at < 0:
                continue
            marker_end = at + len(MARKER)
        rest = text[max(marker_end, start) :]
        if rest.strip():
            return i, text[start:marker_end] if marker_end > start else ""
    return None
