"""Request and response bodies of the HTTP API (they cross a process boundary: pydantic).

Verdicts are the worker's `Verdict`, byte for byte the schema of the verdict topic, and
errors carry the dead-letter codes, so one client library reads both the topic and the API.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from skyra_stream.errors import ErrorCode, ServiceCode
from skyra_stream.messages import Identifier, Verdict


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnalyzeUri(_Body):
    """A video already in object storage, in one of the allowed buckets."""

    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="`s3://bucket/key`; only the configured buckets are read."
    )
    video_id: Identifier | None = Field(
        default=None, description="Your id of the video, echoed in the verdict."
    )
    version_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None


class AnalyzeBatch(_Body):
    items: list[AnalyzeUri] = Field(min_length=1, description="Analysed concurrently.")


class ApiError(_Body):
    """Why a request (or one batch item) got no verdict."""

    code: ErrorCode | ServiceCode = Field(
        description="A dead-letter code (`not_a_video`, ...) or one of the API's own codes."
    )
    message: str
    request_id: str | None = None


class BatchItem(_Body):
    index: int = Field(ge=0, description="Position of the item in the request.")
    status: Literal["ok", "rejected"]
    verdict: Verdict | None = None
    error: ApiError | None = None


class BatchResult(_Body):
    request_id: str
    results: list[BatchItem]


class Liveness(BaseModel):
    """/healthz: every loop that reports a heartbeat, with seconds since its last one."""

    ok: bool
    loops_age_s: dict[str, float]


class Readiness(BaseModel):
    """/readyz: each readiness check (the engine; partitions in the worker) by name."""

    ok: bool
    checks: dict[str, bool]
