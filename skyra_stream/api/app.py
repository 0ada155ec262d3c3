"""The FastAPI application: health and metrics always, the analyze routes when asked for.

One app serves both processes: `skyra-stream serve` (the API alone) and `skyra-stream
worker` (probes and metrics, plus the API with SKYRA_API_ENABLED), so the probes, the
metrics and the API share one port and one engine.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyra_stream import __version__
from skyra_stream.analysis import Job
from skyra_stream.api.guards import (
    TENANT_HEADER,
    ApiProblem,
    ApiTokens,
    BodyLimitMiddleware,
    BodyTooLargeError,
    Caller,
    RateLimiter,
    RequestIdMiddleware,
)
from skyra_stream.api.jobs import JobsService, jobs_router
from skyra_stream.api.models import (
    AnalyzeBatch,
    AnalyzeUri,
    ApiError,
    BatchItem,
    BatchResult,
    Liveness,
    Readiness,
)
from skyra_stream.api.service import AnalyzeService
from skyra_stream.errors import (
    CODES,
    ErrorCode,
    ServiceCode,
    ServiceError,
    SkyraError,
    code_for_status,
)
from skyra_stream.events import short_errors
from skyra_stream.health import HealthState
from skyra_stream.messages import Verdict
from skyra_stream.metrics import Metrics, exposition
from skyra_stream.settings import Settings

log = structlog.get_logger(__name__)

API_ENDPOINTS = frozenset({"analyze", "analyze_batch", "analyze_frames"})
MAX_FRAMES = 256  # per /v1/analyze_frames call; thinned to the model's 16

Router = APIRouter  # what the other processes' own routes are (serve_probes)


def problem_from(exc: BaseException, settings: Settings) -> ApiProblem:
    """Every failure of an analysis as an ApiProblem: its status comes from its code."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, SkyraError):
        headers = {}
        if exc.code is ServiceCode.OVERLOADED:
            headers["Retry-After"] = str(settings.api_retry_after_s)
        return ApiProblem(exc.code, exc.message, headers)
    if isinstance(exc, StarletteHTTPException):  # the body bound, crossed while reading it
        return ApiProblem(
            code_for_status(exc.status_code),
            str(exc.detail),
            dict(exc.headers or {}),
            status=exc.status_code,
        )
    log.error("api_internal_error", error=repr(exc), exc_info=exc)
    return ApiProblem(ErrorCode.INTERNAL_ERROR, f"unexpected {type(exc).__name__}")


def _error_body(problem: ApiProblem, request_id: str | None) -> dict[str, Any]:
    return ApiError(code=problem.code, message=problem.message, request_id=request_id).model_dump()


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The OpenAPI error responses, generated from the code table (errors.CODES)."""
    by_status: dict[int, list[str]] = {}
    for code, info in CODES.items():
        by_status.setdefault(info.status, []).append(f"`{code.value}` ({info.meaning})")
    by_status[415].append("`invalid_event` for a body that is neither JSON nor multipart")
    return {
        status: {"model": ApiError, "description": "; ".join(lines)}
        for status, lines in sorted(by_status.items())
    }


ERROR_RESPONSES = error_responses()

VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AnalyzeUri.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "video_id": {"type": "string", "maxLength": 512},
                    },
                }
            },
        },
    }
}

BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AnalyzeBatch.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
        },
    }
}


def create_app(
    settings: Settings,
    health: HealthState,
    metrics: Metrics,
    service: AnalyzeService | None = None,
    *,
    api: bool = True,
    jobs: JobsService | None = None,
) -> FastAPI:
    """`api=False`: probes and metrics only (a worker without SKYRA_API_ENABLED)."""
    app = FastAPI(
        title="skyra-stream",
        version=__version__,
        summary="Grounded AI-generated-video verdicts (Skyra) on the worker's engine.",
        docs_url="/docs" if api else None,
        redoc_url=None,
        openapi_url="/openapi.json" if api else None,
    )
    tokens = ApiTokens.parse(
        settings.bearer_tokens(), rate_per_s=settings.api_rate_per_s, burst=settings.api_burst
    )
    for caller in tokens.callers:
        metrics.api_rate_limit.labels(caller.tenant_label, caller.name).set(caller.rate_per_s)

    @app.exception_handler(ApiProblem)
    async def on_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        body = _error_body(exc, getattr(request.state, "request_id", None))
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in list(exc.errors())[:5]
        ]
        problem = ApiProblem(ErrorCode.INVALID_EVENT, "; ".join(parts))
        return await on_problem(request, problem)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return await on_problem(request, problem_from(exc, settings))

    # -- probes and metrics (never behind a token: the kubelet and Prometheus call them) ---

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Liveness: the loops still turn",
        response_model=Liveness,
        responses={503: {"model": Liveness, "description": "a loop has stalled"}},
    )
    async def healthz() -> JSONResponse:
        ok, detail = health.alive()
        return JSONResponse({"ok": ok, **detail}, status_code=200 if ok else 503)

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: the engine (and partitions) are ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready yet, or no longer"}},
    )
    async def readyz() -> JSONResponse:
        ok, detail = health.ready()
        return JSONResponse({"ok": ok, **detail}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        return Response(exposition(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if api:
        authorized = _authorizer(settings, tokens, metrics)
        app.include_router(_api_router(settings, authorized, service))
        if jobs is not None:  # mounted (and documented) only where jobs are on
            app.include_router(jobs_router(authorized, jobs, ERROR_RESPONSES))
    return _wrap(app, settings, metrics)


def default_openapi() -> dict[str, Any]:
    """The OpenAPI document of an app with default settings and jobs on (committed as
    docs/openapi.json: it documents every route a deployment may serve)."""

    def nowhere(_event: Any) -> None:  # the document never calls it
        raise NotImplementedError

    jobs = JobsService(publish=nowhere, stage=None, store=None)
    return create_app(Settings(), HealthState(), Metrics(), jobs=jobs).openapi()


def _wrap(app: FastAPI, settings: Settings, metrics: Metrics) -> FastAPI:
    # Outermost first: ids for every log line, then the body bound, then per-route metrics.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def _authorizer(
    settings: Settings, tokens: ApiTokens, metrics: Metrics
) -> Callable[[Request], Awaitable[None]]:
    """The dependency in front of every /v1 route: who is calling, within its limits."""
    # Without tokens (allowed on a loopback address only) every caller is one anonymous
    # caller of the default policy, under the default rate limit.
    anonymous = Caller("anonymous", None, settings.api_rate_per_s, settings.api_burst)
    limiter = RateLimiter()

    async def authorized(request: Request) -> None:
        """Who is calling (401 without a valid token), within their rate limit (429 with
        Retry-After); the caller's tenant then decides the request's policy."""
        caller = tokens.caller(request.headers.get("authorization")) if tokens.enabled else None
        if caller is None and tokens.enabled:
            raise ApiProblem(
                ServiceCode.UNAUTHORIZED,
                "a valid `Authorization: Bearer <token>` header is required",
                {"WWW-Authenticate": 'Bearer realm="skyra-stream"'},
            )
        caller = caller or anonymous
        wait = limiter.retry_after(caller)
        if wait is not None:
            metrics.api_tenant_requests.labels(caller.tenant_label, "rate_limited").inc()
            raise ApiProblem(
                ServiceCode.RATE_LIMITED,
                f"past {caller.rate_per_s:g} requests per second (burst {caller.burst}) "
                f"for this token",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        named = request.headers.get(TENANT_HEADER)
        if named is not None and named != caller.tenant:
            metrics.api_tenant_requests.labels(caller.tenant_label, "forbidden").inc()
            raise ApiProblem(
                ServiceCode.FORBIDDEN,
                "this token is not bound to the tenant the request names; a token's "
                "requests are decided for its own tenant only",
            )
        metrics.api_tenant_requests.labels(caller.tenant_label, "accepted").inc()
        request.state.tenant = caller.tenant

    return authorized


def _api_router(
    settings: Settings,
    authorized: Callable[[Request], Awaitable[None]],
    service: AnalyzeService | None,
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["analyze"], dependencies=[Depends(authorized)])

    def svc() -> AnalyzeService:
        if service is None or not service.ready:
            raise ApiProblem(ServiceCode.NOT_READY, "the engine is loading")
        return service

    async def admitted(videos: int, work: Callable[[AnalyzeService], Awaitable[T]]) -> T:
        """Hold `videos` places for the whole request (or answer 429), within the timeout;
        every failure leaves as an ApiProblem with its status and code."""
        s = svc()
        try:
            s.admit(videos)
        except Exception as exc:
            raise problem_from(exc, settings) from None
        try:
            return await s.within_timeout(work(s))
        except Exception as exc:
            raise problem_from(exc, settings) from None
        finally:
            s.release(videos)

    async def one(job: Callable[[AnalyzeService], Job]) -> Verdict:
        return await admitted(1, lambda s: s.verdict(job(s)))

    @router.post(
        "/analyze",
        response_model=Verdict,
        responses=ERROR_RESPONSES,
        openapi_extra=VIDEO_BODY,
        summary="Analyse one video: an upload (multipart `file`) or an `s3://` URI (JSON)",
    )
    async def analyze(request: Request) -> Verdict:
        rid, tenant = request.state.request_id, request.state.tenant
        kind = _content_kind(request)

        # Admitted before the body is read: past the bound, a caller learns it (429) without
        # first uploading a whole video.
        async def work(s: AnalyzeService) -> Verdict:
            if kind == "json":
                body = _parse(AnalyzeUri, await request.body())
                job = s.uri_job(
                    body.uri, f"api-{rid}", body.video_id, body.version_id, tenant=tenant
                )
                return await s.verdict(job)
            form = await _form(request, max_files=1)
            try:
                upload = form.get("file")
                if not isinstance(upload, StarletteUpload):
                    raise ApiProblem(ErrorCode.INVALID_EVENT, "multipart field `file` is required")
                job = s.upload_job(
                    upload.file,
                    upload.size or 0,
                    upload.filename,
                    f"api-{rid}",
                    _text(form.get("video_id")),
                    tenant=tenant,
                )
                return await s.verdict(job)
            finally:
                await form.close()

        return await admitted(1, work)

    @router.post(
        "/analyze_batch",
        response_model=BatchResult,
        responses=ERROR_RESPONSES,
        openapi_extra=BATCH_BODY,
        summary="Analyse up to SKYRA_API_MAX_BATCH videos concurrently; results in order",
    )
    async def analyze_batch(request: Request) -> BatchResult:
        rid, tenant = request.state.request_id, request.state.tenant
        kind = _content_kind(request)
        form = None
        jobs: list[Callable[[AnalyzeService], Job]] = []
        try:
            if kind == "json":
                batch = _parse(AnalyzeBatch, await request.body())
                _check_batch(len(batch.items), settings)
                for i, item in enumerate(batch.items):
                    jobs.append(_uri_job(item, f"api-{rid}-{i}", tenant))
            else:
                form = await _form(request, max_files=settings.api_max_batch)
                uploads = [f for f in form.getlist("files") if isinstance(f, StarletteUpload)]
                if not uploads:
                    raise ApiProblem(ErrorCode.INVALID_EVENT, "multipart field `files` is required")
                _check_batch(len(uploads), settings)
                for i, upload in enumerate(uploads):
                    jobs.append(_upload_job(upload, f"api-{rid}-{i}", tenant))
            results = await admitted(len(jobs), lambda s: _gather(s, jobs, settings, rid))
            return BatchResult(request_id=rid, results=results)
        finally:
            if form is not None:
                await form.close()

    @router.post(
        "/analyze_frames",
        response_model=Verdict,
        responses=ERROR_RESPONSES,
        summary="Analyse pre-extracted frames (images) with their timestamps in seconds",
    )
    async def analyze_frames(
        request: Request,
        frames: Annotated[
            list[UploadFile], File(description="Frames in time order (PNG, JPEG, WebP...).")
        ],
        timestamps: Annotated[
            str, Form(description="JSON array of seconds, one per frame, ascending.")
        ],
        video_id: Annotated[str | None, Form(max_length=512)] = None,
    ) -> Verdict:
        rid = request.state.request_id
        if len(frames) > MAX_FRAMES:
            raise ApiProblem(
                ErrorCode.VIDEO_TOO_LARGE, f"{len(frames)} frames, at most {MAX_FRAMES}"
            )
        stamps = _timestamps(timestamps)
        files = [f.file for f in frames]
        tenant = request.state.tenant
        return await one(
            lambda s: s.frames_job(files, stamps, f"api-{rid}", video_id, tenant=tenant)
        )

    return router


async def _gather(
    service: AnalyzeService,
    jobs: list[Callable[[AnalyzeService], Job]],
    settings: Settings,
    rid: str,
) -> list[BatchItem]:
    async def item(i: int, job: Callable[[AnalyzeService], Job]) -> BatchItem:
        try:
            verdict = await service.verdict(job(service))
        except ServiceError:  # overloaded, timed out, not ready: the whole request's answer
            raise
        except Exception as exc:
            problem = problem_from(exc, settings)
            error = ApiError(code=problem.code, message=problem.message, request_id=rid)
            return BatchItem(index=i, status="rejected", error=error)
        return BatchItem(index=i, status="ok", verdict=verdict)

    return list(await asyncio.gather(*(item(i, j) for i, j in enumerate(jobs))))


def _uri_job(
    item: AnalyzeUri, event_id: str, tenant: str | None
) -> Callable[[AnalyzeService], Job]:
    return lambda s: s.uri_job(item.uri, event_id, item.video_id, item.version_id, tenant=tenant)


def _upload_job(
    upload: StarletteUpload, event_id: str, tenant: str | None
) -> Callable[[AnalyzeService], Job]:
    return lambda s: s.upload_job(
        upload.file, upload.size or 0, upload.filename, event_id, None, tenant=tenant
    )


def _check_batch(n: int, settings: Settings) -> None:
    if n > settings.api_max_batch:
        raise ApiProblem(
            ErrorCode.INVALID_EVENT, f"{n} items, at most {settings.api_max_batch} per batch"
        )


async def _form(request: Request, max_files: int) -> FormData:
    try:
        return await request.form(max_files=max_files, max_fields=4)
    except BodyTooLargeError:
        raise
    except StarletteHTTPException as exc:  # malformed multipart, too many parts
        raise ApiProblem(ErrorCode.INVALID_EVENT, f"multipart body: {exc.detail}") from None


def _content_kind(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        return "json"
    if ctype == "multipart/form-data":
        return "multipart"
    raise ApiProblem(
        ErrorCode.INVALID_EVENT, "send application/json or multipart/form-data", status=415
    )


M = TypeVar("M", AnalyzeUri, AnalyzeBatch)
T = TypeVar("T")


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiProblem(ErrorCode.INVALID_EVENT, short_errors(exc)) from None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 512:
        raise ApiProblem(ErrorCode.INVALID_EVENT, "video_id must be 1-512 characters")
    return value


def _timestamps(raw: str) -> list[float]:
    try:
        values = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
        stamps = [float(v) for v in values]
    except (ValueError, TypeError):
        raise ApiProblem(
            ErrorCode.INVALID_EVENT, "timestamps must be a JSON array of seconds"
        ) from None
    if not all(math.isfinite(s) for s in stamps):
        raise ApiProblem(ErrorCode.INVALID_EVENT, "timestamps must be finite numbers")
    return stamps


class MetricsMiddleware:
    """Requests and latency per API route and status (probes are not counted)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        endpoint = path.removeprefix("/v1/")
        if endpoint not in API_ENDPOINTS:  # unknown paths must not mint label values
            endpoint = "other"
        status = 500
        started = time.monotonic()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.api_requests.labels(endpoint, str(status)).inc()
            self.metrics.api_seconds.labels(endpoint).observe(time.monotonic() - started)
            log.info("api_request", endpoint=endpoint, status=status)
