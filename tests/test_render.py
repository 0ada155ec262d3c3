"""Evidence sheets: boxes are drawn on the frames inside each artifact's time span."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from skyra_stream.decisions.evidence import (
    BOX_COLORS,
    COLUMNS,
    HEADER_H,
    LABEL_H,
    LEGEND_ROW_H,
    PAD,
    legend_lines,
    render_sheet,
)
from skyra_stream.messages import (
    Artifact,
    ModelInfo,
    Source,
    Timings,
    Verdict,
    VideoInfo,
    WorkerInfo,
)

STAMPS = [i * 0.5 for i in range(16)]


def verdict(artifacts: list[Artifact]) -> Verdict:
    return Verdict(
        event_id="e",
        video_id="clip.mp4",
        source=Source(uri="s3://b/clip.mp4"),
        status="ok",
        label="fake",
        fake_probability=0.91,
        artifacts=artifacts,
        cleared_regions=[],
        explanation="x",
        raw_response="x",
        video=VideoInfo(
            duration_s=7.5,
            width=400,
            height=300,
            fps=30.0,
            codec="h264",
            frames_sampled=16,
            timestamps_s=STAMPS,
        ),
        model=ModelInfo(name="skyra-test"),
        timings_ms=Timings(),
        worker=WorkerInfo(id="t", version="0"),
    )


def test_boxes_are_drawn_only_inside_their_time_span(tmp_path: Path) -> None:
    frames = [np.full((256, 341, 3), 90, np.uint8) for _ in range(16)]
    art = Artifact(
        type="Unnatural Blur",
        category="Texture Anomaly",
        group="Low-Level Forgery",
        in_taxonomy=True,
        start_s=2.0,
        end_s=3.0,
        bbox=(0.25, 0.5, 0.75, 0.9),
        bbox_format="normalized",
        evidence="blur",
    )
    out = render_sheet(frames, verdict([art]), tmp_path / "sheet.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    color = np.array(BOX_COLORS[0])

    def frame_origin(i: int) -> tuple[int, int]:
        x = PAD + (i % COLUMNS) * (341 + PAD)
        y = HEADER_H + (i // COLUMNS) * (256 + LABEL_H + PAD) + LABEL_H
        return x, y

    for i, t in enumerate(STAMPS):
        x, y = frame_origin(i)
        # middle of the box's bottom edge (y2 = 0.9 of the frame), below any label
        px = img[y + int(0.9 * 256) - 1, x + int(0.5 * 341)]
        inside = 2.0 - 0.25 <= t <= 3.0 + 0.25
        assert (np.abs(px.astype(int) - color).sum() < 30) == inside, (i, t, px)
    # a frame without the artifact keeps its own pixels where the box would be
    x, y = frame_origin(0)
    assert tuple(img[y + int(0.9 * 256) - 1, x + int(0.5 * 341)]) == (90, 90, 90)


def test_sheet_without_artifacts_or_boxes(tmp_path: Path) -> None:
    frames = [np.zeros((256, 455, 3), np.uint8) for _ in range(5)]
    v = verdict(
        [
            Artifact(
                type="Odd",
                category=None,
                group=None,
                in_taxonomy=False,
                start_s=None,
                end_s=None,
                bbox=None,
                bbox_format="none",
                evidence="",
            )
        ]
    )
    v = v.model_copy(update={"video": v.video.model_copy(update={"timestamps_s": STAMPS[:5]})})
    out = render_sheet(frames, v, tmp_path / "s.png")
    assert Image.open(out).size[0] == PAD + COLUMNS * (455 + PAD)


def test_the_legend_lists_every_artifact_with_its_span_box_and_sentence(tmp_path: Path) -> None:
    frames = [np.full((256, 341, 3), 90, np.uint8) for _ in range(16)]
    boxed = Artifact(
        type="Unnatural Blur",
        category="Texture Anomaly",
        group="Low-Level Forgery",
        in_taxonomy=True,
        start_s=2.0,
        end_s=3.0,
        bbox=(0.25, 0.5, 0.75, 0.9),
        bbox_format="normalized",
        evidence="The  background\nblurs.",
    )
    unboxed = boxed.model_copy(
        update={"type": "Lighting Inconsistency", "bbox": None, "evidence": "The light flips."}
    )
    v = verdict([boxed, unboxed])
    assert legend_lines(v) == [
        "1. Unnatural Blur  [2.00-3.00s, box 0.25, 0.50, 0.75, 0.90]  The background blurs.",
        "2. Lighting Inconsistency  [2.00-3.00s, no box]  The light flips.",
    ]
    out = render_sheet(frames, v, tmp_path / "legend.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    without = np.asarray(
        Image.open(render_sheet(frames, verdict([]), tmp_path / "none.png")).convert("RGB")
    )
    assert img.shape[0] == without.shape[0] + 2 * LEGEND_ROW_H
    # each row starts with a swatch of its artifact's colour (the box colour on the frames)
    grid_bottom = without.shape[0] - PAD
    for row in range(2):
        swatch = img[grid_bottom + row * LEGEND_ROW_H + 9, PAD + 6]
        assert tuple(swatch) == BOX_COLORS[row], (row, swatch)
