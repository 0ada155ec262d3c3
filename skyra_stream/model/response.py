"""Parse Skyra's answer into a label and grounded findings, on any string, without raising.

The model's output is untrusted text (docs/model-contract.md, "Output"): tags can be missing,
malformed, out of range or cut off at max_tokens. Every branch below degrades to "less
information" (a null box, a null label, `unparseable`) instead of an exception.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from skyra_stream.messages import Artifact, BBox, BBoxFormat, Region
from skyra_stream.model.taxonomy import classify

# Model output is bounded by max_tokens; this bound only keeps a pathological caller cheap.
MAX_PARSE_CHARS = 200_000
MAX_FINDINGS = 256
MAX_EVIDENCE_CHARS = 600

_ANSWER = re.compile(r"<answer>(.{0,200}?)</answer>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# Bounded, `<`-free captures keep every pattern linear in the input length.
_TYPE = r"<type>\s*(?P<type>[^<]{0,200}?)\s*</type>"
_TIME = r"<t>(?P<t>[^<]{0,200})</t>"
_BOX = r"<bbox>(?P<bbox>[^<]{0,300})</bbox>"
_TYPED = re.compile(
    _TYPE + r"(?:\s*(?:in|during|at)?\s*" + _TIME + r")?(?:\s*(?:at|in)?\s*" + _BOX + r")?",
    re.IGNORECASE,
)
_UNTYPED = re.compile(_TIME + r"\s*(?:at|in)?\s*" + _BOX, re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    status: Literal["ok", "unparseable"]
    label: Literal["fake", "real"] | None
    artifacts: list[Artifact] = field(default_factory=list)
    cleared_regions: list[Region] = field(default_factory=list)
    explanation: str | None = None


def parse_response(
    text: str,
    *,
    duration_s: float | None = None,
    frame_size: tuple[int, int] | None = None,
) -> ParsedResponse:
    """Label, artifacts, cleared regions and explanation from the model's text.

    `duration_s` clamps times to the video; `frame_size` (width, height of the frame as the
    model saw it, see `prompt.model_frame_size`) converts pixel boxes to normalised ones.
    """
    text = text[:MAX_PARSE_CHARS] if isinstance(text, str) else ""
    label, answer_at = _answer(text)
    think = _think(text, answer_at)
    artifacts: list[Artifact] = []
    cleared: list[Region] = []
    typed_spans: list[tuple[int, int]] = []
    for m in _TYPED.finditer(think):
        name = m.group("type").strip()
        if not name:
            continue  # `<type></type>`: no class named, read it as an untyped span
        if len(artifacts) >= MAX_FINDINGS:
            break
        typed_spans.append(m.span())
        start, end = _times(m.group("t"), duration_s)
        bbox, fmt = _bbox(m.group("bbox"), frame_size)
        cls = classify(name)
        artifacts.append(
            Artifact(
                type=name,
                category=cls.category if cls else None,
                group=cls.group if cls else None,
                in_taxonomy=cls is not None,
                start_s=start,
                end_s=end,
                bbox=bbox,
                bbox_format=fmt,
                evidence=_sentence(think, *m.span()),
            )
        )
    for m in _UNTYPED.finditer(think):
        if len(cleared) >= MAX_FINDINGS:
            break
        if any(s <= m.start() < e for s, e in typed_spans):
            continue
        start, end = _times(m.group("t"), duration_s)
        bbox, fmt = _bbox(m.group("bbox"), frame_size)
        cleared.append(
            Region(
                start_s=start,
                end_s=end,
                bbox=bbox,
                bbox_format=fmt,
                evidence=_sentence(think, *m.span()),
            )
        )
    return ParsedResponse(
        status="ok" if label else "unparseable",
        label=label,
        artifacts=artifacts,
        cleared_regions=cleared,
        explanation=think.strip() or None,
    )


def _answer(text: str) -> tuple[Literal["fake", "real"] | None, int]:
    """The first complete `<answer>` decides, as in the reference evaluation."""
    m = _ANSWER.search(text)
    if m is None:
        open_at = text.lower().find("<answer>")
        return None, open_at if open_at >= 0 else len(text)
    word = re.sub(r"[^a-z]", "", m.group(1).lower())
    if word == "fake":
        return "fake", m.start()
    if word == "real":
        return "real", m.start()
    return None, m.start()


def _think(text: str, answer_at: int) -> str:
    """The reasoning: inside `<think>` if present (closed or cut off), else before the answer."""
    opened = _THINK_OPEN.search(text)
    if opened is None:
        return text[:answer_at]
    closed = _THINK_CLOSE.search(text, opened.end())
    end = closed.start() if closed else max(answer_at, opened.end())
    return text[opened.end() : end]


def _numbers(raw: str | None, count: int) -> list[float] | None:
    if raw is None:
        return None
    values = []
    for token in _NUMBER.findall(raw)[: count + 1]:
        try:
            value = float(token)
        except ValueError:  # pragma: no cover - the pattern only matches floats
            return None
        if not math.isfinite(value):
            return None
        values.append(value)
    return values if len(values) == count else None


def _times(raw: str | None, duration_s: float | None) -> tuple[float | None, float | None]:
    values = _numbers(raw, 2)
    if values is None:
        return None, None
    start, end = sorted(values)
    upper = duration_s if duration_s is not None and math.isfinite(duration_s) else math.inf
    upper = max(upper, 0.0)
    return _round(min(max(start, 0.0), upper)), _round(min(max(end, 0.0), upper))


def _bbox(raw: str | None, frame_size: tuple[int, int] | None) -> tuple[BBox | None, BBoxFormat]:
    """Normalise a box: all zeros means the whole frame, values <= 1 are already normalised,
    anything larger is pixels of the frame the model saw."""
    values = _numbers(raw, 4)
    if values is None or all(v == 0 for v in values):
        return None, "none"
    x1, y1, x2, y2 = values
    if max(abs(v) for v in values) <= 1.0:
        fmt: BBoxFormat = "normalized"
    else:
        fmt = "pixel"
        if frame_size is None or frame_size[0] <= 0 or frame_size[1] <= 0:
            return None, fmt
        w, h = frame_size
        x1, x2, y1, y2 = x1 / w, x2 / w, y1 / h, y2 / h
    x1, x2 = sorted((_clip01(x1), _clip01(x2)))
    y1, y2 = sorted((_clip01(y1), _clip01(y2)))
    if x2 - x1 <= 1e-6 or y2 - y1 <= 1e-6:
        return None, fmt  # degenerate after clipping: no area left to show
    return (_round(x1), _round(y1), _round(x2), _round(y2)), fmt


def _clip01(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def _round(v: float) -> float:
    return round(v, 4)


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence holding text[start:end]; sentence ends inside the tag are ignored so
    the decimals of `[1.50, 2.00]` do not cut it."""
    left = 0
    for m in _SENTENCE_END.finditer(text, max(0, start - MAX_EVIDENCE_CHARS), start):
        left = m.end()
    right_m = _SENTENCE_END.search(text, end, end + MAX_EVIDENCE_CHARS)
    right = right_m.end() if right_m else min(len(text), end + MAX_EVIDENCE_CHARS)
    left = max(left, start - MAX_EVIDENCE_CHARS)
    return " ".join(text[left:right].split())
