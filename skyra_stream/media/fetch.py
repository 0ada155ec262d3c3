"""Fetch the uploaded object: only from allowed buckets or local roots, bounded in size and time.

The URI in an event is untrusted. It only ever selects a bucket and key (or a path under a
configured root); the host, credentials and endpoint always come from configuration, so an
event cannot make the worker reach anything else.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import boto3
import botocore.config
import botocore.exceptions
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from skyra_stream.errors import ErrorCode, SkyraError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = structlog.get_logger(__name__)

CHUNK_BYTES = 1 << 20
_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound", "404", "InvalidArgument"}
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidObjectState",
    "403",
}
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
}


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """What fetching reads: the allowlist, the endpoint and the bounds on size and time."""

    s3_allowed_buckets: tuple[str, ...] = ()
    local_roots: tuple[Path, ...] = ()
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_connect_timeout_s: float = 5.0
    s3_read_timeout_s: float = 30.0
    s3_fetch_timeout_s: float = 300.0
    s3_max_attempts: int = 5
    s3_retry_max_wait_s: float = 8.0
    spool_dir: Path | None = None
    spool_memory_bytes: int = 16 << 20
    max_object_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True)
class ObjectLocation:
    """Where an allowed URI points: an S3 bucket and key, or a local file."""

    scheme: Literal["s3", "file"]
    bucket: str = ""
    key: str = ""
    path: Path | None = None


@dataclass
class FetchedObject:
    """A downloaded object; `body` is positioned at its start. Close it when done."""

    uri: str
    body: IO[bytes]
    size: int
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    sha256: str | None = None  # hex, computed while downloading
    attempts: int = 1
    elapsed_s: float = field(default=0.0)

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> FetchedObject:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class StoredChecksum:
    sha256: str
    size: int
    etag: str | None
    version_id: str | None


def resolve_uri(uri: str, config: FetchConfig) -> ObjectLocation:
    """Check a URI against the allowlist; raise `uri_not_allowed` for anything else."""
    if uri.startswith("s3://"):
        bucket, sep, key = uri[len("s3://") :].partition("/")
        if not sep or not key:
            raise SkyraError(ErrorCode.URI_NOT_ALLOWED, f"{uri!r} names no object key")
        if bucket not in config.s3_allowed_buckets:
            raise SkyraError(ErrorCode.URI_NOT_ALLOWED, f"bucket {bucket!r} is not allowed")
        return ObjectLocation(scheme="s3", bucket=bucket, key=key)
    if uri.startswith("file://"):
        return ObjectLocation(scheme="file", path=_allowed_path(uri, config))
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    raise SkyraError(ErrorCode.URI_NOT_ALLOWED, f"scheme {scheme!r} is not allowed")


def _allowed_path(uri: str, config: FetchConfig) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise SkyraError(ErrorCode.URI_NOT_ALLOWED, f"{uri!r} is not a plain local file URI")
    # Resolve symlinks and `..` first, then compare: a link inside a root that points out
    # of it is refused like a path that walks out.
    real = Path(os.path.realpath(unquote(parts.path)))
    for root in config.local_roots:
        root_real = Path(os.path.realpath(root))
        if real == root_real or root_real in real.parents:
            return real
    raise SkyraError(ErrorCode.URI_NOT_ALLOWED, f"{uri!r} is outside the allowed local roots")


def make_s3_client(config: FetchConfig) -> S3Client:
    """An S3 client whose own retries are off: tenacity in `ObjectFetcher` owns retrying."""
    client_config = botocore.config.Config(
        connect_timeout=config.s3_connect_timeout_s,
        read_timeout=config.s3_read_timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path" if config.s3_endpoint_url else "auto"},
        max_pool_connections=32,
    )
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=config.s3_endpoint_url,
        region_name=config.s3_region,
        config=client_config,
    )
    return client


class Fetcher(Protocol):
    """What the analysis path needs from object storage (as `model.engine.Engine` is what it
    needs from a model): a download within the bounds, and the store's own checksum when it
    has one, so that known content is recognised before any byte is read."""

    def fetch(
        self, uri: str, *, version_id: str | None = None, expected_size: int | None = None
    ) -> FetchedObject: ...

    def stored_checksum(self, uri: str, version_id: str | None = None) -> StoredChecksum | None: ...


class ObjectFetcher:
    """Downloads allowed objects with retries on transient failures and a hard byte cap."""

    def __init__(self, config: FetchConfig, s3_client: S3Client | None = None) -> None:
        self.config = config
        self._s3 = s3_client

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            self._s3 = make_s3_client(self.config)
        return self._s3

    def fetch(
        self, uri: str, *, version_id: str | None = None, expected_size: int | None = None
    ) -> FetchedObject:
        location = resolve_uri(uri, self.config)
        cap = self.config.max_object_bytes
        if expected_size is not None and expected_size > cap:
            raise SkyraError(
                ErrorCode.OBJECT_TOO_LARGE, f"event says {expected_size} bytes, the limit is {cap}"
            )
        if location.scheme == "file":
            assert location.path is not None
            return self._open_local(uri, location.path)
        return self._fetch_s3(uri, location, version_id)

    def stored_checksum(self, uri: str, version_id: str | None = None) -> StoredChecksum | None:
        """The SHA-256 the object store already holds for an object (S3 additional
        checksums, on HEAD), before anything is downloaded; None when it has none
        (uploaded without one, or as a multipart composite), for local files, or on any
        error: the download hashes the bytes anyway."""
        try:
            location = resolve_uri(uri, self.config)
        except SkyraError:
            return None
        if location.scheme != "s3":
            return None
        kwargs: dict[str, Any] = {
            "Bucket": location.bucket,
            "Key": location.key,
            "ChecksumMode": "ENABLED",
        }
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            head = self.s3.head_object(**kwargs)
        except Exception:
            return None
        value = head.get("ChecksumSHA256")
        if not isinstance(value, str) or "-" in value or head.get("ChecksumType") == "COMPOSITE":
            return None
        try:
            sha256 = base64.b64decode(value, validate=True).hex()
        except ValueError:
            return None
        return StoredChecksum(
            sha256=sha256,
            size=int(head.get("ContentLength", 0)),
            etag=(head.get("ETag") or "").strip('"') or None,
            version_id=head.get("VersionId") or version_id,
        )

    def _open_local(self, uri: str, path: Path) -> FetchedObject:
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise SkyraError(ErrorCode.OBJECT_NOT_FOUND, f"{uri!r} does not exist") from None
        except PermissionError:
            raise SkyraError(ErrorCode.ACCESS_DENIED, f"{uri!r} is not readable") from None
        except OSError as exc:
            raise SkyraError(ErrorCode.OBJECT_NOT_FOUND, f"{uri!r}: {exc.strerror}") from None
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            fh.close()
            raise SkyraError(ErrorCode.OBJECT_NOT_FOUND, f"{uri!r} is not a regular file")
        if st.st_size > self.config.max_object_bytes:
            fh.close()
            raise SkyraError(
                ErrorCode.OBJECT_TOO_LARGE,
                f"{st.st_size} bytes, the limit is {self.config.max_object_bytes}",
            )
        return FetchedObject(uri=uri, body=fh, size=st.st_size)

    def _fetch_s3(self, uri: str, loc: ObjectLocation, version_id: str | None) -> FetchedObject:
        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(self.config.s3_max_attempts),
            wait=wait_exponential_jitter(
                multiplier=0.2, jitter=0.2, max=self.config.s3_retry_max_wait_s
            ),
            retry=retry_if_exception(lambda e: isinstance(e, SkyraError) and e.transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        obj = retrying(self._get_once, uri, loc, version_id)
        obj.attempts = retrying.statistics.get("attempt_number", 1)
        obj.elapsed_s = time.monotonic() - started
        return obj

    def _get_once(self, uri: str, loc: ObjectLocation, version_id: str | None) -> FetchedObject:
        cap = self.config.max_object_bytes
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key}
        if version_id:
            kwargs["VersionId"] = version_id
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned to the caller
            max_size=self.config.spool_memory_bytes,
            dir=str(self.config.spool_dir) if self.config.spool_dir else None,
        )
        try:
            try:
                resp = self.s3.get_object(**kwargs)
            except Exception as exc:
                raise _classify(exc, uri) from None
            size = int(resp.get("ContentLength", 0))
            body = resp["Body"]
            try:
                if size > cap:
                    raise SkyraError(
                        ErrorCode.OBJECT_TOO_LARGE, f"object is {size} bytes, the limit is {cap}"
                    )
                digest = self._copy(body, spool, cap, uri)
            finally:
                body.close()
            return FetchedObject(
                uri=uri,
                body=spool,
                size=_spool_size(spool),
                etag=(resp.get("ETag") or "").strip('"') or None,
                version_id=resp.get("VersionId") or version_id,
                content_type=resp.get("ContentType"),
                sha256=digest,
            )
        except BaseException:
            spool.close()
            raise

    def _copy(self, body: Any, out: Any, cap: int, uri: str) -> str:
        """Copy into the spool, hashing on the way (no second read); the SHA-256 in hex."""
        deadline = time.monotonic() + self.config.s3_fetch_timeout_s
        total = 0
        digest = hashlib.sha256()
        while True:
            try:
                chunk = body.read(CHUNK_BYTES)
            except Exception as exc:
                raise _classify(exc, uri) from None
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
            total += len(chunk)
            if total > cap:
                raise SkyraError(ErrorCode.OBJECT_TOO_LARGE, f"object exceeds {cap} bytes")
            out.write(chunk)
            if time.monotonic() > deadline:
                raise SkyraError(
                    ErrorCode.FETCH_FAILED,
                    f"download took longer than {self.config.s3_fetch_timeout_s:.0f} s",
                    transient=True,
                )


def _spool_size(spool: Any) -> int:
    spool.seek(0, os.SEEK_END)
    size = int(spool.tell())
    spool.seek(0)
    return size


def _classify(exc: BaseException, uri: str) -> SkyraError:
    """Map a boto/network failure to a dead-letter code; only transient ones are retried."""
    if isinstance(exc, SkyraError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = f"{uri}: {code or status} {err.get('Message', '')}".strip()
        if code in _NOT_FOUND or status == 404:
            return SkyraError(ErrorCode.OBJECT_NOT_FOUND, detail)
        if code in _DENIED or status == 403:
            return SkyraError(ErrorCode.ACCESS_DENIED, detail)
        if code in _THROTTLED or status >= 500 or status == 429:
            return SkyraError(ErrorCode.FETCH_FAILED, detail, transient=True)
        return SkyraError(ErrorCode.FETCH_FAILED, detail)
    if isinstance(exc, botocore.exceptions.BotoCoreError | OSError):
        # Connection refused or reset, timeouts, truncated bodies: the network, not the object.
        return SkyraError(ErrorCode.FETCH_FAILED, f"{uri}: {exc}", transient=True)
    return SkyraError(ErrorCode.FETCH_FAILED, f"{uri}: {exc!r}")


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "fetch_retry",
        attempt=state.attempt_number,
        error=getattr(exc, "message", repr(exc)),
        sleep_s=round(state.next_action.sleep if state.next_action else 0.0, 3),
    )
