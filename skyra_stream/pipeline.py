"""Messages in, one verdict or dead letter per event out: the worker's core, without Kafka.

    message -> parse -> event -> Analysis (fetch, decode, engine) -> Verdict | DeadLetter
            -> sink.publish -> acknowledged -> done(message)

What the pipeline adds to the analysis path is what only a stream needs: a message may hold
several events (an S3 notification) and is done only when every outcome for it has been
acknowledged by the sink; an event id already in flight is joined, not analysed twice; and
the caller (the Kafka consumer) stops reading once `in_flight` reaches `window`, so memory
stays flat however long the backlog.

An input's fault becomes a dead letter with its code and the message is done. The system's
fault (the engine died, the sink cannot publish) is fatal: `on_fatal` is called, the message
is never marked done, and the caller stops without committing it, so that it is redelivered
to a healthy worker.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from skyra_stream.analysis import Analysis, Job, ObjectInput, Outcome
from skyra_stream.decisions.verdicts import build_dead_letter
from skyra_stream.errors import SkyraError
from skyra_stream.events import RejectedEventError, parse_message
from skyra_stream.messages import DeadLetter, IngestEvent, KafkaPosition, Verdict
from skyra_stream.metrics import Metrics

log = structlog.get_logger(__name__)

Published = Verdict | DeadLetter


class Sink(Protocol):
    """Where outcomes go; the future resolves once the destination has them durably."""

    def publish(self, outcome: Published) -> concurrent.futures.Future[None]: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    raw: bytes
    position: KafkaPosition | None = None
    received_at: float = field(default_factory=time.monotonic)
    # The Kafka record's timestamp (epoch seconds): where verdict latency starts when the
    # event carries no submitted_at.
    event_time: float | None = None


DoneCallback = Callable[[Inbound], None]
# A submitted_at further from the Kafka record's time than this is not believed (an
# event's own field is untrusted input: a wrong clock must not page anyone).
MAX_CLOCK_SKEW_S = 24 * 3600.0


def verdict_clock_start(event: IngestEvent | None, inbound: Inbound) -> float | None:
    """When the verdict-latency SLI starts: the event's submitted_at where it is believable,
    else the Kafka record's timestamp; None when neither is known."""
    submitted = event.submitted_at if event is not None else None
    if submitted is not None and submitted.tzinfo is not None:
        at = submitted.timestamp()
        if inbound.event_time is None or abs(at - inbound.event_time) <= MAX_CLOCK_SKEW_S:
            return at
    return inbound.event_time


FatalCallback = Callable[[BaseException], None]


@dataclass
class _Message:
    inbound: Inbound
    done: DoneCallback
    pending: int = 0


@dataclass
class _Event:
    """One event's journey; waiters are duplicates that arrived while it was in flight."""

    event: IngestEvent
    message: _Message
    waiters: list[_Message] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Messages in flight before the reader should pause, and the bounds on one message."""

    max_messages: int = 64
    max_message_bytes: int = 1 << 20
    max_metadata_bytes: int = 16 * 1024


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig,
        analysis: Analysis,
        sink: Sink,
        *,
        on_fatal: FatalCallback | None = None,
    ) -> None:
        self.config = config
        self.analysis = analysis
        self.sink = sink
        self.metrics: Metrics = analysis.metrics
        self.on_fatal = on_fatal or (lambda exc: None)
        self._lock = threading.Lock()
        self._events: dict[str, _Event] = {}
        self._messages = 0
        self._fatal: BaseException | None = None

    # -- capacity ---------------------------------------------------------------------------

    @property
    def max_messages(self) -> int:
        """Messages the caller may have in flight before it should pause reading."""
        return self.config.max_messages

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._messages

    @property
    def failed(self) -> BaseException | None:
        """The fatal error, if any: a failed publish, or an engine that died (even while idle,
        so that the worker exits instead of holding partitions it cannot serve)."""
        return self._fatal or self.analysis.engine.dead

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
                max_message_bytes=self.config.max_message_bytes,
                max_metadata_bytes=self.config.max_metadata_bytes,
            )
        except SkyraError as exc:
            message.pending = 1
            event = exc.event if isinstance(exc, RejectedEventError) else None
            self._publish(message, self._dead_letter(message, exc, event), None)
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
            job = Job(
                event,
                ObjectInput(event.uri, event.version_id, event.size_bytes),
                accepted_at=inbound.received_at,
            )
            self.analysis.start(job).add_done_callback(self._on_analysed(state))

    # -- outcomes ---------------------------------------------------------------------------

    def _on_analysed(self, state: _Event) -> Callable[[concurrent.futures.Future[Outcome]], None]:
        return lambda future: self._analysed(state, future)

    def _analysed(self, state: _Event, future: concurrent.futures.Future[Outcome]) -> None:
        if future.cancelled():
            return  # the pipeline is closing; the message stays uncommitted
        exc = future.exception()
        if exc is not None:  # the engine died: nobody's input is to blame
            self._fatal_error(exc)
            return
        outcome = future.result()
        if outcome.verdict is not None:
            self._publish(state.message, outcome.verdict, state)
            return
        assert outcome.error is not None
        self._publish(
            state.message, self._dead_letter(state.message, outcome.error, state.event), state
        )

    def _dead_letter(
        self, message: _Message, error: SkyraError, event: IngestEvent | None
    ) -> DeadLetter:
        log.info(
            "dead_letter",
            event_id=event.event_id if event else None,
            code=error.code.value,
            reason=error.message,
        )
        return build_dead_letter(
            raw=message.inbound.raw,
            error=error,
            event=event,
            position=message.inbound.position,
            callback=self.analysis.callback(event) if event else None,
        )

    # -- output -----------------------------------------------------------------------------

    def _publish(self, message: _Message, outcome: Published, state: _Event | None) -> None:
        try:
            future = self.sink.publish(outcome)
        except Exception as exc:
            self._fatal_error(exc)
            return
        future.add_done_callback(lambda f: self._published(message, outcome, state, f))

    def _published(
        self,
        message: _Message,
        outcome: Published,
        state: _Event | None,
        future: concurrent.futures.Future[None],
    ) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("publish_failed", error=repr(exc))
            self._fatal_error(exc)
            return
        if isinstance(outcome, Verdict):
            self._count_verdict(outcome, message.inbound, state.event if state else None)
        else:
            self.metrics.dead_letters.labels(outcome.reason.code.value).inc()
        finished = [message]
        if state is not None:
            with self._lock:
                self._events.pop(state.event.event_id, None)
                finished.extend(state.waiters)
        for msg in finished:
            self._event_done(msg)

    def _count_verdict(self, verdict: Verdict, inbound: Inbound, event: IngestEvent | None) -> None:
        m = self.metrics
        m.verdicts.labels(verdict.label or "none").inc()
        m.verdict_status.labels(verdict.status, verdict.unparseable_reason or "").inc()
        started = verdict_clock_start(event, inbound)
        if started is not None:
            tenant = verdict.decision.inputs.tenant if verdict.decision else None
            latency = max(0.0, time.time() - started)
            m.verdict_latency.labels(m.tenant_label(tenant)).observe(latency)

    def _event_done(self, message: _Message) -> None:
        with self._lock:
            message.pending -= 1
            if message.pending > 0:
                return
            self._messages -= 1
            self.metrics.in_flight.set(self._messages)
        message.done(message.inbound)

    def _fatal_error(self, exc: BaseException) -> None:
        with self._lock:
            first = self._fatal is None
            if first:
                self._fatal = exc
        if first:
            log.error("pipeline_fatal", error=repr(exc))
            self.on_fatal(exc)

    # -- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        self.analysis.close()
