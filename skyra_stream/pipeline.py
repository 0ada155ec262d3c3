"""Message in, one verdict or dead letter per event out: the worker's core, without Kafka.

    parse -> fetch (fetch pool) -> decode (decode pool) -> engine (in-flight window)
          -> verdict -> sink.publish -> acknowledged -> done(message)

Every stage is bounded: the pools have fixed sizes, the engine its window, and the caller
(the Kafka consumer) stops reading when `in_flight` reaches `window`, so memory stays flat
however long the backlog. A message is done only when every outcome for it has been
acknowledged by the sink; only then may its offset be committed.

Failure has two kinds. An input's fault (bad event, missing object, not a video, a request
the engine refuses) becomes a dead letter with its code and the message is done. The
system's fault (the engine died, the sink cannot publish) is fatal: `on_fatal` is called, the
message is never marked done, and the caller stops without committing it, so it is
redelivered to a healthy worker.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from skyra_stream.engine import (
    EngineDeadError,
    EngineRequest,
    EngineResult,
    VerdictEngine,
    model_name,
)
from skyra_stream.errors import SkyraError
from skyra_stream.events import RejectedEventError, parse_message
from skyra_stream.fetch import FetchedObject, ObjectFetcher
from skyra_stream.frames import SampledVideo, sample_video
from skyra_stream.messages import DeadLetter, IngestEvent, KafkaPosition, ModelInfo, Source, Verdict
from skyra_stream.metrics import Metrics
from skyra_stream.settings import Settings
from skyra_stream.verdicts import (
    StageTimes,
    build_dead_letter,
    build_verdict,
    internal_error,
    worker_info,
)

log = structlog.get_logger(__name__)

Outcome = Verdict | DeadLetter


class Sink(Protocol):
    """Where outcomes go; the future resolves once the destination has them durably."""

    def publish(self, outcome: Outcome) -> concurrent.futures.Future[None]: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    raw: bytes
    position: KafkaPosition | None = None
    received_at: float = field(default_factory=time.monotonic)


DoneCallback = Callable[[Inbound], None]
FatalCallback = Callable[[BaseException], None]


@dataclass
class _Event:
    """One event's journey; waiters are duplicates that arrived while it was in flight."""

    event: IngestEvent
    message: _Message
    waiters: list[_Message] = field(default_factory=list)
    fetch_s: float | None = None
    decode_s: float | None = None


@dataclass
class _Message:
    inbound: Inbound
    done: DoneCallback
    pending: int = 0


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        engine: VerdictEngine,
        sink: Sink,
        *,
        fetcher: ObjectFetcher | None = None,
        metrics: Metrics | None = None,
        on_fatal: FatalCallback | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sink = sink
        self.fetcher = fetcher or ObjectFetcher(settings)
        self.metrics = metrics or Metrics()
        self.on_fatal = on_fatal or (lambda exc: None)
        self.limits = settings.decode_limits()
        self.model = ModelInfo(
            name=model_name(settings),
            revision=settings.model_revision,
        )
        self.worker = worker_info(settings.worker_id)
        self._fetch_pool = concurrent.futures.ThreadPoolExecutor(
            settings.fetch_concurrency, thread_name_prefix="fetch"
        )
        self._decode_pool = concurrent.futures.ThreadPoolExecutor(
            settings.decode_concurrency, thread_name_prefix="decode"
        )
        self._lock = threading.Lock()
        self._events: dict[str, _Event] = {}
        self._messages = 0
        self._fatal: BaseException | None = None

    # -- capacity ---------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """Messages the caller may have in flight before it should pause reading."""
        return self.settings.pipeline_window

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._messages

    @property
    def failed(self) -> BaseException | None:
        """The fatal error, if any: a failed publish, or an engine that died (even while idle,
        so that the worker exits instead of holding partitions it cannot serve)."""
        return self._fatal or self.engine.dead

    # -- entry ------------------------------------------------------------------------------

    def submit(self, inbound: Inbound, done: DoneCallback) -> None:
        """Start one message; `done(inbound)` is called once all its outcomes are acked."""
        self.metrics.messages_in.inc()
        message = _Message(inbound, done)
        with self._lock:
            self._messages += 1
        self.metrics.in_flight.set(self._messages)
        try:
            events = parse_message(
                inbound.raw,
                max_message_bytes=self.settings.max_message_bytes,
                max_metadata_bytes=self.settings.max_metadata_bytes,
            )
        except SkyraError as exc:
            message.pending = 1
            self._publish(
                message,
                build_dead_letter(
                    raw=inbound.raw,
                    error=exc,
                    event=exc.event if isinstance(exc, RejectedEventError) else None,
                    position=inbound.position,
                ),
                None,
            )
            return
        message.pending = len(events)
        self.metrics.events_in.inc(len(events))
        for event in events:
            with self._lock:
                running = self._events.get(event.event_id)
                if running is not None:
                    running.waiters.append(message)
                    self.metrics.duplicates.inc()
                    log.info("duplicate_joined", event_id=event.event_id)
                    continue
                state = _Event(event, message)
                self._events[event.event_id] = state
            self._fetch_pool.submit(self._guard, self._fetch, state)

    # -- stages -----------------------------------------------------------------------------

    def _guard(self, stage: Callable[[_Event], None], state: _Event) -> None:
        """Any exception a stage lets through becomes this event's dead letter."""
        with structlog.contextvars.bound_contextvars(
            event_id=state.event.event_id, video_id=state.event.video_id
        ):
            try:
                stage(state)
            except SkyraError as exc:
                self._fail(state, exc)
            except Exception as exc:
                log.exception("stage_failed", stage=stage.__name__)
                self._fail(state, internal_error(exc))

    def _fetch(self, state: _Event) -> None:
        started = time.monotonic()
        obj = self.fetcher.fetch(
            state.event.uri,
            version_id=state.event.version_id,
            expected_size=state.event.size_bytes,
        )
        state.fetch_s = time.monotonic() - started
        self.metrics.stage_seconds.labels("fetch").observe(state.fetch_s)
        try:
            self._decode_pool.submit(self._guard, lambda s: self._decode(s, obj), state)
        except RuntimeError:  # pool shut down while closing
            obj.close()
            raise

    def _decode(self, state: _Event, obj: FetchedObject) -> None:
        started = time.monotonic()
        with obj:
            video = sample_video(obj.body, self.limits)
        state.decode_s = time.monotonic() - started
        self.metrics.stage_seconds.labels("decode").observe(state.decode_s)
        source = Source(
            uri=state.event.uri, version_id=obj.version_id, etag=obj.etag, size_bytes=obj.size
        )
        request = EngineRequest(state.event.event_id, video.frames, video.timestamps_s)
        future = self.engine.submit(request)
        self._update_engine_gauges()
        future.add_done_callback(lambda f: self._answered(state, video, source, f))

    def _answered(
        self,
        state: _Event,
        video: SampledVideo,
        source: Source,
        future: concurrent.futures.Future[EngineResult],
    ) -> None:
        self._update_engine_gauges()
        with structlog.contextvars.bound_contextvars(
            event_id=state.event.event_id, video_id=state.event.video_id
        ):
            exc = future.exception()
            if isinstance(exc, EngineDeadError):
                self._fatal_error(exc)
                return
            if exc is not None:
                err = exc if isinstance(exc, SkyraError) else internal_error(exc)
                self._fail(state, err)
                return
            result = future.result()
            self.metrics.stage_seconds.labels("queue").observe(result.queue_s)
            self.metrics.stage_seconds.labels("infer").observe(result.infer_s)
            total = time.monotonic() - state.message.inbound.received_at
            times = StageTimes(
                fetch=state.fetch_s,
                decode=state.decode_s,
                queue=result.queue_s,
                infer=result.infer_s,
                total=total,
            )
            try:
                verdict = build_verdict(
                    event=state.event,
                    source=source,
                    video=video,
                    result=result,
                    model=self.model,
                    worker=self.worker,
                    times=times,
                    settings=self.settings,
                )
            except Exception as err:
                log.exception("verdict_build_failed")
                self._fail(state, internal_error(err))
                return
            self.metrics.stage_seconds.labels("total").observe(total)
            self._publish(state.message, verdict, state)

    def _fail(self, state: _Event, error: SkyraError) -> None:
        log.info("dead_letter", code=error.code.value, reason=error.message)
        dead = build_dead_letter(
            raw=state.message.inbound.raw,
            error=error,
            event=state.event,
            position=state.message.inbound.position,
        )
        self._publish(state.message, dead, state)

    # -- output -----------------------------------------------------------------------------

    def _publish(self, message: _Message, outcome: Outcome, state: _Event | None) -> None:
        try:
            future = self.sink.publish(outcome)
        except Exception as exc:
            self._fatal_error(exc)
            return
        future.add_done_callback(lambda f: self._published(message, outcome, state, f))

    def _published(
        self,
        message: _Message,
        outcome: Outcome,
        state: _Event | None,
        future: concurrent.futures.Future[None],
    ) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("publish_failed", error=repr(exc))
            self._fatal_error(exc)
            return
        if isinstance(outcome, Verdict):
            self.metrics.verdicts.labels(outcome.label or "none").inc()
        else:
            self.metrics.dead_letters.labels(outcome.reason.code.value).inc()
        finished = [message]
        if state is not None:
            with self._lock:
                self._events.pop(state.event.event_id, None)
                finished.extend(state.waiters)
        for msg in finished:
            self._event_done(msg)

    def _event_done(self, message: _Message) -> None:
        with self._lock:
            message.pending -= 1
            if message.pending > 0:
                return
            self._messages -= 1
            remaining = self._messages
        self.metrics.in_flight.set(remaining)
        message.done(message.inbound)

    def _fatal_error(self, exc: BaseException) -> None:
        with self._lock:
            first = self._fatal is None
            if first:
                self._fatal = exc
        if first:
            log.error("pipeline_fatal", error=repr(exc))
            self.on_fatal(exc)

    def _update_engine_gauges(self) -> None:
        n = self.engine.in_flight
        self.metrics.engine_in_flight.set(n)
        self.metrics.engine_occupancy.set(min(1.0, n / self.settings.max_num_seqs))

    # -- shutdown ---------------------------------------------------------------------------

    def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is in flight; False if the timeout passed first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.in_flight == 0 or self._fatal is not None:
                return self.in_flight == 0
            time.sleep(0.05)
        return self.in_flight == 0

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
