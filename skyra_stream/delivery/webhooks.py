"""One outcome to one receiver, as the Standard Webhooks specification says, until it lands
or the schedule runs out.

- Signed with the `standardwebhooks` reference library (`webhook-id`, `webhook-timestamp`,
  `webhook-signature`: HMAC-SHA256 with the tenant's `whsec_` secret), never a hand-written
  signature. The id is the outcome's (`msg_<event id>`), the same on every attempt and after
  a restart, so a receiver drops duplicates by it; the timestamp is the attempt's.
- Retried with exponential backoff and jitter (tenacity) on a bounded schedule: connection
  errors, timeouts, 408, 429 and 5xx are retried; a refused callback (see `callbacks`), a
  redirect (never followed) or another 4xx is final at once.
- Every attempt checks the URL again (names can change) and connects to the address it
  checked; connect and read times and the size of the answer are bounded.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from standardwebhooks.webhooks import Webhook
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from skyra_stream.delivery.callbacks import (
    CallbackRefused,
    CallbackUnreachable,
    Network,
    PinnedTarget,
    Resolver,
    check_callback,
    system_resolver,
)

log = structlog.get_logger(__name__)

USER_AGENT: Final = "skyra-stream-webhooks/1"
# The tenants file's entry for events without a tenant (tokens bound to none).
DEFAULT_TENANT: Final = "default"


class TenantHooks(BaseModel):
    """One tenant's webhook secret (Standard Webhooks `whsec_<base64>`) and allowed hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr
    hosts: list[str] = Field(min_length=1, description="Exact names, or *.example.com.")

    @field_validator("secret")
    @classmethod
    def _usable(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not raw.startswith("whsec_") or len(key) < 16:
            raise ValueError("not a Standard Webhooks secret (whsec_<base64 of 16+ bytes>)")
        return value


class WebhookTenants(BaseModel):
    """SKYRA_WEBHOOK_TENANTS_FILE (a mounted Secret): the tenants that may get webhooks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: dict[str, TenantHooks] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    tenants: Mapping[str, TenantHooks] = field(default_factory=dict)
    allowed_networks: tuple[Network, ...] = ()
    http_hosts: tuple[str, ...] = ()
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    max_response_bytes: int = 64 << 10
    max_attempts: int = 8
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0

    @staticmethod
    def networks(values: list[str]) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)


class _Retryable(Exception):
    """An attempt that may succeed later (the message says why it did not now)."""


class _Final(Exception):
    """An attempt that will never succeed (refused, redirected, 4xx)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    detail: str  # the last status or error


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the checked address, with the name for SNI and certificate verification."""

    def __init__(self, target: PinnedTarget, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._ip = target.ip
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


class WebhookSender:
    def __init__(
        self,
        config: WebhookConfig,
        *,
        resolver: Resolver = system_resolver,
        sleep: Callable[[float], None] = time.sleep,
        on_attempt: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.config = config
        self._resolver = resolver
        self._sleep = sleep
        self._on_attempt = on_attempt
        self._tls = ssl.create_default_context()

    def deliver(
        self,
        url: str,
        tenant: str | None,
        msg_id: str,
        event_type: str,
        data: Any,
        *,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> Delivery:
        """Deliver with retries; `on_retry(attempts, why)` is called before each wait."""
        hooks = self.config.tenants.get(tenant or DEFAULT_TENANT)
        if hooks is None:
            return Delivery(False, 0, f"tenant {tenant!r} has no webhook secret configured")
        body = json.dumps(
            {"type": event_type, "timestamp": _now().isoformat(), "data": data},
            separators=(",", ":"),
        )
        signer = Webhook(hooks.secret.get_secret_value())
        attempts = 0
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_attempts),
            # initial * 2^n, capped, plus up to `initial` of jitter so that a fleet's
            # retries to one receiver do not arrive in lockstep.
            wait=wait_exponential_jitter(
                multiplier=self.config.backoff_initial_s,
                max=self.config.backoff_max_s,
                jitter=self.config.backoff_initial_s,
            ),
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=(
                (lambda state: on_retry(state.attempt_number, _why(state)))
                if on_retry is not None
                else None
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    self._attempt(url, hooks.hosts, signer, msg_id, body)
        except (_Final, RetryError) as exc:
            reason = exc.last_attempt.exception() if isinstance(exc, RetryError) else exc
            return Delivery(False, attempts, str(reason))
        return Delivery(True, attempts, "2xx")

    def _attempt(self, url: str, hosts: list[str], signer: Webhook, msg_id: str, body: str) -> None:
        try:
            target = check_callback(
                url,
                hosts,
                allowed_networks=self.config.allowed_networks,
                http_hosts=self.config.http_hosts,
                resolver=self._resolver,
            )
        except CallbackRefused as exc:
            self._on_attempt("refused")
            raise _Final(f"refused: {exc}") from None
        except CallbackUnreachable as exc:  # DNS now: worth another attempt later
            self._on_attempt("error")
            raise _Retryable(str(exc)) from None
        stamp = _now()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": signer.sign(msg_id, stamp, body),
        }
        try:
            status = self._post(target, body.encode(), headers)
        except (OSError, http.client.HTTPException) as exc:
            self._on_attempt("error")
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        self._on_attempt(str(status // 100) + "xx")
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise _Final(f"HTTP {status}: a redirect, not followed")
        if status in (408, 429) or status >= 500:
            raise _Retryable(f"HTTP {status}")
        raise _Final(f"HTTP {status}")

    def _post(self, target: PinnedTarget, body: bytes, headers: dict[str, str]) -> int:
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            conn = _PinnedHTTPS(target, self._tls, self.config.connect_timeout_s)
        else:
            conn = http.client.HTTPConnection(
                target.ip, target.port, timeout=self.config.connect_timeout_s
            )
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self.config.read_timeout_s)
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(self.config.max_response_bytes)  # bounded; the rest is dropped
            return response.status
        finally:
            conn.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _why(state: RetryCallState) -> str:
    failed = state.outcome.exception() if state.outcome is not None else None
    return str(failed) if failed is not None else "unknown"
