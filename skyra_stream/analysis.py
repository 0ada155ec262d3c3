"""The one analysis path that every front door shares: input -> frames -> engine -> outcome.

    Job ─► [reuse: the store's SHA-256 on HEAD already answered] ─► fetch (I/O pool:
        allowlist, byte cap, retries, SHA-256 on the way) ─► [reuse: the content is known]
        ─► provenance (C2PA) ─► a `skip_model` rule may decide here: no decode, no engine
        ─► decode (CPU pool: 16 frames within the limits)
        ─► engine (any `model.engine.Engine`; batched with everything else in flight)
        ─► decision (the tenant's policy) ─► Outcome: a Verdict, or the SkyraError why not

The Kafka worker, the HTTP API and the CLI differ only in how a job arrives and where its
outcome goes; the stages, their limits, their timings, the mapping from failure to code
and the verdict itself are defined here once. `Analysis.start` never blocks: it returns a
future, so a threaded consumer, an asyncio server (`asyncio.wrap_future`) and a bounded CLI
loop all drive the same code.

Failures come in two kinds. A failure of the input (or of an upstream such as S3) resolves
the future with an `Outcome` whose `error` carries the dead-letter code. A failure of the
service itself (the engine died) fails the future with `EngineDeadError`: no input is blamed,
and the caller stops. Cancelling the future (an API timeout) stops the job at its next stage
and aborts its engine request.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from skyra_stream.decisions.calibration import CalibrationFile, calibrate_verdict
from skyra_stream.decisions.policy import (
    PolicyFile,
    before_model_inputs,
    decide,
    decide_before_model,
    inputs_of,
)
from skyra_stream.decisions.receipts import ReceiptWriter, receipt_wanted
from skyra_stream.decisions.reuse import ReuseCache, content_sha256, reused
from skyra_stream.decisions.verdicts import (
    StageTimes,
    build_skipped_verdict,
    build_verdict,
    worker_info,
)
from skyra_stream.errors import ErrorCode, ServiceError, SkyraError, internal_error
from skyra_stream.media.decode import DecodeLimits, SampledVideo, sample_video
from skyra_stream.media.fetch import FetchedObject, Fetcher
from skyra_stream.media.fingerprint import fingerprint
from skyra_stream.media.images import frames_from_images, load_frames_folder
from skyra_stream.media.inputs import (
    FileInput,
    FramesFolderInput,
    FramesInput,
    ObjectInput,
    StreamInput,
    VideoInput,
)
from skyra_stream.media.provenance import ProvenanceReader
from skyra_stream.messages import (
    Callback,
    Decision,
    IngestEvent,
    ModelInfo,
    Provenance,
    Source,
    Verdict,
)
from skyra_stream.metrics import Metrics
from skyra_stream.model.engine import (
    CUTS,
    Engine,
    EngineConfig,
    EngineRequest,
    EngineResult,
    settle,
)
from skyra_stream.pools import PriorityPool

__all__ = [
    "Analysis",
    "AnalysisConfig",
    "FileInput",
    "FramesFolderInput",
    "FramesInput",
    "Job",
    "ObjectInput",
    "Outcome",
    "StreamInput",
    "VideoInput",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One video to analyse. `accepted_at` (monotonic) is when the front door took it:
    `timings_ms.total` runs from there to the finished verdict, whichever door it came in by."""

    event: IngestEvent
    input: VideoInput
    priority: int = 0
    accepted_at: float = field(default_factory=time.monotonic)


def local_job(source: str) -> Job:
    """A command-line input as a job: `s3://` through the allowlist like an event, a local
    file or a folder of frames read directly (the operator named it). The event id is
    derived from the source, so a rerun over the same inputs has the same ids."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    inp: VideoInput
    if source.startswith("s3://"):
        uri, inp = source, ObjectInput(source)
    else:
        path = Path(source)
        uri = path.resolve().as_uri()
        inp = FramesFolderInput(path) if path.is_dir() else FileInput(path)
    return Job(IngestEvent(event_id=f"cli-{digest}", video_id=source[-512:], uri=uri), inp)


def local_jobs(sources: Iterable[str], names: dict[str, str]) -> Iterator[Job]:
    """Jobs for `sources`, lazily; `names` maps each started job's event id to its source."""
    for source in sources:
        job = local_job(source)
        names[job.event.event_id] = source
        yield job


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one job: a verdict, or the error (with its dead-letter code) that
    prevented one. `video` keeps the frames the model saw, for evidence sheets."""

    job: Job
    verdict: Verdict | None = None
    error: SkyraError | None = None
    video: SampledVideo | None = None


# -- the path -------------------------------------------------------------------------------


@dataclass(eq=False)  # one per job, hashed by identity
class _Run:
    job: Job
    future: concurrent.futures.Future[Outcome]
    source: Source | None = None
    fetched: FetchedObject | None = None  # a download waiting for the decoder
    video: SampledVideo | None = None
    provenance: Provenance | None = None
    sha256: str | None = None
    fingerprint: list[str] | None = None
    times: dict[str, float] = field(default_factory=dict)
    # One engine request per window (one for a short video), all submitted together so
    # that they batch with each other and with everything else in flight.
    engine_futures: list[concurrent.futures.Future[EngineResult]] = field(default_factory=list)
    unanswered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """What the path itself reads; its collaborators come built (see `Analysis`)."""

    fetch_concurrency: int = 8
    decode_workers: int = 1
    max_in_flight: int = 32  # videos at the engine at once
    max_num_seqs: int = 32  # the engine's batch, for the occupancy gauge
    max_object_bytes: int = 1 << 30
    max_frame_pixels: int = 3840 * 2160
    tenant_metadata_key: str = "tenant"
    worker_id: str | None = None


class Analysis:
    """The path, given its collaborators: the composition root (`skyra_stream.runtime`)
    builds the engine, the fetcher, the policies, the provenance reader and the verdict store
    from the settings once and hands them in, so that a test can hand in fakes instead."""

    def __init__(
        self,
        config: AnalysisConfig,
        engine: Engine,
        *,
        fetcher: Fetcher,
        limits: DecodeLimits,
        model: ModelInfo,
        engine_config: EngineConfig,
        policies: PolicyFile,
        provenance: ProvenanceReader | None = None,
        reuse: ReuseCache | None = None,
        calibration: CalibrationFile | None = None,
        metrics: Metrics | None = None,
        receipts: ReceiptWriter | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.fetcher = fetcher
        self.limits = limits
        self.model = model
        self.engine_config = engine_config
        self.policies = policies
        self.provenance = provenance
        self.reuse = reuse
        self.calibration = calibration
        self.receipts = receipts
        self.metrics = metrics or Metrics()
        self.worker = worker_info(config.worker_id)
        # Both pools take API jobs (negative priority) before the backlog, as the engine's
        # slots do: a caller waiting on HTTP never queues behind Kafka work.
        self._fetch_pool = PriorityPool(config.fetch_concurrency, "fetch")
        self._decode_pool = PriorityPool(config.decode_workers, "decode")
        self._lock = threading.Lock()
        # By future, so that a future's callback need not refer to its run: a run refers to
        # its future, and a cycle between them would keep the outcome's frames alive until
        # the next cyclic garbage collection (memory grew with the number of inputs).
        self._runs: dict[concurrent.futures.Future[Outcome], _Run] = {}

    @property
    def capacity(self) -> int:
        """Jobs worth having in progress at once: enough to keep the decoders busy and the
        engine's batch full, no more (each holds its decoded frames)."""
        return self.config.decode_workers + self.config.max_in_flight

    def start(self, job: Job) -> concurrent.futures.Future[Outcome]:
        """Begin one job; the future resolves with its Outcome (see the module docstring)."""
        run = _Run(job, concurrent.futures.Future())
        with self._lock:
            self._runs[run.future] = run
        run.future.add_done_callback(self._ended)
        try:
            self._fetch_pool.submit(job.priority, lambda: self._stage(run, self._fetch))
        except RuntimeError:  # closed: the caller is shutting down
            run.future.cancel()
        return run.future

    def run(self, jobs: Iterable[Job], limit: int | None = None) -> Iterator[Outcome]:
        """Outcomes of `jobs` in completion order, with at most `limit` in progress (the
        capacity by default), so that memory stays flat however many inputs there are (the
        CLI and eval)."""
        limit = max(1, limit or self.capacity)
        todo = iter(jobs)
        pending: set[concurrent.futures.Future[Outcome]] = set()
        more = True
        while True:
            while more and len(pending) < limit:
                job = next(todo, None)
                if job is None:
                    more = False
                else:
                    pending.add(self.start(job))
            if not pending:
                return
            # `wait`, not `as_completed(pending)`: the latter holds every future it was given
            # until the last is done, so a run's drain kept up to `limit` finished outcomes
            # and their frames alive at once (~85 MiB above the steady state, bench-analyze).
            done, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED
            )
            while done:  # each outcome is let go of once its caller has it
                yield done.pop().result()

    @property
    def in_progress(self) -> int:
        with self._lock:
            return len(self._runs)

    def close(self) -> None:
        """Stop taking jobs and cancel those still in progress (their engine requests are
        aborted); a stage already running finishes on its own."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:  # first, so that no stage still running can settle them
            run.future.cancel()
        self._fetch_pool.shutdown()
        self._decode_pool.shutdown()

    # -- stages -----------------------------------------------------------------------------

    def _stage(self, run: _Run, stage: Callable[[_Run], None]) -> None:
        """Run one stage; whatever it raises ends the job with the right kind of failure."""
        if run.future.done():  # cancelled while queued
            if run.fetched is not None:
                run.fetched.close()
            return
        event = run.job.event
        with structlog.contextvars.bound_contextvars(
            event_id=event.event_id, video_id=event.video_id
        ):
            try:
                stage(run)
            except ServiceError as exc:
                settle(run.future, exc)
            except SkyraError as exc:
                self._reject(run, exc)
            except Exception as exc:
                log.exception("stage_failed", stage=stage.__name__)
                self._reject(run, internal_error(exc))

    def _count_decode(self, run: _Run, video: SampledVideo) -> None:
        self.metrics.decodes.labels(video.decoded_on).inc()
        if video.fallback is not None:
            kind, reason = video.fallback
            self.metrics.decode_fallbacks.labels(kind).inc()
            log.info("decode_fallback", event_id=run.job.event.event_id, why=kind, reason=reason)

    def _fetch(self, run: _Run) -> None:
        started = time.monotonic()
        inp = run.job.input
        obj: FetchedObject | None = None
        if isinstance(inp, ObjectInput):
            if self.reuse is not None:
                stored = self.fetcher.stored_checksum(inp.uri, inp.version_id)
                if stored is not None:
                    run.source = Source(
                        uri=inp.uri,
                        version_id=stored.version_id,
                        etag=stored.etag,
                        size_bytes=stored.size,
                    )
                    if self._reused(run, stored.sha256):
                        return  # nothing downloaded
            obj = self.fetcher.fetch(
                inp.uri, version_id=inp.version_id, expected_size=inp.expected_size
            )
            run.source = Source(
                uri=inp.uri, version_id=obj.version_id, etag=obj.etag, size_bytes=obj.size
            )
        elif isinstance(inp, StreamInput):
            self._check_size(inp.size, "upload")
            run.source = Source(uri=run.job.event.uri, size_bytes=inp.size)
        elif isinstance(inp, FileInput):
            size = inp.path.stat().st_size
            self._check_size(size, str(inp.path))
            run.source = Source(uri=run.job.event.uri, size_bytes=size)
        else:
            run.source = Source(uri=run.job.event.uri)
        if obj is not None:  # only a download is a fetch worth timing
            run.fetched = obj
            self._time(run, "fetch", started)
        try:
            self._decode_pool.submit(run.job.priority, lambda: self._stage(run, self._decode))
        except RuntimeError:  # closing: the job is abandoned (redelivered), not failed
            if obj is not None:
                obj.close()
            run.future.cancel()

    def _decode(self, run: _Run) -> None:
        run.sha256 = self._content_sha256(run)
        if run.sha256 is not None and self._reused(run, run.sha256):
            return
        if self._decided_before_model(run):
            return
        started = time.monotonic()
        inp = run.job.input
        if run.fetched is not None:
            with run.fetched as obj:
                video = sample_video(obj.body, self.limits)
        elif isinstance(inp, StreamInput):
            video = sample_video(inp.body, self.limits)
        elif isinstance(inp, FileInput):
            video = sample_video(str(inp.path), self.limits)
        elif isinstance(inp, FramesInput):
            video = frames_from_images(
                inp.images, inp.timestamps_s, max_pixels=self.config.max_frame_pixels
            )
        elif isinstance(inp, FramesFolderInput):
            video = load_frames_folder(inp.folder)
        else:  # pragma: no cover - every input kind is handled above
            raise TypeError(f"unknown input {inp!r}")
        self._time(run, "decode", started)
        self._count_decode(run, video)
        run.video = video
        run.fingerprint = fingerprint(video.frames)
        event_id, priority = run.job.event.event_id, run.job.priority
        if video.windows:
            requests = [
                EngineRequest(f"{event_id}#w{k}", w.frames, w.timestamps_s, priority=priority)
                for k, w in enumerate(video.windows)
            ]
        else:
            requests = [EngineRequest(event_id, video.frames, video.timestamps_s, priority)]
        with run.lock:
            if run.future.done():
                return
            run.engine_futures = [self.engine.submit(r) for r in requests]
            run.unanswered = len(run.engine_futures)
            futures = list(run.engine_futures)
        self._engine_gauges()
        # A partial, not a closure over `futures`: a future keeps its callbacks after it
        # resolves, and a closure holding the list of futures would make a reference cycle
        # (futures -> callback -> list -> futures) that keeps the run, its outcome and its
        # 16 frames alive until the next cyclic garbage collection. Between collections,
        # memory then grew by several MiB per video (bench-analyze).
        callback = functools.partial(self._one_answered, run)
        for f in futures:
            f.add_done_callback(callback)

    def _one_answered(self, run: _Run, _f: concurrent.futures.Future[EngineResult]) -> None:
        with run.lock:
            run.unanswered -= 1
            if run.unanswered:
                return
            futures = list(run.engine_futures)
        if futures:  # empty: the job already ended (cancelled), nothing to settle
            self._answered(run, futures)

    def _answered(self, run: _Run, futures: list[concurrent.futures.Future[EngineResult]]) -> None:
        self._engine_gauges()
        if any(f.cancelled() for f in futures):
            return  # the job was cancelled; its own future says so
        failed = next((e for f in futures if (e := f.exception()) is not None), None)
        if failed is not None:
            # Back through _stage, so that the engine's errors map like every other stage's
            # (one failed window fails the video: no partial verdicts).
            self._stage(run, lambda _r: _raise(failed))
            return
        self._stage(run, lambda r: self._finish(r, [f.result() for f in futures]))

    def _finish(self, run: _Run, results: list[EngineResult]) -> None:
        video, source = run.video, run.source
        if video is None or source is None:  # cancelled meanwhile (a no-op then), or a bug
            raise RuntimeError("an answer for a job that was never decoded")
        # Windows run side by side: the video waited as long as its slowest one.
        queue_s = max(r.queue_s for r in results)
        infer_s = max(r.infer_s for r in results)
        self.metrics.stage_seconds.labels("queue").observe(queue_s)
        self.metrics.stage_seconds.labels("infer").observe(infer_s)
        self._count_tokens(results)
        total = time.monotonic() - run.job.accepted_at
        times = StageTimes(
            fetch=run.times.get("fetch"),
            provenance=run.times.get("provenance"),
            decode=run.times.get("decode"),
            queue=queue_s,
            infer=infer_s,
            total=total,
        )
        verdict = build_verdict(
            event=run.job.event,
            source=source,
            video=video,
            results=results,
            model=self.model,
            worker=self.worker,
            times=times,
            engine=self.engine_config,
        ).model_copy(
            update={
                "provenance": run.provenance,
                "content_sha256": run.sha256,
                "fingerprint": run.fingerprint,
            }
        )
        verdict = calibrate_verdict(verdict, self.calibration)
        decision = decide(self.policies, inputs_of(verdict, self.tenant(run.job.event)))
        verdict = verdict.model_copy(update={"decision": decision})
        self._count_decision(decision)
        if self.reuse is not None and run.sha256 is not None:
            self.reuse.remember(run.sha256, verdict)
        self.metrics.stage_seconds.labels("total").observe(total)
        self._settled(run, verdict, video)

    def _count_tokens(self, results: list[EngineResult]) -> None:
        self.metrics.generated_tokens.observe(sum(r.output_tokens for r in results))
        for r in results:
            if r.finish_reason in CUTS:
                self.metrics.outputs_cut.labels(CUTS[r.finish_reason]).inc()

    # -- reuse ------------------------------------------------------------------------------

    def _content_sha256(self, run: _Run) -> str | None:
        inp = run.job.input
        if run.fetched is not None:
            return run.fetched.sha256 or content_sha256(run.fetched.body)
        if isinstance(inp, StreamInput):
            return content_sha256(inp.body)
        if isinstance(inp, FileInput):
            with inp.path.open("rb") as body:
                return content_sha256(body)
        return None  # frames: no object, nothing to reuse

    def _reused(self, run: _Run, sha256: str) -> bool:
        """Settle the job with a stored verdict of the same content, when there is one."""
        if self.reuse is None:
            return False
        original = self.reuse.lookup(sha256)
        if original is None:
            return False
        if run.fetched is not None:
            run.fetched.close()
        event = run.job.event
        assert run.source is not None  # set before any lookup
        verdict = reused(
            original,
            event_id=event.event_id,
            video_id=event.video_id,
            source=run.source,
            timings_ms=StageTimes(
                fetch=run.times.get("fetch"), total=time.monotonic() - run.job.accepted_at
            ).as_ms(),
            worker=self.worker,
            content_sha256=sha256,
            created_at=datetime.now(UTC),
        )
        verdict = calibrate_verdict(verdict, self.calibration)
        decision = decide(self.policies, inputs_of(verdict, self.tenant(event)))
        verdict = verdict.model_copy(update={"decision": decision})
        self.metrics.gpu_requests_saved.inc()
        self._count_decision(decision)
        log.info("reused", reused_from=verdict.reused_from, sha256=sha256[:16])
        self._settled(run, verdict)
        return True

    # -- provenance and early decisions -----------------------------------------------------

    def tenant(self, event: IngestEvent) -> str | None:
        return event.metadata.get(self.config.tenant_metadata_key) or None

    def callback(self, event: IngestEvent) -> Callback | None:
        """Where the event's outcome goes as a webhook, for its tenant (None: nowhere)."""
        if event.callback_url is None:
            return None
        return Callback(url=event.callback_url, tenant=self.tenant(event))

    def _decided_before_model(self, run: _Run) -> bool:
        """Read the upload's content credentials; when a `skip_model` rule decides from
        them, settle the job with a skipped verdict (nothing decoded, no engine request)."""
        started = time.monotonic()
        run.provenance = self._read_provenance(run)
        if run.provenance is not None:
            self._time(run, "provenance", started)
            self.metrics.provenance.labels(run.provenance.state).inc()
        inputs = before_model_inputs(self.tenant(run.job.event), run.provenance)
        decision = decide_before_model(self.policies, inputs)
        if decision is None:
            return False
        if run.fetched is not None:
            run.fetched.close()
        assert run.source is not None  # set by the fetch stage
        verdict = build_skipped_verdict(
            event=run.job.event,
            source=run.source,
            provenance=run.provenance,
            decision=decision,
            model=self.model,
            worker=self.worker,
            times=StageTimes(
                fetch=run.times.get("fetch"),
                provenance=run.times.get("provenance"),
                total=time.monotonic() - run.job.accepted_at,
            ),
        )
        self.metrics.model_skipped.inc()
        self._count_decision(decision)
        self._settled(run, verdict)
        return True

    def _read_provenance(self, run: _Run) -> Provenance | None:
        if self.provenance is None:
            return None
        inp = run.job.input
        if run.fetched is not None:
            return self.provenance.read(run.fetched.body)
        if isinstance(inp, StreamInput):
            return self.provenance.read(inp.body)
        if isinstance(inp, FileInput):
            with inp.path.open("rb") as body:
                return self.provenance.read(body)
        return None  # frames: no file, no credentials

    def _count_decision(self, decision: Decision) -> None:
        self.metrics.decisions.labels(decision.action).inc()

    # -- helpers ----------------------------------------------------------------------------

    def _settled(self, run: _Run, verdict: Verdict, video: SampledVideo | None = None) -> None:
        """End the job with its verdict; first, on the I/O pool, its signed receipt when the
        tenant's policy asks for one (a failed receipt is counted and logged: the verdict
        still goes out, without one)."""
        mode = self.policies.for_tenant(self.tenant(run.job.event)).receipts
        stored = isinstance(run.job.input, ObjectInput) and verdict.source.uri.startswith("s3://")
        if self.receipts is not None and stored and receipt_wanted(mode, verdict):
            receipts = self.receipts
            try:
                self._fetch_pool.submit(
                    run.job.priority,
                    lambda: self._stage(
                        run, lambda r: self._end(r, self._receipt(receipts, verdict), video)
                    ),
                )
                return
            except RuntimeError:  # closing: no receipt, the verdict goes out as it is
                pass
        self._end(run, verdict, video)

    def _receipt(self, receipts: ReceiptWriter, verdict: Verdict) -> Verdict:
        try:
            stamped = receipts.write(verdict)
        except Exception as exc:  # the library's, S3's or ours: never the verdict's end
            self.metrics.receipts.labels("failed").inc()
            log.warning("receipt_failed", error=str(exc)[:300])
            return verdict
        self.metrics.receipts.labels("written").inc()
        return stamped

    def _end(self, run: _Run, verdict: Verdict, video: SampledVideo | None) -> None:
        """End the job with its verdict, and say so in one line (as `rejected` does for a
        dead letter): what an operator greps for when a platform asks about one upload."""
        callback = self.callback(run.job.event)
        if callback is not None:
            verdict = verdict.model_copy(update={"callback": callback})
        action = verdict.decision.action if verdict.decision else None
        log.info(
            "verdict",
            event_id=verdict.event_id,
            video_id=verdict.video_id,
            status=verdict.status,
            label=verdict.label,
            fake_probability=verdict.fake_probability,
            action=action,
            reused=verdict.reused_from is not None,
            total_ms=verdict.timings_ms.total,
        )
        settle(run.future, Outcome(run.job, verdict=verdict, video=video))

    def _reject(self, run: _Run, error: SkyraError) -> None:
        log.info("rejected", code=error.code.value, reason=error.message)
        settle(run.future, Outcome(run.job, error=error, video=run.video))

    def _ended(self, future: concurrent.futures.Future[Outcome]) -> None:
        with self._lock:
            run = self._runs.pop(future, None)
        if run is None:
            return
        with run.lock:
            engine_futures = run.engine_futures
            # The engine futures' callbacks refer to the run: let go of both, and of the
            # frames, now (the outcome keeps what its caller needs).
            run.engine_futures = []
            run.video = None
        if future.cancelled():
            for engine_future in engine_futures:
                engine_future.cancel()  # aborts the request inside the engine

    def _check_size(self, size: int, what: str) -> None:
        if size > self.config.max_object_bytes:
            raise SkyraError(
                ErrorCode.OBJECT_TOO_LARGE,
                f"{what} is {size} bytes, the limit is {self.config.max_object_bytes}",
            )

    def _time(self, run: _Run, stage: str, started: float) -> None:
        run.times[stage] = elapsed = time.monotonic() - started
        self.metrics.stage_seconds.labels(stage).observe(elapsed)

    def _engine_gauges(self) -> None:
        n = self.engine.in_flight
        self.metrics.engine_in_flight.set(n)
        self.metrics.engine_occupancy.set(min(1.0, n / self.config.max_num_seqs))


def _raise(exc: BaseException) -> None:
    raise exc
