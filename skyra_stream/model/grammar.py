"""A regular expression of Skyra's output grammar, for vLLM structured output (`guided=regex`).

With it every completed output parses: a `<think>` block whose findings are well-formed tags
naming taxonomy classes, then exactly one `<answer>Fake|Real</answer>`. It costs decoding
speed (measured in benchmarks/engine.py) and can only shape, not improve, what a trained model
says, so it is off by default and meant for models that drift from the format.
"""

from __future__ import annotations

import re

from skyra_stream.model.taxonomy import L3_TYPES

_NUM = r"\d{1,5}(\.\d{1,2})?"
MAX_TEXT_CHARS = 400
MAX_FINDINGS = 8
# Qwen's BPE writes English prose at about 4 characters a token; 3 leaves room for unusual
# words. Tags and numbers are counted a token per character (Qwen splits digits one by one).
PROSE_CHARS_PER_TOKEN = 3


def _escape(text: str) -> str:
    # re.escape also escapes spaces and hyphens, which xgrammar warns about; the class names
    # only need the metacharacters escaped.
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def output_regex(*, max_text_chars: int = MAX_TEXT_CHARS, max_findings: int = MAX_FINDINGS) -> str:
    """The contract's output as a regex; free text between tags is bounded so the grammar
    (and a random test model) always reaches `</answer>`."""
    types = "|".join(_escape(t) for t in L3_TYPES)
    span = rf"<t>\[{_NUM}, {_NUM}\]</t> at <bbox>\[{_NUM}, {_NUM}, {_NUM}, {_NUM}\]</bbox>"
    finding = rf"(<type>({types})</type> in )?{span}"
    text = rf"[^<]{{1,{max_text_chars}}}"
    return (
        rf"<think>{text}({finding}{text}){{0,{max_findings}}}</think>\n<answer>(Fake|Real)</answer>"
    )


def longest_answer_tokens(
    *, max_text_chars: int = MAX_TEXT_CHARS, max_findings: int = MAX_FINDINGS
) -> int:
    """Tokens of the longest answer `output_regex` admits: every free-text run at its bound,
    every finding with the longest class name and five-digit numbers. What the output cap is
    sized to: a longer output is no valid answer, only a model that has lost its way."""
    longest_type = max(L3_TYPES, key=len)
    num = "99999.99"
    finding = (
        f"<type>{longest_type}</type> in <t>[{num}, {num}]</t> at "
        f"<bbox>[{num}, {num}, {num}, {num}]</bbox>"
    )
    frame = "<think></think>\n<answer>Fake</answer>"
    prose = (max_findings + 1) * max_text_chars
    return -(-prose // PROSE_CHARS_PER_TOKEN) + max_findings * len(finding) + len(frame)


def token_cap(tokens: int, *, step: int = 256) -> int:
    """`tokens` rounded up to a multiple of `step`."""
    return -(-tokens // step) * step


ANSWER_TOKEN_CAP = token_cap(longest_answer_tokens())
