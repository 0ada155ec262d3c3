"""What stands in front of every route: request ids, the body-size bound, bearer tokens bound
to tenants, and a rate limit per token.

The body bound is a raw ASGI middleware because it must act while the body streams in: a
declared Content-Length over the limit is refused before one byte is read, and a chunked
body is cut off the moment it crosses the limit, so no request can make the server buffer
or spool more than `api_max_body_bytes`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyra_stream.errors import Code, SkyraError, http_status

REQUEST_ID_HEADER = "x-request-id"
# A request may name its tenant; it must be the tenant its token is bound to (else 403).
TENANT_HEADER = "x-skyra-tenant"
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a token is: a name for metrics and logs (never the token itself), the tenant whose
    policy decides its requests (None: the default policy), and its rate limit."""

    name: str
    tenant: str | None
    rate_per_s: float
    burst: int

    @property
    def tenant_label(self) -> str:
        return self.tenant or "default"


_OPTIONS = frozenset({"tenant", "rate", "burst", "name"})
_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ApiTokens:
    """Bearer tokens and the caller each one stands for.

    A line of the tokens file (a mounted Secret) is `<token> [tenant=T] [rate=R] [burst=B]
    [name=N]`: the token, the tenant its requests are decided for, its own rate limit (R
    requests per second sustained, B at once) and a name for metrics (by default a short
    hash of the token). A bare token (and every SKYRA_API_TOKENS entry) has no tenant: the
    default policy decides. The check is constant-time over every token."""

    def __init__(self, callers: Sequence[tuple[str, Caller]]) -> None:
        self._callers = [(token.encode(), caller) for token, caller in callers if token]

    @classmethod
    def parse(cls, lines: Sequence[str], *, rate_per_s: float, burst: int) -> ApiTokens:
        callers = []
        for n, line in enumerate(lines, 1):
            token, *options = line.split()
            values: dict[str, str] = {}
            for option in options:
                key, sep, value = option.partition("=")
                if not sep or key not in _OPTIONS or not _NAME.match(value):
                    # Never echo the line: it holds a token.
                    raise ValueError(
                        f"tokens line {n}: option {key!r} is not key=value of "
                        f"{sorted(_OPTIONS)} with a plain value"
                    )
                values[key] = value
            digest = hashlib.sha256(token.encode()).hexdigest()[:8]
            try:
                caller = Caller(
                    name=values.get("name", f"token-{digest}"),
                    tenant=values.get("tenant"),
                    rate_per_s=float(values.get("rate", rate_per_s)),
                    burst=int(values.get("burst", burst)),
                )
            except ValueError:
                raise ValueError(f"tokens line {n}: rate and burst must be numbers") from None
            if caller.rate_per_s <= 0 or caller.burst < 1:
                raise ValueError(f"tokens line {n}: rate must be > 0 and burst >= 1")
            callers.append((token, caller))
        return cls(callers)

    @property
    def enabled(self) -> bool:
        return bool(self._callers)

    @property
    def callers(self) -> list[Caller]:
        return [caller for _, caller in self._callers]

    def caller(self, authorization: str | None) -> Caller | None:
        """The caller of a valid `Authorization: Bearer <token>`, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        given = token.strip().encode()
        found = None
        # Compare against every token so the time taken does not say which one was close.
        for candidate, caller in self._callers:
            if hmac.compare_digest(given, candidate):
                found = caller
        return found


class RateLimiter:
    """A token bucket per caller: `burst` requests at once, refilled at `rate_per_s`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def retry_after(self, caller: Caller) -> float | None:
        """Take one request from the caller's bucket: None when allowed, else the seconds
        until the next one would be."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(caller.name, (float(caller.burst), now))
            tokens = min(float(caller.burst), tokens + (now - at) * caller.rate_per_s)
            if tokens >= 1.0:
                self._buckets[caller.name] = (tokens - 1.0, now)
                return None
            self._buckets[caller.name] = (tokens, now)
            return (1.0 - tokens) / caller.rate_per_s


class ApiProblem(SkyraError):
    """An error raised by the HTTP layer itself, with the headers its answer needs. Its
    status is its code's (errors.CODES) unless the HTTP layer says otherwise (a body that is
    neither JSON nor multipart: 415 with `invalid_event`)."""

    def __init__(
        self,
        code: Code,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(code, message)
        self.headers = headers or {}
        self._status = status

    @property
    def status(self) -> int:
        return self._status or http_status(self.code)
