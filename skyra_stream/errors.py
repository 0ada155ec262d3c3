"""Every way an analysis can fail, in one table: its code, its HTTP status, what it means.

The dead-letter topic, the CLI's rejections and the API's error bodies all carry these
codes, so a downstream service routes on the code alone. `CODES` is the only place where a
code gets its HTTP status and its description; the API's error responses and its OpenAPI
entries are generated from it.

Two families share one root (`SkyraError`):
- `ErrorCode`: the input's fault or an upstream's; the event ends as a dead letter with it.
- `ServiceCode`: the service's own state (loading, overloaded, timed out, a dead engine);
  the API answers with it, the worker never dead-letters it: a dead engine stops the worker
  so that its messages are redelivered to a healthy one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """Why an ingest event ended in the dead-letter topic instead of a verdict."""

    INVALID_EVENT = "invalid_event"
    MESSAGE_TOO_LARGE = "message_too_large"
    URI_NOT_ALLOWED = "uri_not_allowed"
    OBJECT_NOT_FOUND = "object_not_found"
    ACCESS_DENIED = "access_denied"
    OBJECT_TOO_LARGE = "object_too_large"
    FETCH_FAILED = "fetch_failed"
    NOT_A_VIDEO = "not_a_video"
    NO_VIDEO_STREAM = "no_video_stream"
    VIDEO_TOO_LARGE = "video_too_large"
    VIDEO_TOO_LONG = "video_too_long"
    DECODE_FAILED = "decode_failed"
    DECODE_TIMEOUT = "decode_timeout"
    ENGINE_FAILED = "engine_failed"
    INVALID_REVIEW = "invalid_review"
    WEBHOOK_FAILED = "webhook_failed"
    # A bug or an unexpected library error: still a dead letter, never a crashed worker.
    INTERNAL_ERROR = "internal_error"


class ServiceCode(StrEnum):
    """Answers about the service rather than the input: the API's own codes."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    NOT_READY = "not_ready"
    NOT_FOUND = "not_found"
    NOT_CONFIGURED = "not_configured"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CALLBACK_REFUSED = "callback_refused"


Code = ErrorCode | ServiceCode


@dataclass(frozen=True, slots=True)
class CodeInfo:
    status: int  # the HTTP status the API answers with
    meaning: str  # one line for the OpenAPI document and the docs


CODES: dict[Code, CodeInfo] = {
    ErrorCode.INVALID_EVENT: CodeInfo(422, "the event or request does not validate"),
    ErrorCode.MESSAGE_TOO_LARGE: CodeInfo(413, "the ingest message is over its byte limit"),
    ErrorCode.URI_NOT_ALLOWED: CodeInfo(403, "the URI is outside the allowed buckets or roots"),
    ErrorCode.ACCESS_DENIED: CodeInfo(403, "object storage refused the read"),
    ErrorCode.OBJECT_NOT_FOUND: CodeInfo(404, "no such object or version"),
    ErrorCode.OBJECT_TOO_LARGE: CodeInfo(413, "the object or body is over its byte limit"),
    ErrorCode.FETCH_FAILED: CodeInfo(502, "object storage kept failing past the retries"),
    ErrorCode.NOT_A_VIDEO: CodeInfo(415, "not a readable container"),
    ErrorCode.NO_VIDEO_STREAM: CodeInfo(415, "a container without a video stream"),
    ErrorCode.VIDEO_TOO_LARGE: CodeInfo(413, "frames over the pixel limit"),
    ErrorCode.VIDEO_TOO_LONG: CodeInfo(413, "longer than the duration limit"),
    ErrorCode.DECODE_FAILED: CodeInfo(422, "the video stream could not be decoded"),
    ErrorCode.DECODE_TIMEOUT: CodeInfo(422, "decoding outlived its time limit"),
    ErrorCode.ENGINE_FAILED: CodeInfo(500, "the engine refused or failed this request"),
    ErrorCode.INVALID_REVIEW: CodeInfo(422, "a review event that does not validate"),
    ErrorCode.WEBHOOK_FAILED: CodeInfo(502, "a webhook that never landed on its schedule"),
    ErrorCode.INTERNAL_ERROR: CodeInfo(500, "a bug; reported, never a crash"),
    ServiceCode.UNAUTHORIZED: CodeInfo(401, "missing or wrong bearer token"),
    ServiceCode.FORBIDDEN: CodeInfo(403, "the request names a tenant its token is not bound to"),
    ServiceCode.RATE_LIMITED: CodeInfo(429, "past the token's rate limit; see Retry-After"),
    ServiceCode.OVERLOADED: CodeInfo(429, "past SKYRA_API_MAX_CONCURRENCY; see Retry-After"),
    ServiceCode.TIMEOUT: CodeInfo(
        504, "past SKYRA_API_TIMEOUT_S; the engine request was cancelled"
    ),
    ServiceCode.NOT_READY: CodeInfo(503, "the engine is loading or gone"),
    ServiceCode.NOT_FOUND: CodeInfo(404, "no such route, or no such job for this token"),
    ServiceCode.NOT_CONFIGURED: CodeInfo(501, "a feature this deployment has not set up"),
    ServiceCode.METHOD_NOT_ALLOWED: CodeInfo(405, "the route does not take this method"),
    ServiceCode.CALLBACK_REFUSED: CodeInfo(
        422, "a job's callback_url that no delivery could ever call; the message names the rule"
    ),
}


def http_status(code: Code) -> int:
    return CODES[code].status


def code_for_status(status: int) -> Code:
    """The code of a status that the HTTP layer raised itself (routing, body bound)."""
    known: dict[int, Code] = {
        404: ServiceCode.NOT_FOUND,
        405: ServiceCode.METHOD_NOT_ALLOWED,
        413: ErrorCode.OBJECT_TOO_LARGE,
    }
    return known.get(status, ErrorCode.INVALID_EVENT)


class SkyraError(Exception):
    """The root of every error with a code; `transient` failures may succeed when retried."""

    code: Code

    def __init__(self, code: Code, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient

    @property
    def status(self) -> int:
        return http_status(self.code)

    @property
    def dead_letter(self) -> bool:
        """Whether this failure ends the event as a dead letter (the input's fault or an
        upstream's), rather than stopping the service."""
        return isinstance(self.code, ErrorCode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


class ServiceError(SkyraError):
    """The service cannot answer right now; never the input's fault."""

    default_code: ServiceCode = ServiceCode.NOT_READY

    def __init__(self, message: str, code: ServiceCode | None = None) -> None:
        super().__init__(code or self.default_code, message)


class NotReadyError(ServiceError):
    """The engine is still loading: 503."""


class EngineDeadError(ServiceError):
    """The engine process is gone: the API answers 503, the worker stops without
    committing what is unfinished, so another worker gets it."""


class OverloadedError(ServiceError):
    """More API videos in progress than `api_max_concurrency`: 429."""

    default_code = ServiceCode.OVERLOADED


class RequestTimeoutError(ServiceError):
    """The request outlived `api_timeout_s` and was cancelled: 504."""

    default_code = ServiceCode.TIMEOUT


class EngineRequestError(SkyraError):
    """This one request failed (an image the processor refuses, a prompt past
    max_model_len); the engine is fine."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.ENGINE_FAILED, message)


def internal_error(exc: BaseException) -> SkyraError:
    """A bug or an unexpected library error still ends as a dead letter, never as a crash."""
    return SkyraError(ErrorCode.INTERNAL_ERROR, f"unexpected {type(exc).__name__}: {exc}")
