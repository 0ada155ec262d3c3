"""Analyse one video for an HTTP caller on the shared engine, ahead of the Kafka backlog.

The same stages as the worker (fetch from an allowed bucket, sample 16 frames, the engine,
`build_verdict`), with the same limits and codes, but:
- engine requests carry `api_priority` (below the backlog's 0), so they take the next free
  place in the engine's in-flight window and, with SKYRA_SCHEDULING_POLICY=priority, are
  scheduled first by vLLM too;
- at most `api_max_concurrency` videos are in progress; past it callers get 429 at once
  rather than a queue that grows without bound;
- a request that outlives `api_timeout_s` is cancelled, and cancelling it aborts its vLLM
  request, so an abandoned call stops costing GPU time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import structlog
from pydantic import ValidationError

from skyra_stream.engine import EngineRequest, VerdictEngine, model_name
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.events import short_errors
from skyra_stream.fetch import ObjectFetcher
from skyra_stream.frames import SampledVideo, sample_video
from skyra_stream.images import ImageSource, frames_from_images
from skyra_stream.messages import IngestEvent, ModelInfo, Source, Verdict
from skyra_stream.metrics import Metrics
from skyra_stream.settings import Settings
from skyra_stream.verdicts import StageTimes, build_verdict, worker_info

log = structlog.get_logger(__name__)
T = TypeVar("T")


class OverloadedError(Exception):
    """More API videos in progress than `api_max_concurrency`: answer 429."""


class NotReadyError(Exception):
    """The engine is still loading (or dead): answer 503."""


class RequestTimeoutError(Exception):
    """The request took longer than `api_timeout_s`: answer 504."""


@dataclass(frozen=True, slots=True)
class Prepared:
    event: IngestEvent
    source: Source
    video: SampledVideo
    fetch_s: float | None
    decode_s: float


class AnalyzeService:
    def __init__(
        self,
        settings: Settings,
        engine: VerdictEngine,
        metrics: Metrics,
        fetcher: ObjectFetcher | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.fetcher = fetcher or ObjectFetcher(settings)
        self.limits = settings.decode_limits()
        self.model = ModelInfo(name=model_name(settings), revision=settings.model_revision)
        self.worker = worker_info(settings.worker_id)
        # Fetch and decode block; they run here, never on the event loop.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            settings.fetch_concurrency + settings.decode_concurrency, thread_name_prefix="api"
        )
        self._in_progress = 0

    # -- admission --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.engine.ready

    def admit(self, videos: int) -> None:
        """Reserve places for `videos`, or refuse the whole request (429)."""
        if not self.ready:
            raise NotReadyError("the engine is not ready")
        if self._in_progress + videos > self.settings.api_max_concurrency:
            raise OverloadedError(
                f"{self._in_progress} API videos in progress, the limit is "
                f"{self.settings.api_max_concurrency}"
            )
        self._in_progress += videos
        self.metrics.api_in_progress.set(self._in_progress)

    def release(self, videos: int) -> None:
        self._in_progress -= videos
        self.metrics.api_in_progress.set(self._in_progress)

    # -- inputs -----------------------------------------------------------------------------

    async def from_uri(
        self, uri: str, event_id: str, video_id: str | None, version_id: str | None = None
    ) -> Prepared:
        event = _event(
            event_id=event_id, video_id=video_id or uri[-512:], uri=uri, version_id=version_id
        )

        def work() -> Prepared:
            started = time.monotonic()
            obj = self.fetcher.fetch(uri, version_id=version_id)
            fetched = time.monotonic()
            with obj:
                video = sample_video(obj.body, self.limits)
            source = Source(uri=uri, version_id=obj.version_id, etag=obj.etag, size_bytes=obj.size)
            return Prepared(event, source, video, fetched - started, time.monotonic() - fetched)

        return await self._in_thread(work)

    async def from_upload(
        self, body: IO[bytes], size: int, filename: str | None, event_id: str, video_id: str | None
    ) -> Prepared:
        if size > self.settings.max_object_bytes:
            raise SkyraError(
                ErrorCode.OBJECT_TOO_LARGE,
                f"upload is {size} bytes, the limit is {self.settings.max_object_bytes}",
            )
        uri = f"upload:{_clean(filename) or 'video'}"
        event = _event(event_id=event_id, video_id=video_id or uri, uri=uri, size_bytes=size)

        def work() -> Prepared:
            started = time.monotonic()
            video = sample_video(body, self.limits)
            return Prepared(
                event, Source(uri=uri, size_bytes=size), video, None, time.monotonic() - started
            )

        return await self._in_thread(work)

    async def from_frames(
        self,
        images: Sequence[ImageSource],
        timestamps_s: Sequence[float],
        event_id: str,
        video_id: str | None,
    ) -> Prepared:
        uri = "frames:"
        event = _event(event_id=event_id, video_id=video_id or event_id, uri=uri)

        def work() -> Prepared:
            started = time.monotonic()
            video = frames_from_images(
                images, timestamps_s, max_pixels=self.settings.max_frame_pixels
            )
            return Prepared(event, Source(uri=uri), video, None, time.monotonic() - started)

        return await self._in_thread(work)

    # -- the engine -------------------------------------------------------------------------

    async def verdict(self, prepared: Prepared) -> Verdict:
        """The engine's answer as a Verdict; cancelling this coroutine aborts the request."""
        video = prepared.video
        request = EngineRequest(
            prepared.event.event_id,
            video.frames,
            video.timestamps_s,
            priority=self.settings.api_priority,
        )
        started = time.monotonic()
        future = self.engine.submit(request)
        # Cancelling the wrapper cancels the engine-side task, which aborts the vLLM request.
        result = await asyncio.wrap_future(future)
        before = (prepared.fetch_s or 0.0) + prepared.decode_s
        times = StageTimes(
            fetch=prepared.fetch_s,
            decode=prepared.decode_s,
            queue=result.queue_s,
            infer=result.infer_s,
            total=before + time.monotonic() - started,
        )
        return build_verdict(
            event=prepared.event,
            source=prepared.source,
            video=video,
            result=result,
            model=self.model,
            worker=self.worker,
            times=times,
            settings=self.settings,
        )

    async def within_timeout(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self.settings.api_timeout_s)
        except TimeoutError:
            raise RequestTimeoutError(
                f"no answer within {self.settings.api_timeout_s:g} s; the request was cancelled"
            ) from None

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _event(**fields: Any) -> IngestEvent:
    """The request as the ingest event the worker would have read: the same validation
    (ids without control characters, lengths), so the same 422 for what it refuses."""
    try:
        return IngestEvent.model_validate(fields)
    except ValidationError as exc:
        raise SkyraError(ErrorCode.INVALID_EVENT, short_errors(exc)) from None


def _clean(filename: str | None) -> str:
    """A client's file name, safe to echo in a verdict (no paths, no control characters)."""
    if not filename:
        return ""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200]
