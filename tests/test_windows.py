"""Long uploads as windows: the spans, one decode pass for all of them, one engine request per
window submitted together, the aggregate verdict and its segments, the bound on windows and
the coverage it reports; a short upload exactly as before. Fake engine, PyAV-made clips."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyra_stream.analysis import Analysis, FileInput, Job
from skyra_stream.decisions.policy import Conditions, Policy, PolicyFile, Rule, decide, inputs_of
from skyra_stream.media.decode import DecodeLimits, sample_video, window_spans
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent, Verdict
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.runtime.wiring import build_analysis
from skyra_stream.settings import Settings

LONG_S = 60
WINDOWED = DecodeLimits(window_s=10.0, window_threshold_s=20.0, max_windows=12)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("windows")
    return {
        # 60 s at 10 fps with a keyframe every 5 s: small, but long.
        "long": write_video(
            folder / "long.mp4",
            VideoSpec(width=128, height=96, fps=10, frames=LONG_S * 10, gop=50, seed=2),
        ),
        "short": write_video(folder / "short.mp4", VideoSpec(width=128, height=96, frames=60)),
    }


def test_spans_tile_a_long_video_or_spread_when_there_would_be_too_many() -> None:
    assert window_spans(15.0, WINDOWED) == [(0.0, 15.0)]
    assert window_spans(45.0, DecodeLimits()) == [(0.0, 45.0)]  # windowing off
    tiles = window_spans(45.0, WINDOWED)
    assert len(tiles) == 5
    assert tiles[0][0] == 0.0
    assert tiles[-1][1] == pytest.approx(45.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in itertools.pairwise(tiles))
    spread = window_spans(600.0, DecodeLimits(window_s=10.0, window_threshold_s=20, max_windows=8))
    assert len(spread) == 8
    assert spread[0] == (0.0, 10.0)
    assert spread[-1][1] == pytest.approx(600.0)
    assert all(e - s == pytest.approx(10.0) for s, e in spread)
    one = DecodeLimits(window_s=10.0, window_threshold_s=20, max_windows=1)
    assert window_spans(600.0, one) == [(0.0, 600.0)]


def test_one_decode_pass_samples_every_window_on_the_videos_clock(clips: dict[str, Path]) -> None:
    video = sample_video(str(clips["long"]), WINDOWED)
    assert len(video.windows) == 6
    assert video.info.frames_sampled == 6 * 16 == len(video.frames)
    for w in video.windows:
        assert len(w.frames) == len(w.timestamps_s) == 16
        assert all(w.start_s - 0.001 <= t <= w.end_s + 0.001 for t in w.timestamps_s)
    stamps = [t for w in video.windows for t in w.timestamps_s]
    assert stamps == sorted(stamps) == video.info.timestamps_s
    assert stamps[-1] == pytest.approx(LONG_S - 0.1, abs=0.01)  # the last frame
    # Each frame decoded at most once for all six windows, not six passes.
    assert video.frames_decoded <= LONG_S * 10
    print(f"6 windows: {video.frames_decoded} frames decoded of {LONG_S * 10}")


def test_a_short_upload_is_sampled_exactly_as_before(clips: dict[str, Path]) -> None:
    windowed, plain = (sample_video(str(clips["short"]), lim) for lim in (WINDOWED, None))
    assert windowed.windows == []
    assert windowed.info == plain.info
    assert all((a == b).all() for a, b in zip(windowed.frames, plain.frames, strict=True))


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    with FakeEngine() as eng:
        yield eng


def analysis_for(folder: Path, engine: FakeEngine, **overrides: object) -> Analysis:
    values: dict[str, object] = {
        "local_roots": [str(folder)],
        "engine": "fake",
        "worker_id": "unit",
        "decode_concurrency": 2,
        "verdict_cache": False,
    }
    values.update(overrides)
    return build_analysis(Settings(**values), engine)  # type: ignore[arg-type]


def analyse(analysis: Analysis, path: Path, event_id: str) -> Verdict:
    event = IngestEvent(event_id=event_id, video_id=event_id, uri=path.as_uri())
    outcome = analysis.start(Job(event, FileInput(path))).result(timeout=60)
    assert outcome.verdict is not None, outcome.error
    return outcome.verdict


@pytest.mark.parametrize("event_id", ["long-1", "long-2", "long-3"])
def test_a_long_upload_gets_one_request_per_window_and_an_aggregate_verdict(
    clips: dict[str, Path], fake_engine: FakeEngine, event_id: str
) -> None:
    analysis = analysis_for(clips["long"].parent, fake_engine)
    try:
        v = analyse(analysis, clips["long"], event_id)
    finally:
        analysis.close()
    assert fake_engine.submitted == [f"{event_id}#w{k}" for k in range(6)]
    assert len(v.segments) == 6
    assert v.coverage == 1.0
    labels = [s.label for s in v.segments]
    # The fake engine answers per request id, so windows differ: the aggregate follows them.
    assert v.label == ("fake" if "fake" in labels else "real")
    assert v.fake_probability == max(s.fake_probability or 0 for s in v.segments)
    assert len(v.artifacts) == labels.count("fake")
    for seg in v.segments:
        assert len(seg.timestamps_s) == 16
        for a in seg.artifacts:  # the window's own span, on the video's clock
            assert a.start_s is not None
            assert a.end_s is not None
            assert seg.start_s - 0.01 <= a.start_s <= a.end_s <= seg.end_s + 0.01
    assert v.raw_response.count("[window ") == 6
    assert v.timings_ms.infer is not None


def test_more_windows_than_allowed_are_spread_and_the_coverage_says_so(
    clips: dict[str, Path], fake_engine: FakeEngine
) -> None:
    analysis = analysis_for(clips["long"].parent, fake_engine, max_windows=3)
    try:
        v = analyse(analysis, clips["long"], "spread")
    finally:
        analysis.close()
    assert [(s.start_s, s.end_s) for s in v.segments] == [(0.0, 10.0), (24.95, 34.95), (49.9, 59.9)]
    assert v.coverage == pytest.approx(30 / 59.9, abs=0.001)
    assert len(fake_engine.submitted) == 3


def test_a_short_upload_is_one_request_with_no_segments(
    clips: dict[str, Path], fake_engine: FakeEngine
) -> None:
    analysis = analysis_for(clips["short"].parent, fake_engine)
    try:
        v = analyse(analysis, clips["short"], "short")
    finally:
        analysis.close()
    assert fake_engine.submitted == ["short"]
    assert (v.segments, v.coverage) == ([], None)


def test_cancelling_a_long_upload_aborts_every_window(
    clips: dict[str, Path], fake_engine: FakeEngine
) -> None:
    fake_engine.hold()
    analysis = analysis_for(clips["long"].parent, fake_engine)
    try:
        event = IngestEvent(event_id="gone", video_id="gone", uri=clips["long"].as_uri())
        future = analysis.start(Job(event, FileInput(clips["long"])))
        fake_engine.wait_in_flight(6)
        future.cancel()
        fake_engine.wait_in_flight(0)
    finally:
        analysis.close()
        fake_engine.release()


def test_policies_read_the_segments(clips: dict[str, Path], fake_engine: FakeEngine) -> None:
    analysis = analysis_for(clips["long"].parent, fake_engine)
    try:
        verdicts = [analyse(analysis, clips["long"], f"p-{i}") for i in range(4)]
    finally:
        analysis.close()
    policy = PolicyFile(
        version="1",
        default=Policy(
            id="p",
            otherwise="allow",
            rules=[
                Rule(name="two-windows", action="block", when=Conditions(min_fake_segments=2)),
                Rule(name="one-window", action="review", when=Conditions(min_fake_segments=1)),
            ],
        ),
    )
    for v in verdicts:
        fakes = sum(s.label == "fake" for s in v.segments)
        decision = decide(policy, inputs_of(v, None))
        assert decision.inputs.fake_segments == fakes
        assert decision.inputs.segments == 6
        expected = "block" if fakes >= 2 else "review" if fakes == 1 else "allow"
        assert decision.action == expected


def test_the_evidence_sheet_draws_the_windows_and_the_most_suspicious_ones_frames(
    clips: dict[str, Path], fake_engine: FakeEngine, tmp_path: Path
) -> None:
    from PIL import Image

    from skyra_stream.decisions import evidence as render

    analysis = analysis_for(clips["long"].parent, fake_engine)
    try:
        event = IngestEvent(event_id="sheet", video_id="sheet", uri=clips["long"].as_uri())
        outcome = analysis.start(Job(event, FileInput(clips["long"]))).result(timeout=60)
    finally:
        analysis.close()
    v, video = outcome.verdict, outcome.video
    assert v is not None
    assert video is not None
    path = render.render_sheet(video.frames, v, tmp_path / "sheet.png")
    sheet = Image.open(path).convert("RGB")
    cell_h = video.frames[0].shape[0]
    rows = 16 // render.COLUMNS  # one window's frames, not all 96
    assert (
        sheet.height
        == render.HEADER_H
        + render.STRIP_H
        + rows * (cell_h + render.LABEL_H + render.PAD)
        + len(render.legend_lines(v)) * render.LEGEND_ROW_H  # every artifact listed
        + render.PAD
    )
    end = max(v.segments[-1].end_s, v.video.duration_s)  # type: ignore[union-attr]
    scale = (sheet.width - 2 * render.PAD) / end
    y = render.HEADER_H + render.STRIP_H - 14  # inside the strip, under its caption
    for seg in v.segments:
        x = render.PAD + (seg.start_s + seg.end_s) / 2 * scale
        want = render.FAKE if seg.label == "fake" else render.REAL
        assert sheet.getpixel((int(x), y)) == want
