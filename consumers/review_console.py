"""`skyra-stream review-console`: the review topic as a Label Studio queue, and back.

    review topic ─► one Label Studio task per verdict (found by event id, else imported with
        the model's prediction) ─► commit
    Label Studio webhook / catch-up poll ─► annotation ─► review event (review-results topic)
        or `invalid_review` dead letter + the reason on the task ─► mark the task's meta

Two directions, each at least once and idempotent:

- Tasks. A polled batch's offsets are committed only after every verdict in it has its task
  (or, for a record that is not a ticketed verdict, its acknowledged dead letter). Label Studio
  down or slow: the batch is sought back and retried with capped exponential backoff, polling
  on so the consumer stays in its group. A task is looked up by event id before it is
  imported, so a redelivered verdict (a crash between import and commit) creates nothing.
- Reviews. Label Studio's webhook only names a task; the bridge reads the task's annotations
  from the API, turns each saved state into one review event whose id is derived from the
  annotation and its `updated_at`, waits for the broker's acknowledgement, then records that id
  in the task's `meta`. A catch-up poll at start and every `poll_interval_s` goes over every
  annotated task the same way, so annotations made while the bridge was down are not lost; a
  crash between publish and meta republishes the same review id, which the audit drops.
- Links. A task's video link is presigned with a bounded lifetime; a queue can outlive it (a
  long weekend's backlog). Every `link_refresh_s` the tasks nobody has annotated yet whose
  link lapses within `link_margin_s` get a freshly signed one for the same object, so a
  reviewer never opens a task whose video has expired.

The bridge never holds the review-ticket key: it passes the ticket through untouched and the
review loop verifies it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from kafka import KafkaConsumer
from pydantic import ValidationError

from skyra_stream.consumers.ingest_loop import make_consumer
from skyra_stream.decisions.review_tasks import (
    labelling_config,
    review_from_annotation,
    task_for,
    task_source,
)
from skyra_stream.decisions.review_tasks import review_id as review_id_of
from skyra_stream.decisions.review_tickets import HEADER
from skyra_stream.decisions.verdicts import build_dead_letter
from skyra_stream.delivery.label_studio import LabelStudio, LabelStudioError, LabelStudioUnavailable
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.events import short_errors
from skyra_stream.media.links import expires_at
from skyra_stream.messages import KafkaPosition, ReviewEvent, Source, Verdict
from skyra_stream.metrics import Metrics
from skyra_stream.producers.kafka_config import KafkaConfig
from skyra_stream.producers.outcomes import OutcomePublisher, headers

log = structlog.get_logger(__name__)

META_KEY = "skyra_reviews"  # task meta: {annotation id: review id published}
ACK_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class ReviewConsoleConfig:
    group_id: str = "skyra-review-console"
    webhook_url: str | None = None  # where Label Studio reaches the bridge (None: poll only)
    webhook_secret: str | None = None
    poll_interval_s: float = 300.0
    link_refresh_s: float | None = None  # None: links are never re-signed
    link_margin_s: float = 0.0  # re-sign a link that lapses within this
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0


class Backoff:
    """Capped exponential backoff, reset by a success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s, self.next_s = initial_s, max_s, initial_s

    def step(self) -> float:
        wait, self.next_s = self.next_s, min(self.max_s, self.next_s * 2)
        return wait

    def reset(self) -> None:
        self.next_s = self.initial_s


class ReviewConsole:
    def __init__(
        self,
        kafka: KafkaConfig,
        studio: LabelStudio,
        video_url: Callable[[Source], str | None],
        config: ReviewConsoleConfig,
        *,
        consumer: KafkaConsumer | None = None,
        publisher: OutcomePublisher | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.kafka = kafka
        self.studio = studio
        self.video_url = video_url
        self.config = config
        self.metrics = metrics or Metrics()
        self._consumer = consumer
        # It publishes review events and dead letters, never a verdict to the review topic.
        self.publisher = publisher or OutcomePublisher(
            dataclasses.replace(kafka, review_topic=None)
        )
        self.project_id: int | None = None
        self._stop = threading.Event()
        self._pending: queue.Queue[int | None] = queue.Queue()
        self._queued: set[int] = set()
        self._queued_lock = threading.Lock()
        self._users: dict[int, str] = {}
        self._assigned = False

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._pending.put(None)

    def ready(self) -> bool:
        return self.project_id is not None and self._assigned

    def notify(self, task_id: int) -> None:
        """A task whose annotations changed (the webhook); handled once per queued id."""
        with self._queued_lock:
            if task_id in self._queued:
                return
            self._queued.add(task_id)
        self._pending.put(task_id)

    def setup(self) -> int:
        """The project, its ordered view and its webhook; waits out Label Studio being down."""
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        while not self._stop.is_set():
            try:
                project = self.studio.ensure_project(labelling_config())
                self.studio.ensure_suspicious_view(project)
                if self.config.webhook_url and self.config.webhook_secret:
                    self.studio.ensure_webhook(
                        project,
                        self.config.webhook_url,
                        {"Authorization": f"Bearer {self.config.webhook_secret}"},
                    )
                self.project_id = project
                self._label_studio_up(True)
                log.info("review_console_project", project=project)
                return project
            except LabelStudioUnavailable as exc:
                self._wait_out(backoff, exc)
        raise InterruptedError("stopped before Label Studio answered")

    def run(self) -> int:
        """Until `stop()`: 0, or 1 after a Kafka or Label Studio failure that is not transient."""
        annotations = threading.Thread(
            target=self._annotations_loop, name="annotations", daemon=True
        )
        code = 0
        try:
            if self.project_id is None:
                self.setup()
            consumer = self._consumer or self._make_consumer()
            self._consumer = consumer
            annotations.start()
            self._catch_up()
            self.refresh_links()
            self._tasks_loop(consumer)
        except InterruptedError:
            pass
        except Exception:
            log.exception("review_console_failed")
            code = 1
        finally:
            self.stop()
            if annotations.is_alive():
                annotations.join(timeout=30)
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
            self.publisher.close()
            self.studio.close()
        return code

    def _make_consumer(self) -> KafkaConsumer:
        consumer = make_consumer(self.kafka, group_id=self.config.group_id, group_instance_id=None)
        if not self.kafka.review_topic:
            raise ValueError("the review console needs SKYRA_REVIEW_CONSOLE_TOPIC")
        consumer.subscribe([self.kafka.review_topic])
        return consumer

    def _label_studio_up(self, up: bool) -> None:
        self.metrics.label_studio_up.labels(self.config.group_id).set(1 if up else 0)

    def _wait_out(self, backoff: Backoff, exc: Exception) -> None:
        wait = backoff.step()
        self.metrics.review_console_retries.inc()
        self._label_studio_up(False)
        log.warning("label_studio_unavailable", error=str(exc)[:300], retry_in_s=wait)
        self._stop.wait(wait)

    # -- verdicts -> tasks -----------------------------------------------------------------
    def _tasks_loop(self, consumer: KafkaConsumer) -> None:
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        next_poll = time.monotonic() + self.config.poll_interval_s
        refresh_s = self.config.link_refresh_s
        next_refresh = time.monotonic() + (refresh_s or 0.0)
        while not self._stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            self._assigned = bool(consumer.assignment())
            if time.monotonic() >= next_poll:
                self._catch_up()
                next_poll = time.monotonic() + self.config.poll_interval_s
            if refresh_s is not None and time.monotonic() >= next_refresh:
                self.refresh_links()
                next_refresh = time.monotonic() + refresh_s
            records = [r for part in batch.values() for r in part]
            if not records:
                continue
            try:
                letters = [self._ensure_task(r) for r in records]
            except LabelStudioUnavailable as exc:
                for partition, part in batch.items():  # read the batch again after the wait
                    consumer.seek(partition, part[0].offset)
                self._wait_out(backoff, exc)
                continue
            backoff.reset()
            self._label_studio_up(True)
            self.publisher.flush()
            for letter in letters:
                if letter is not None:
                    letter.result(timeout=ACK_TIMEOUT_S)
            consumer.commit()  # every task exists, every dead letter acknowledged

    def _ensure_task(self, record: Any) -> concurrent.futures.Future[None] | None:
        raw: bytes = record.value or b""
        position = KafkaPosition(
            topic=record.topic, partition=record.partition, offset=record.offset
        )
        ticket = next(
            (v.decode("utf-8", "replace") for k, v in record.headers or [] if k == HEADER), None
        )
        try:
            verdict = Verdict.model_validate_json(raw)
        except ValueError as exc:
            error = SkyraError(ErrorCode.INVALID_EVENT, f"not a verdict: {_short(exc)}")
            return self._dead_letter_record(raw, error, position)
        if not ticket:
            error = SkyraError(
                ErrorCode.INVALID_EVENT,
                "a review-topic record without a review-ticket header (not sent to review by "
                "a worker); no task was made",
            )
            return self._dead_letter_record(raw, error, position, verdict.event_id)
        assert self.project_id is not None
        if self.studio.find_task(self.project_id, verdict.event_id) is not None:
            self.metrics.review_tasks.labels("existing").inc()
            log.info("review_task_exists", event_id=verdict.event_id)
            return None
        task = task_for(verdict, raw.decode(), ticket, self.video_url(verdict.source) or "")
        try:
            self.studio.import_task(self.project_id, task)
        except LabelStudioUnavailable:
            raise
        except LabelStudioError as exc:
            error = SkyraError(ErrorCode.INTERNAL_ERROR, f"Label Studio refused the task: {exc}")
            return self._dead_letter_record(raw, error, position, verdict.event_id)
        self.metrics.review_tasks.labels("created").inc()
        log.info(
            "review_task_created",
            event_id=verdict.event_id,
            video_id=verdict.video_id,
            fake_probability=verdict.fake_probability,
        )
        return None

    def _dead_letter_record(
        self, raw: bytes, error: SkyraError, position: KafkaPosition, event_id: str | None = None
    ) -> concurrent.futures.Future[None]:
        self.metrics.review_tasks.labels("dead_letter").inc()
        log.info("review_task_rejected", code=error.code.value, reason=error.message[:300])
        letter = build_dead_letter(raw=raw, error=error, position=position)
        if event_id:
            letter = letter.model_copy(update={"event_id": event_id})
        return self.publisher.publish(letter)

    # -- annotations -> review events ------------------------------------------------------
    def _catch_up(self) -> None:
        """Every annotated task, as after a webhook: what happened while we were away."""
        assert self.project_id is not None
        try:
            tasks = self.studio.annotated_tasks(self.project_id)
        except LabelStudioUnavailable as exc:
            log.warning("catch_up_deferred", error=str(exc)[:300])
            return
        for task in tasks:
            if isinstance(task.get("id"), int):
                self.notify(task["id"])
        log.info("catch_up", annotated_tasks=len(tasks))

    def refresh_links(self, now: datetime | None = None) -> int:
        """Re-sign the video link of every unannotated task that lapses within the margin
        (or carries a link that is not one of ours); returns how many were re-signed."""
        if self.config.link_refresh_s is None:
            return 0
        assert self.project_id is not None
        lapse_by = (now or datetime.now(UTC)) + timedelta(seconds=self.config.link_margin_s)
        refreshed = 0
        try:
            for task in self.studio.unannotated_tasks(self.project_id):
                data = _object(task.get("data"))
                link = data.get("video")
                if not link or not isinstance(link, str) or not isinstance(task.get("id"), int):
                    continue  # never servable: the page already says so
                expiry = expires_at(link)
                if expiry is not None and expiry > lapse_by:
                    continue
                source = task_source(data)
                fresh = self.video_url(source) if source is not None else None
                if not fresh:
                    self.metrics.review_links.labels("unservable").inc()
                    log.warning("review_link_unservable", task=task["id"])
                    continue
                try:
                    self.studio.set_task_data(task["id"], {**data, "video": fresh})
                except LabelStudioUnavailable:
                    raise
                except LabelStudioError as exc:  # e.g. deleted meanwhile; the others go on
                    log.warning("review_link_refused", task=task["id"], error=str(exc)[:300])
                    continue
                self.metrics.review_links.labels("refreshed").inc()
                refreshed += 1
        except LabelStudioUnavailable as exc:
            log.warning("review_links_deferred", error=str(exc)[:300], refreshed=refreshed)
            return refreshed
        if refreshed:
            log.info("review_links_refreshed", tasks=refreshed)
        return refreshed

    def _annotations_loop(self) -> None:
        # One LabelStudio for both threads: httpx.Client "can be shared between threads".
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        while not self._stop.is_set():
            task_id = self._pending.get()
            if task_id is None:
                continue
            with self._queued_lock:
                self._queued.discard(task_id)
            try:
                self.handle_task(task_id)
                backoff.reset()
            except LabelStudioUnavailable as exc:
                self.notify(task_id)
                self._wait_out(backoff, exc)
            except Exception:
                # One task's trouble (a refused call, a broker timeout) must not stop the
                # others; the next catch-up poll tries it again.
                log.exception("review_task_failed", task=task_id)

    def handle_task(self, task_id: int) -> None:
        """Publish every saved annotation state of the task not yet published."""
        assert self.project_id is not None
        task = self.studio.task(task_id)
        if task.get("project") not in (None, self.project_id):
            return  # a webhook naming another project's task
        meta = _object(task.get("meta"))
        done = _object(meta.get(META_KEY))
        changed = False
        for annotation in self.studio.annotations(task_id):
            key = str(annotation.get("id"))
            if annotation.get("was_cancelled"):
                self.metrics.review_annotations.labels("skipped").inc()
                continue
            review_id = review_id_of(self.project_id, task_id, annotation)
            if done.get(key) == review_id:
                continue
            self._publish_annotation(task, annotation, review_id)
            done[key] = review_id
            changed = True
        if changed:
            self.studio.set_task_meta(task_id, {**meta, META_KEY: done})

    def _publish_annotation(
        self, task: dict[str, Any], annotation: dict[str, Any], review_id: str
    ) -> None:
        assert self.project_id is not None
        reviewer = self._reviewer(annotation.get("completed_by"))
        try:
            review = review_from_annotation(task, annotation, reviewer, self.project_id)
        except SkyraError as exc:
            self._reject(task, annotation, review_id, exc)
            return
        self._send_review(review)

    def _send_review(self, review: ReviewEvent) -> None:
        sent = self.publisher.send(
            self.kafka.review_results_topic,
            review.model_dump_json().encode(),
            review.verdict.video_id.encode(),
            headers("review", review.review_id),
        )
        self.publisher.flush()
        sent.result(timeout=ACK_TIMEOUT_S)
        self.metrics.review_annotations.labels("published").inc()
        log.info(
            "review_published",
            review_id=review.review_id,
            event_id=review.verdict.event_id,
            outcome=review.outcome,
            reviewer=review.reviewer,
        )

    def _reject(
        self, task: dict[str, Any], annotation: dict[str, Any], review_id: str, error: SkyraError
    ) -> None:
        raw = json.dumps({"task": task.get("id"), "annotation": annotation}, default=str).encode()
        letter = build_dead_letter(raw=raw, error=error)
        video_id = (task.get("data") or {}).get("video_id")
        letter = letter.model_copy(
            update={
                "event_id": review_id,
                "video_id": video_id if isinstance(video_id, str) else None,
            }
        )
        self.publisher.publish(letter).result(timeout=ACK_TIMEOUT_S)
        self.metrics.review_annotations.labels("dead_letter").inc()
        log.info("review_rejected", review_id=review_id, reason=error.message[:300])
        self._write_back(task, annotation, error)

    def _write_back(
        self, task: dict[str, Any], annotation: dict[str, Any], error: SkyraError
    ) -> None:
        """The reason on the task, where the reviewer sees it: a comment on the annotation
        where Label Studio has comments (Enterprise), else the page's problem line."""
        text = f"Not accepted ({error.code.value}): {error.message[:500]}. Fix and update."
        annotation_id = annotation.get("id")
        if isinstance(annotation_id, int):
            try:
                self.studio.comment(annotation_id, text)
                return
            except LabelStudioUnavailable:
                raise
            except LabelStudioError:
                pass  # Community edition: no comments API
        task_id = int(task["id"])
        data = _object(task.get("data"))
        data["problem"] = text
        self.studio.set_task_data(task_id, data)

    def _reviewer(self, user_id: Any) -> str:
        if not isinstance(user_id, int):
            return "label-studio-unknown"
        if user_id not in self._users:
            self._users[user_id] = self.studio.user_name(user_id)
        return self._users[user_id]


def _object(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _short(exc: Exception) -> str:
    return short_errors(exc) if isinstance(exc, ValidationError) else str(exc)[:300]
