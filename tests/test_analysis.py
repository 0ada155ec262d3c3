"""The one analysis path, against the fake engine: every door gets the same verdict for the
same video, the same codes for the same failures, one definition of each timing; jobs can be
cancelled; the streaming runner keeps a bounded window. No vLLM, no broker, no S3 server."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyra_stream.analysis import (
    Analysis,
    FileInput,
    FramesInput,
    Job,
    ObjectInput,
    Outcome,
    StreamInput,
)
from skyra_stream.errors import EngineDeadError, ErrorCode
from skyra_stream.media.decode import cuda_decode_available
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.messages import IngestEvent
from skyra_stream.model.fake_engine import FAKE_MODEL_NAME, FakeEngine
from skyra_stream.pools import PriorityPool
from skyra_stream.runtime.wiring import build_analysis, build_engine
from skyra_stream.settings import Settings


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("analysis-clips")
    for i in range(3):
        write_video(folder / f"c{i}.mp4", VideoSpec(width=128, height=96, frames=20, seed=i))
    (folder / "notes.mp4").write_bytes(b"not a video\n" * 50)
    return folder


def settings_for(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "local_roots": [str(root)],
        "engine": "fake",
        "worker_id": "unit",
        "fetch_concurrency": 2,
        "decode_concurrency": 2,
        "max_in_flight": 4,
        "verdict_cache": False,  # the same clips on purpose; reuse: tests/test_reuse.py
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with FakeEngine() as eng:
        yield eng


@pytest.fixture
def analysis(root: Path, engine: FakeEngine) -> Iterator[Analysis]:
    a = build_analysis(settings_for(root), engine)
    yield a
    a.close()


def job(inp: object, event_id: str = "e1", uri: str = "file:///x", **kw: object) -> Job:
    return Job(IngestEvent(event_id=event_id, video_id="v", uri=uri), inp, **kw)  # type: ignore[arg-type]


def outcome(analysis: Analysis, j: Job) -> Outcome:
    return analysis.start(j).result(timeout=30)


def test_every_door_gives_the_same_verdict_for_the_same_video(
    analysis: Analysis, root: Path
) -> None:
    path = root / "c0.mp4"
    uri = path.as_uri()
    with path.open("rb") as body:
        doors = {
            "event": job(ObjectInput(uri), uri=uri),
            "cli": job(FileInput(path), uri=uri),
            "upload": job(StreamInput(body, path.stat().st_size), uri=uri),
        }
        verdicts = {name: outcome(analysis, j).verdict for name, j in doors.items()}
    comparable = {
        name: v.model_dump(exclude={"created_at", "timings_ms", "source"})
        for name, v in verdicts.items()
        if v is not None
    }
    assert len(comparable) == 3
    assert comparable["event"] == comparable["cli"] == comparable["upload"]
    event = verdicts["event"]
    assert event is not None
    assert event.model.name == FAKE_MODEL_NAME
    assert event.worker.id == "unit"
    assert event.video.frames_sampled == 16
    assert event.source.etag is None
    assert event.source.size_bytes == path.stat().st_size


def test_total_runs_from_acceptance_and_covers_every_stage(analysis: Analysis, root: Path) -> None:
    uri = (root / "c1.mp4").as_uri()
    j = job(ObjectInput(uri), uri=uri, accepted_at=0.0)  # accepted "long ago"
    t = outcome(analysis, j).verdict.timings_ms  # type: ignore[union-attr]
    assert t.fetch is not None
    assert t.decode is not None
    assert t.queue is not None
    assert t.infer is not None
    assert t.total is not None
    assert t.total >= t.fetch + t.decode + t.infer
    # accepted_at=0 on the monotonic clock: total counts the wait before the first stage.
    fresh = outcome(analysis, job(ObjectInput(uri), event_id="e2", uri=uri))
    assert fresh.verdict is not None
    assert fresh.verdict.timings_ms.total is not None
    assert t.total > fresh.verdict.timings_ms.total


@pytest.mark.parametrize(
    ("inp", "code"),
    [
        (ObjectInput("s3://elsewhere/a.mp4"), ErrorCode.URI_NOT_ALLOWED),
        (ObjectInput("file:///etc/passwd"), ErrorCode.URI_NOT_ALLOWED),
        (ObjectInput("http://169.254.169.254/latest"), ErrorCode.URI_NOT_ALLOWED),
        ("missing", ErrorCode.OBJECT_NOT_FOUND),
        ("notes", ErrorCode.NOT_A_VIDEO),
        ("too-big", ErrorCode.OBJECT_TOO_LARGE),
        (FramesInput([], []), ErrorCode.NOT_A_VIDEO),
    ],
)
def test_failures_end_with_their_code_and_never_reach_the_engine(
    root: Path, engine: FakeEngine, inp: object, code: ErrorCode
) -> None:
    a = build_analysis(settings_for(root, max_object_bytes=1000), engine)
    try:
        if inp == "missing":
            inp = ObjectInput((root / "nope.mp4").as_uri())
        elif inp == "notes":
            inp = FileInput(root / "notes.mp4")
        elif inp == "too-big":
            inp = FileInput(root / "c0.mp4")
        result = outcome(a, job(inp))
    finally:
        a.close()
    assert result.verdict is None
    assert result.error is not None
    assert result.error.code is code
    assert engine.submitted == []


def test_an_engine_refusal_is_this_jobs_failure(root: Path) -> None:
    with FakeEngine(fail=lambda r: "prompt too long" if r.request_id == "bad" else None) as eng:
        a = build_analysis(settings_for(root), eng)
        try:
            bad = outcome(a, job(FileInput(root / "c0.mp4"), event_id="bad"))
            good = outcome(a, job(FileInput(root / "c0.mp4"), event_id="good"))
        finally:
            a.close()
    assert bad.error is not None
    assert bad.error.code is ErrorCode.ENGINE_FAILED
    assert "prompt too long" in bad.error.message
    assert good.verdict is not None


def test_a_dead_engine_fails_the_future_and_blames_no_input(
    analysis: Analysis, engine: FakeEngine, root: Path
) -> None:
    engine.hold()
    future = analysis.start(job(FileInput(root / "c0.mp4")))
    engine.wait_in_flight(1)
    engine.kill()
    with pytest.raises(EngineDeadError):
        future.result(timeout=10)
    later = analysis.start(job(FileInput(root / "c1.mp4"), event_id="e2"))
    with pytest.raises(EngineDeadError):
        later.result(timeout=10)


def test_cancelling_a_job_aborts_its_engine_request(
    analysis: Analysis, engine: FakeEngine, root: Path
) -> None:
    engine.hold()
    future = analysis.start(job(FileInput(root / "c0.mp4")))
    engine.wait_in_flight(1)
    assert future.cancel()
    assert engine.in_flight == 0
    assert engine.cancelled == 1
    assert analysis.in_progress == 0


def test_close_cancels_what_is_in_progress(root: Path, engine: FakeEngine) -> None:
    a = build_analysis(settings_for(root), engine)
    engine.hold()
    futures = [a.start(job(FileInput(root / "c0.mp4"), event_id=f"e{i}")) for i in range(3)]
    engine.wait_in_flight(3)
    a.close()
    assert all(f.cancelled() for f in futures)
    assert engine.in_flight == 0
    assert a.start(job(FileInput(root / "c0.mp4"), event_id="late")).cancelled()


def test_run_keeps_a_bounded_window_and_streams_results(
    analysis: Analysis, engine: FakeEngine, root: Path
) -> None:
    pulled = 0
    lock = threading.Lock()

    def jobs() -> Iterator[Job]:
        nonlocal pulled
        for i in range(40):
            with lock:
                pulled += 1
            yield job(FileInput(root / f"c{i % 3}.mp4"), event_id=f"j{i}")

    seen = 0
    most_ahead = 0
    for result in analysis.run(jobs(), limit=5):
        assert result.verdict is not None
        seen += 1
        with lock:
            most_ahead = max(most_ahead, pulled - seen)
    assert seen == 40
    # At most `window` jobs are started and not yet yielded: memory does not grow with
    # the number of inputs.
    assert most_ahead <= 5
    assert engine.peak_in_flight <= 5


def test_pools_take_api_jobs_before_the_backlog() -> None:
    pool = PriorityPool(1, "t")
    order: list[str] = []
    gate = threading.Event()
    done = concurrent.futures.Future[None]()
    pool.submit(0, gate.wait)  # holds the only thread while the queue builds up
    for name, priority in [("k1", 0), ("k2", 0), ("api", -10), ("k3", 0)]:
        pool.submit(priority, lambda n=name: order.append(n))  # type: ignore[misc]
    pool.submit(1, lambda: done.set_result(None))
    gate.set()
    done.result(timeout=10)
    pool.shutdown()
    assert order == ["api", "k1", "k2", "k3"]
    with pytest.raises(RuntimeError):
        pool.submit(0, lambda: None)


def test_the_fake_engines_journal_records_every_submission(root: Path, tmp_path: Path) -> None:
    # The fleet campaign counts analyses per event across the workers it kills from these
    # files: one line per request submitted, a repeat of an event as a second line.
    journal = tmp_path / "journal"
    settings = settings_for(root, engine="fake", fake_engine_journal=journal)
    with build_engine(settings) as engine:
        a = build_analysis(settings, engine)
        try:
            for eid in ("a", "b", "a"):
                assert outcome(a, job(FileInput(root / "c0.mp4"), event_id=eid)).verdict
        finally:
            a.close()
    assert journal.read_text().splitlines() == ["a", "b", "a"]


@pytest.mark.skipif(cuda_decode_available(), reason="a GPU decodes here: nothing falls back")
def test_a_gpu_decode_that_falls_back_is_counted_with_its_reason(
    root: Path, engine: FakeEngine
) -> None:
    a = build_analysis(settings_for(root, decode_device="cuda"), engine)
    try:
        assert outcome(a, job(FileInput(root / "c0.mp4"))).verdict
    finally:
        a.close()
    assert a.metrics.decode_fallbacks.labels("device")._value.get() == 1
    assert a.metrics.decodes.labels("cpu")._value.get() == 1


def test_every_verdict_is_one_info_line_with_what_an_operator_asks_about(
    analysis: Analysis, root: Path
) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        verdict = outcome(analysis, job(FileInput(root / "c1.mp4"), event_id="e-log")).verdict
    assert verdict is not None
    assert verdict.decision is not None
    lines = [e for e in logs if e["event"] == "verdict"]
    assert len(lines) == 1
    [line] = lines
    assert line["log_level"] == "info"
    assert line["event_id"] == "e-log"
    assert line["video_id"] == "v"
    assert line["label"] == verdict.label
    assert line["fake_probability"] == verdict.fake_probability
    assert line["action"] == verdict.decision.action
    assert line["total_ms"] == verdict.timings_ms.total


def test_a_finished_video_leaves_no_reference_cycle_behind(analysis: Analysis, root: Path) -> None:
    """Frames must be freed when the outcome is dropped, not at the next cyclic collection:
    a cycle per video once kept every finished run, outcome and 16 frames alive between
    collections (bench-analyze's memory grew with the number of inputs)."""
    import gc

    from skyra_stream.media.decode import SampledVideo

    gc.collect()
    gc.disable()
    try:
        for i in range(6):
            outcome(analysis, job(FileInput(root / f"c{i % 3}.mp4"), event_id=f"cyc-{i}"))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, (SampledVideo, Outcome))]
        assert leaked == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize(
    ("finish", "reason"), [("deadline", "deadline"), ("length", "token_cap"), ("stop", "no_answer")]
)
def test_an_answer_cut_or_unfinished_is_unparseable_with_its_reason_and_counted(
    root: Path, finish: str, reason: str
) -> None:
    cut = FakeEngine(
        answer=lambda _r: ("<think>the wall shimmers and", 0.5), finish=lambda _r: finish
    )
    with cut:
        a = build_analysis(settings_for(root), cut)
        try:
            uri = (root / "c0.mp4").as_uri()
            verdict = outcome(a, job(ObjectInput(uri), uri=uri)).verdict
        finally:
            a.close()
    assert verdict is not None
    assert verdict.status == "unparseable"
    assert verdict.unparseable_reason == reason
    assert verdict.label is None
    cuts = {
        s.labels["reason"]: s.value
        for m in a.metrics.outputs_cut.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert cuts == {
        "deadline": 1.0 if reason == "deadline" else 0.0,
        "token_cap": 1.0 if reason == "token_cap" else 0.0,
    }
    tokens = a.metrics.generated_tokens.collect()[0].samples
    assert any(s.name.endswith("_count") and s.value == 1 for s in tokens)


def test_an_answered_verdict_has_no_unparseable_reason(analysis: Analysis, root: Path) -> None:
    uri = (root / "c0.mp4").as_uri()
    verdict = outcome(analysis, job(ObjectInput(uri), uri=uri)).verdict
    assert verdict is not None
    assert verdict.status == "ok"
    assert verdict.unparseable_reason is None
