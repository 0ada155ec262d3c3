"""The API's front door onto the analysis path: admission, priority and the time limit.

The analysis itself (fetch from an allowed bucket, sample 16 frames, the engine, the verdict)
is `skyra_stream.analysis`, the same code the worker runs. What an HTTP caller adds:
- jobs carry `api_priority` (below the backlog's 0), so they take the next free place in the
  engine's slots and, with SKYRA_SCHEDULING_POLICY=priority, are scheduled first
  by vLLM too;
- at most `api_max_concurrency` videos are in progress; past it callers get 429 at once
  rather than a queue that grows without bound;
- a request that outlives `api_timeout_s` is cancelled, and cancelling it aborts its engine
  request, so an abandoned call stops costing GPU time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from skyra_stream.analysis import (
    Analysis,
    FramesInput,
    Job,
    ObjectInput,
    StreamInput,
    VideoInput,
)
from skyra_stream.errors import (
    NotReadyError,
    OverloadedError,
    RequestTimeoutError,
)
from skyra_stream.events import validate_event
from skyra_stream.media.images import ImageSource
from skyra_stream.messages import Verdict

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What HTTP callers get: places in progress, engine priority and the time limit."""

    max_concurrency: int = 8
    priority: int = -10
    timeout_s: float = 120.0
    tenant_metadata_key: str = "tenant"


class AnalyzeService:
    def __init__(self, analysis: Analysis, config: ServiceConfig) -> None:
        self.analysis = analysis
        self.config = config
        self.metrics = analysis.metrics
        self._in_progress = 0

    # -- admission --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.analysis.engine.ready

    def admit(self, videos: int) -> None:
        """Reserve places for `videos`, or refuse the whole request (429)."""
        if not self.ready:
            raise NotReadyError("the engine is not ready")
        if self._in_progress + videos > self.config.max_concurrency:
            raise OverloadedError(
                f"{self._in_progress} API videos in progress, the limit is "
                f"{self.config.max_concurrency}"
            )
        self._in_progress += videos
        self.metrics.api_in_progress.set(self._in_progress)

    def release(self, videos: int) -> None:
        self._in_progress -= videos
        self.metrics.api_in_progress.set(self._in_progress)

    # -- jobs: the request as the ingest event the worker would have read --------------------

    def uri_job(
        self,
        uri: str,
        event_id: str,
        video_id: str | None,
        version_id: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Job:
        return self._job(
            ObjectInput(uri, version_id),
            tenant,
            event_id=event_id,
            video_id=video_id or uri[-512:],
            uri=uri,
            version_id=version_id,
        )

    def upload_job(
        self,
        body: IO[bytes],
        size: int,
        filename: str | None,
        event_id: str,
        video_id: str | None,
        *,
        tenant: str | None = None,
    ) -> Job:
        uri = f"upload:{_clean(filename) or 'video'}"
        return self._job(
            StreamInput(body, size),
            tenant,
            event_id=event_id,
            video_id=video_id or uri,
            uri=uri,
            size_bytes=size,
        )

    def frames_job(
        self,
        images: Sequence[ImageSource],
        timestamps_s: Sequence[float],
        event_id: str,
        video_id: str | None,
        *,
        tenant: str | None = None,
    ) -> Job:
        return self._job(
            FramesInput(images, timestamps_s),
            tenant,
            event_id=event_id,
            video_id=video_id or event_id,
            uri="frames:",
        )

    def _job(self, inp: VideoInput, tenant: str | None, **fields: Any) -> Job:
        """The same validation as an ingest event (ids without control characters, lengths),
        so the same 422 for what it refuses. The tenant is the caller's token's, never the
        request's: it rides in the event's metadata, where the policy looks for it."""
        if tenant is not None:
            fields["metadata"] = {self.config.tenant_metadata_key: tenant}
        return Job(validate_event(fields), inp, priority=self.config.priority)

    # -- the analysis -----------------------------------------------------------------------

    async def verdict(self, job: Job) -> Verdict:
        """The job's verdict, or its error raised; cancelling this coroutine cancels the job
        and aborts its engine request."""
        outcome = await asyncio.wrap_future(self.analysis.start(job))
        if outcome.error is not None:
            raise outcome.error
        assert outcome.verdict is not None
        return outcome.verdict

    async def within_timeout(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self.config.timeout_s)
        except TimeoutError:
            raise RequestTimeoutError(
                f"no answer within {self.config.timeout_s:g} s; the request was cancelled"
            ) from None


def _clean(filename: str | None) -> str:
    """A client's file name, safe to echo in a verdict (no paths, no control characters)."""
    if not filename:
        return ""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200]
