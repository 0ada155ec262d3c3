"""Analyse local files, folders and s3:// URIs without Kafka, all through one batched engine.

Decoding runs in a small pool while the engine works, and each video is handed to the engine
as soon as its frames are ready, so a folder of thousands of clips streams through with
bounded memory instead of being decoded up front.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from skyra_stream.engine import EngineRequest, EngineResult, VerdictEngine, model_name
from skyra_stream.errors import ErrorCode, SkyraError
from skyra_stream.fetch import ObjectFetcher
from skyra_stream.frames import RGBFrame, SampledVideo, sample_video
from skyra_stream.messages import ErrorReason, IngestEvent, ModelInfo, Rejection, Source, Verdict
from skyra_stream.settings import Settings
from skyra_stream.verdicts import StageTimes, build_verdict, internal_error, worker_info


@dataclass(frozen=True, slots=True)
class Analysed:
    source: str
    outcome: Verdict | Rejection
    frames: Sequence[RGBFrame] = ()


def _event_for(source: str) -> IngestEvent:
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    uri = source if source.startswith("s3://") else Path(source).resolve().as_uri()
    return IngestEvent(event_id=f"cli-{digest}", video_id=source[-512:], uri=uri)


def _reject(source: str, error: SkyraError) -> Analysed:
    return Analysed(
        source, Rejection(source=source, error=ErrorReason(code=error.code, message=error.message))
    )


class Analyzer:
    def __init__(self, settings: Settings, engine: VerdictEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.fetcher = ObjectFetcher(settings)
        self.model = ModelInfo(name=model_name(settings), revision=settings.model_revision)
        self.worker = worker_info(settings.worker_id or "skyra-stream-cli")

    def _prepare(self, source: str) -> tuple[IngestEvent, Source, SampledVideo, float, float]:
        event = _event_for(source)
        started = time.monotonic()
        if source.startswith("s3://"):
            obj = self.fetcher.fetch(source)
            fetched = time.monotonic()
            with obj:
                video = sample_video(obj.body, self.settings.decode_limits())
            meta = Source(uri=source, version_id=obj.version_id, etag=obj.etag, size_bytes=obj.size)
        elif Path(source).is_dir():  # a clip shipped as frames (ViF-Bench reference data)
            from skyra_stream.evaluation import load_frames_folder  # noqa: PLC0415

            fetched = time.monotonic()
            video = load_frames_folder(Path(source))
            meta = Source(uri=event.uri)
        else:
            size = Path(source).stat().st_size
            if size > self.settings.max_object_bytes:
                raise SkyraError(
                    ErrorCode.OBJECT_TOO_LARGE,
                    f"{size} bytes, the limit is {self.settings.max_object_bytes}",
                )
            fetched = time.monotonic()
            video = sample_video(source, self.settings.decode_limits())
            meta = Source(uri=event.uri, size_bytes=size)
        return event, meta, video, fetched - started, time.monotonic() - fetched

    def run(
        self, sources: Sequence[str], on_progress: Callable[[Analysed], None] | None = None
    ) -> Iterator[Analysed]:
        """Yield one result per source, in completion order."""
        workers = max(1, self.settings.decode_concurrency)
        pending: dict[concurrent.futures.Future[EngineResult], _Context] = {}
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            prepared = {pool.submit(self._prepare, s): s for s in sources}
            for future in concurrent.futures.as_completed(prepared):
                source = prepared[future]
                try:
                    event, meta, video, fetch_s, decode_s = future.result()
                except SkyraError as exc:
                    yield from _emit(_reject(source, exc), on_progress)
                    continue
                except Exception as exc:
                    yield from _emit(_reject(source, internal_error(exc)), on_progress)
                    continue
                request = EngineRequest(event.event_id, video.frames, video.timestamps_s)
                times = StageTimes(fetch=fetch_s, decode=decode_s)
                pending[self.engine.submit(request)] = _Context(source, event, meta, video, times)
        for done in concurrent.futures.as_completed(pending):
            yield from _emit(self._finish(pending[done], done), on_progress)

    def _finish(self, ctx: _Context, future: concurrent.futures.Future[EngineResult]) -> Analysed:
        try:
            result = future.result()
        except SkyraError as exc:
            return _reject(ctx.source, exc)
        before = (ctx.times.fetch or 0.0) + (ctx.times.decode or 0.0)
        times = StageTimes(
            fetch=ctx.times.fetch,
            decode=ctx.times.decode,
            queue=result.queue_s,
            infer=result.infer_s,
            total=before + result.queue_s + result.infer_s,
        )
        verdict = build_verdict(
            event=ctx.event,
            source=ctx.meta,
            video=ctx.video,
            result=result,
            model=self.model,
            worker=self.worker,
            times=times,
            settings=self.settings,
        )
        return Analysed(ctx.source, verdict, ctx.video.frames)


@dataclass(frozen=True, slots=True)
class _Context:
    source: str
    event: IngestEvent
    meta: Source
    video: SampledVideo
    times: StageTimes


def _emit(item: Analysed, on_progress: Callable[[Analysed], None] | None) -> Iterator[Analysed]:
    if on_progress is not None:
        on_progress(item)
    yield item
