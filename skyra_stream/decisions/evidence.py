"""Evidence sheets: the 16 frames the model saw, with its findings drawn where it put them.

Reviewers look at this instead of reading JSON: a header with the verdict and P(fake), then
the frames in time order, each labelled with its timestamp; every artifact whose time span
covers a frame has its box drawn on that frame with the artifact type as a label. A long
upload analysed as windows gets a timeline strip under the header (each window coloured by
its label, gaps left dark) and the frames of its most suspicious window, outlined there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from skyra_stream.messages import Artifact, Verdict

COLUMNS = 4
PAD = 8
HEADER_H = 64
STRIP_H = 30
LABEL_H = 18
LEGEND_ROW_H = 18
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
MUTED = (160, 160, 170)
FAKE = (230, 57, 70)
REAL = (46, 196, 120)
UNKNOWN = (240, 180, 40)
BOX_COLORS = [
    (255, 99, 71),
    (255, 215, 0),
    (0, 191, 255),
    (186, 85, 211),
    (50, 205, 50),
    (255, 140, 0),
    (255, 105, 180),
    (64, 224, 208),
]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def artifacts_at(artifacts: Sequence[Artifact], t: float, tolerance: float) -> list[Artifact]:
    """Artifacts whose time span covers `t` (a span with no times covers every frame)."""
    out = []
    for a in artifacts:
        if (
            a.start_s is None
            or a.end_s is None
            or a.start_s - tolerance <= t <= a.end_s + tolerance
        ):
            out.append(a)
    return out


def legend_lines(verdict: Verdict) -> list[str]:
    """One line per artifact for the legend under the frames: its type, span, box and the
    sentence of the reasoning it came from. Every artifact is listed, also those without a
    box (drawn on no frame) or outside the taxonomy, so the sheet never hides a finding."""
    lines = []
    for n, a in enumerate(verdict.artifacts, 1):
        span = (
            f"{a.start_s:.2f}-{a.end_s:.2f}s"
            if a.start_s is not None and a.end_s is not None
            else "no span"
        )
        box = "box " + ", ".join(f"{v:.2f}" for v in a.bbox) if a.bbox else "no box"
        kind = a.type if a.in_taxonomy else f"{a.type} (not in the taxonomy)"
        evidence = " ".join(a.evidence.split()) or "(no sentence)"
        lines.append(f"{n}. {kind}  [{span}, {box}]  {evidence}")
    return lines


def render_sheet(
    frames: Sequence[npt.NDArray[np.uint8]], verdict: Verdict, out: Path, *, title: str = ""
) -> Path:
    """Write the evidence sheet PNG for one video and return its path."""
    if verdict.video is None:
        raise ValueError("a skipped verdict has no frames to draw")
    stamps = verdict.video.timestamps_s
    focus = _focus(verdict)
    if focus is not None:  # one window's frames, found by their timestamps
        at = {t: i for i, t in enumerate(stamps)}
        picked = [at[t] for t in verdict.segments[focus].timestamps_s if t in at]
        frames, stamps = [frames[i] for i in picked], [stamps[i] for i in picked]
    top = HEADER_H + (STRIP_H if focus is not None else 0)
    cell_h = max(f.shape[0] for f in frames)
    cell_w = max(f.shape[1] for f in frames)
    rows = math.ceil(len(frames) / COLUMNS)
    width = PAD + COLUMNS * (cell_w + PAD)
    legend = legend_lines(verdict)
    grid_bottom = top + rows * (cell_h + LABEL_H + PAD)
    height = grid_bottom + len(legend) * LEGEND_ROW_H + PAD
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    _header(draw, verdict, width, title)
    if focus is not None:
        _timeline(draw, verdict, focus, width)
    types = list(dict.fromkeys(a.type for a in verdict.artifacts))
    colors = {t: BOX_COLORS[i % len(BOX_COLORS)] for i, t in enumerate(types)}
    spacing = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1) if len(stamps) > 1 else 0.0
    small = _font(13)
    for i, frame in enumerate(frames):
        x = PAD + (i % COLUMNS) * (cell_w + PAD)
        y = top + (i // COLUMNS) * (cell_h + LABEL_H + PAD)
        h, w = frame.shape[:2]
        sheet.paste(Image.fromarray(frame), (x, y + LABEL_H))
        t = stamps[i] if i < len(stamps) else 0.0
        here = artifacts_at(verdict.artifacts, t, spacing / 2)
        draw.text((x, y + 2), f"#{i + 1:02d}  T={t:.2f}s", fill=TEXT if here else MUTED, font=small)
        for a in here:
            if a.bbox is None:
                continue
            color = colors.get(a.type, BOX_COLORS[0])
            x1, y1, x2, y2 = a.bbox
            box = (x + x1 * w, y + LABEL_H + y1 * h, x + x2 * w, y + LABEL_H + y2 * h)
            draw.rectangle(box, outline=color, width=3)
            label = a.type if a.in_taxonomy else f"{a.type} (?)"
            tw = draw.textlength(label, font=small)
            ty = max(y + LABEL_H, box[1] - 16)
            draw.rectangle((box[0], ty, box[0] + tw + 6, ty + 15), fill=color)
            draw.text((box[0] + 3, ty), label, fill=(0, 0, 0), font=small)
    _legend(draw, verdict, legend, colors, y=grid_bottom, width=width)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out


def _legend(
    draw: ImageDraw.ImageDraw,
    verdict: Verdict,
    lines: Sequence[str],
    colors: dict[str, tuple[int, int, int]],
    *,
    y: int,
    width: int,
) -> None:
    """Each artifact's line, after a swatch of its boxes' colour."""
    small = _font(13)
    chars = max(20, (width - 3 * PAD - 14) // 7)
    for i, (artifact, line) in enumerate(zip(verdict.artifacts, lines, strict=True)):
        top = y + i * LEGEND_ROW_H
        color = colors.get(artifact.type, BOX_COLORS[0])
        draw.rectangle((PAD, top + 3, PAD + 12, top + 15), fill=color)
        text = line if len(line) <= chars else line[: chars - 1] + "…"
        draw.text((2 * PAD + 12, top + 2), text, fill=TEXT, font=small)


def _focus(verdict: Verdict) -> int | None:
    """The window whose frames the sheet shows: the most likely fake one."""
    if not verdict.segments:
        return None
    scores = [
        (s.label == "fake", s.fake_probability or 0.0, -i) for i, s in enumerate(verdict.segments)
    ]
    return -max(scores)[2]


def _timeline(draw: ImageDraw.ImageDraw, verdict: Verdict, focus: int, width: int) -> None:
    """Windows along the video's duration, coloured by label; the shown one outlined."""
    end = max(verdict.segments[-1].end_s, verdict.video.duration_s if verdict.video else 0.0)
    x0, x1, y0, y1 = PAD, width - PAD, HEADER_H - 2, HEADER_H + STRIP_H - 10
    draw.rectangle((x0, y0, x1, y1), fill=(50, 50, 58))
    scale = (x1 - x0) / end if end > 0 else 0.0
    for i, seg in enumerate(verdict.segments):
        color = FAKE if seg.label == "fake" else REAL if seg.label == "real" else UNKNOWN
        box = (x0 + seg.start_s * scale, y0, max(x0 + seg.end_s * scale - 3, x0 + 1), y1)
        draw.rectangle(box, fill=color, outline=TEXT if i == focus else None, width=2)
    coverage = f"   coverage {verdict.coverage:.0%}" if verdict.coverage is not None else ""
    text = f"{len(verdict.segments)} windows{coverage}; frames of window {focus + 1} below"
    draw.text((x0 + 4, y0 + 2), text, fill=(0, 0, 0), font=_font(12))


def _header(draw: ImageDraw.ImageDraw, verdict: Verdict, width: int, title: str) -> None:
    big, small = _font(26), _font(14)
    label = (verdict.label or "no answer").upper()
    color = FAKE if verdict.label == "fake" else REAL if verdict.label == "real" else UNKNOWN
    draw.rectangle((0, 0, width, HEADER_H - 6), fill=(36, 36, 42))
    draw.text((PAD, 8), label, fill=color, font=big)
    p = verdict.fake_probability
    detail = f"P(fake) = {p:.3f}" if p is not None else "P(fake) = n/a"
    detail += f"   artifacts: {len(verdict.artifacts)}   status: {verdict.status}"
    offset = PAD + draw.textlength(label, font=big) + 16
    draw.text((offset, 14), detail, fill=TEXT, font=small)
    info = verdict.video
    assert info is not None  # checked above
    meta = (
        f"{title or verdict.video_id}   {info.width}x{info.height} {info.codec} "
        f"{info.duration_s:.1f}s   model {verdict.model.name}"
    )
    draw.text((PAD, 38), meta[:160], fill=MUTED, font=small)
