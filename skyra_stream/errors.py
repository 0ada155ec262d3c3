"""Error codes shared by the dead-letter topic, the CLI and the API.

Every way an event can fail ends in exactly one of these codes, so downstream services can
route on the code alone. `transient` says whether the worker may retry before giving up.
"""

from __future__ import annotations

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
    # A bug or an unexpected library error: still a dead letter, never a crashed worker.
    INTERNAL_ERROR = "internal_error"


class SkyraError(Exception):
    """A failure with a dead-letter code; `transient` failures may succeed when retried."""

    def __init__(self, code: ErrorCode, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient

    def __repr__(self) -> str:
        return f"SkyraError({self.code.value!r}, {self.message!r}, transient={self.transient})"
