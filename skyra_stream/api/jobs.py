"""Async jobs: `POST /v1/jobs` and `GET /v1/jobs/{id}`, for platforms without Kafka.

A job is an ingest event published to the ingest topic (acknowledged by the broker before
the 202 answer), so it rides the fleet like every other upload: its scaling, its
at-least-once delivery, its dead letters; there is no second queue. An upload is written to
the staging bucket first and the event names it. The job's tenant is the caller's token's,
never the body's; its outcome comes back as a signed webhook (`callback_url`, delivered by
`skyra-stream webhooks`) and, when the deployment has a job store, by polling.

The route depends on injected callables (publish an event, stage an upload) so that this
module imports neither Kafka nor boto3: the composition root wires them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.datastructures import UploadFile as StarletteUpload

from skyra_stream.api.guards import ApiProblem
from skyra_stream.decisions.job_store import JOB_PREFIX, JobStore
from skyra_stream.delivery.callbacks import CallbackRefused
from skyra_stream.errors import ErrorCode, ServiceCode
from skyra_stream.events import short_errors
from skyra_stream.media.staging import safe_name
from skyra_stream.messages import IngestEvent, JobRecord


class JobRequest(BaseModel):
    """A video already in an allowed bucket, to analyse asynchronously."""

    model_config = ConfigDict(extra="forbid")

    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="`s3://bucket/key` in an allowed bucket."
    )
    video_id: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="Where the outcome goes as a signed webhook (https)."
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="Echoed in the event.")


class JobAccepted(BaseModel):
    job_id: str
    status: str = "queued"
    status_url: str = Field(description="GET it for the outcome (needs a job store).")


@dataclass
class JobsService:
    publish: Callable[[IngestEvent], None]  # returns once the broker acknowledged it
    stage: Callable[[IO[bytes], str], str] | None  # (body, key) -> uri; None: no uploads
    store: JobStore | None
    tenant_key: str = "tenant"
    # (url, tenant) -> None, or CallbackRefused naming the rule: what can be known at
    # submission (no name is resolved: that is checked at each delivery).
    check_callback: Callable[[str, str | None], None] | None = None


def _problem(code: ServiceCode | ErrorCode, message: str) -> ApiProblem:
    return ApiProblem(code, message)


def _check_callback_shape(url: str | None) -> None:
    """The syntax only, at submission; the tenant's allowlist and the addresses are checked
    at each delivery attempt, before any connection (delivery/callbacks.py)."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _problem(ErrorCode.INVALID_EVENT, "callback_url must be an https URL")


def jobs_router(
    authorized: Callable[[Request], Awaitable[None]],
    jobs: JobsService,
    errors: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """The routes, for an API where jobs are on (elsewhere they are not mounted: 404)."""
    router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[Depends(authorized)])

    @router.post(
        "/jobs",
        status_code=202,
        response_model=JobAccepted,
        responses=errors,
        summary="Queue one video (an s3:// URI as JSON, or a multipart `file` upload); the "
        "outcome is a signed webhook to `callback_url` and GET /v1/jobs/{id}",
    )
    async def submit(request: Request) -> JobAccepted:
        tenant: str | None = request.state.tenant
        job_id = f"{JOB_PREFIX}{uuid.uuid4().hex}"
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            fields = await _staged(request, job_id)
        else:
            try:
                fields = JobRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                raise _problem(ErrorCode.INVALID_EVENT, short_errors(exc)) from None
        if jobs.tenant_key in fields.metadata and fields.metadata[jobs.tenant_key] != tenant:
            raise _problem(
                ServiceCode.FORBIDDEN, "a job's tenant is its token's; the metadata names another"
            )
        _check_callback_shape(fields.callback_url)
        if fields.callback_url is not None and jobs.check_callback is not None:
            try:
                jobs.check_callback(fields.callback_url, tenant)
            except CallbackRefused as exc:
                raise _problem(
                    ServiceCode.CALLBACK_REFUSED, f"callback_url can never be delivered: {exc}"
                ) from None
        metadata = {**fields.metadata, **({jobs.tenant_key: tenant} if tenant else {})}
        try:
            event = IngestEvent(
                event_id=job_id,
                video_id=fields.video_id or job_id,
                uri=fields.uri,
                metadata=metadata,
                callback_url=fields.callback_url,
            )
        except ValidationError as exc:
            raise _problem(ErrorCode.INVALID_EVENT, short_errors(exc)) from None
        loop = asyncio.get_running_loop()
        if jobs.store is not None:
            await loop.run_in_executor(None, jobs.store.queued, job_id, tenant)
        try:
            await loop.run_in_executor(None, jobs.publish, event)
        except Exception as exc:
            raise _problem(
                ServiceCode.NOT_READY, f"the ingest topic did not take it: {exc}"
            ) from None
        return JobAccepted(job_id=job_id, status_url=f"/v1/jobs/{job_id}")

    @router.get(
        "/jobs/{job_id}",
        response_model=JobRecord,
        responses=errors,
        summary="A job: queued, done with its verdict, or failed with its dead letter",
    )
    async def status(job_id: str, request: Request) -> JobRecord:
        if jobs.store is None:
            raise _problem(
                ServiceCode.NOT_CONFIGURED,
                "no job store here (SKYRA_JOBS_STORE_URL or SKYRA_VERDICT_CACHE_URL): "
                "outcomes arrive only as webhooks",
            )
        record = None
        if job_id.startswith(JOB_PREFIX) and len(job_id) <= 64:
            record = await asyncio.get_running_loop().run_in_executor(None, jobs.store.get, job_id)
        # Another tenant's job is as unknown as one that does not exist.
        if record is None or record.tenant != request.state.tenant:
            raise _problem(ServiceCode.NOT_FOUND, f"no job {job_id[:80]!r} for this token")
        return record

    async def _staged(request: Request, job_id: str) -> JobRequest:
        if jobs.stage is None:
            raise _problem(ServiceCode.NOT_CONFIGURED, "uploads need SKYRA_JOBS_STAGING_BUCKET")
        form = await request.form(max_files=1, max_fields=16)
        try:
            upload = form.get("file")
            if not isinstance(upload, StarletteUpload):
                raise _problem(ErrorCode.INVALID_EVENT, "multipart field `file` is required")
            key = f"jobs/{job_id}/{safe_name(upload.filename)}"
            stage = jobs.stage
            uri = await asyncio.get_running_loop().run_in_executor(
                None, lambda: stage(upload.file, key)
            )
            fields = JobRequest(
                uri=uri,
                video_id=_text(form.get("video_id")),
                callback_url=_text(form.get("callback_url")),
            )
        except ValidationError as exc:
            raise _problem(ErrorCode.INVALID_EVENT, short_errors(exc)) from None
        finally:
            await form.close()
        return fields

    return router


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
