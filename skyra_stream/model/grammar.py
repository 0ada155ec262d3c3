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


def _escape(text: str) -> str:
    # re.escape also escapes spaces and hyphens, which xgrammar warns about; the class names
    # only need the metacharacters escaped.
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def output_regex(*, max_text_chars: int = 400, max_findings: int = 8) -> str:
    """The contract's output as a regex; free text between tags is bounded so the grammar
    (and a random test model) always reaches `</answer>`."""
    types = "|".join(_escape(t) for t in L3_TYPES)
    span = rf"<t>\[{_NUM}, {_NUM}\]</t> at <bbox>\[{_NUM}, {_NUM}, {_NUM}, {_NUM}\]</bbox>"
    finding = rf"(<type>({types})</type> in )?{span}"
    text = rf"[^<]{{1,{max_text_chars}}}"
    return (
        rf"<think>{text}({finding}{text}){{0,{max_findings}}}</think>\n<answer>(Fake|Real)</answer>"
    )
