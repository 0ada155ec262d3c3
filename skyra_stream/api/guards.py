"""What stands in front of every route: request ids, the body-size bound and bearer tokens.

The body bound is a raw ASGI middleware because it must act while the body streams in: a
declared Content-Length over the limit is refused before one byte is read, and a chunked
body is cut off the moment it crosses the limit, so no request can make the server buffer
or spool more than `api_max_body_bytes`.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Sequence

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(value: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    if value and _SAFE_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Binds `request_id` into every log line of the request and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(REQUEST_ID_HEADER.encode())
        rid = request_id_from(raw.decode("latin-1") if raw else None)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.encode(), rid.encode()),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            await self.app(scope, receive, send_with_id)


class BodyTooLargeError(HTTPException):
    """Raised from `receive` once a streamed body crosses the bound.

    An HTTPException so that the routes' own body parsing (FastAPI turns any other error
    while parsing a form into a 400) lets it through to the 413 handler."""

    def __init__(self, limit: int) -> None:
        # Closing the connection is the only way to stop a client that is still sending.
        super().__init__(413, f"request body over {limit} bytes", {"Connection": "close"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(scope, send, self.max_bytes)
            return
        seen = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await _too_large(scope, send, self.max_bytes)


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    rid = scope.get("state", {}).get("request_id")
    body = (
        b'{"code":"object_too_large","message":"request body over '
        + str(limit).encode()
        + b' bytes","request_id":'
        + (f'"{rid}"'.encode() if rid else b"null")
        + b"}"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerTokens:
    """Constant-time check of `Authorization: Bearer <token>` against the configured set."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode() for t in tokens if t]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def allows(self, authorization: str | None) -> bool:
        if not self._tokens:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        # Compare against every token so the time taken does not say which one was close.
        matches = [hmac.compare_digest(given, t) for t in self._tokens]
        return any(matches)
