"""Content reuse: a repost of content already analysed gets its verdict without decode or GPU.

Viral uploads arrive thousands of times, byte for byte. The store is keyed by the content's
SHA-256 plus everything that changes the answer (`answer_identity`: the model, the prompt,
the frame and engine settings, the C2PA trust configuration), so a new checkpoint or a new
prompt never serves an old answer. The decision is not part of the key: it is re-run under
the current policy and the event's own tenant every time.

Two stores: a bounded in-process LRU (one worker), or Redis/Valkey shared by the fleet
(`SKYRA_VERDICT_CACHE_URL`; entries expire after `SKYRA_VERDICT_CACHE_TTL_S`, and the
server's own `maxmemory` with an LRU policy bounds its memory).

A shared store is outside the worker's trust: whoever can write to that Redis could make any
content "real" for every tenant. So every entry is sealed (`EntrySeal`: HMAC-SHA256 with
`SKYRA_VERDICT_CACHE_KEY` over the entry's store key and its bytes, so an entry cannot be
forged nor moved to another content's key), and an entry whose seal does not verify is a
miss, counted as `rejected` and logged, never served. During a key rotation the previous key
(`SKYRA_VERDICT_CACHE_PREVIOUS_KEY`) still opens old entries until they expire.

A cache that fails is a cache that misses: the error is counted and logged once, the store
is left alone for `RETRY_AFTER_S`, and every job goes on to the model as if there were no
cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

import structlog

from skyra_stream.media.provenance import ProvenanceConfig
from skyra_stream.messages import ModelInfo, Verdict
from skyra_stream.metrics import Metrics
from skyra_stream.model.engine import EngineConfig
from skyra_stream.model.prompt import render_prompt

log = structlog.get_logger(__name__)

KEY_PREFIX: Final = "skyra:verdict:v1"
RETRY_AFTER_S: Final = 5.0
CHUNK: Final = 1 << 20


def content_sha256(body: IO[bytes]) -> str:
    """SHA-256 of a seekable body, read once; the body is left at its start."""
    body.seek(0)
    digest = hashlib.sha256()
    while chunk := body.read(CHUNK):
        digest.update(chunk)
    body.seek(0)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ReuseConfig:
    """Whether verdicts are reused, and where they are kept: Redis/Valkey at `url` (a secret:
    it may carry a password), else an in-process LRU of `max_entries`."""

    enabled: bool = True
    url: str | None = None
    key: bytes | None = None  # seals entries; required with `url`
    previous_key: bytes | None = None  # opens entries sealed before a rotation
    ttl_s: float = 7 * 24 * 3600.0
    max_entries: int = 10_000
    timeout_s: float = 0.25

    def __repr__(self) -> str:  # the URL may hold a password: never in a log line
        return f"ReuseConfig(enabled={self.enabled}, url={'***' if self.url else None}, key=***)"


SEAL_PREFIX: Final = b"skyra-seal-v1:"
_MAC_HEX: Final = 64


class EntrySeal:
    """HMAC-SHA256 over an entry's store key and bytes, so that a store others can write to
    serves only what a worker holding the key wrote, under the key it wrote it for."""

    def __init__(self, key: bytes, previous: bytes | None = None) -> None:
        if not key:
            raise ValueError("an empty key seals nothing")
        self._key = key
        self._keys = [key] + ([previous] if previous else [])

    @staticmethod
    def _mac(key: bytes, store_key: str, payload: bytes) -> bytes:
        message = store_key.encode() + b"\n" + payload
        return hmac.new(key, message, hashlib.sha256).hexdigest().encode()

    def seal(self, store_key: str, payload: bytes) -> bytes:
        return SEAL_PREFIX + self._mac(self._key, store_key, payload) + b":" + payload

    def open(self, store_key: str, sealed: bytes) -> bytes | None:
        """The payload when the seal verifies with the current or the previous key; None
        for anything else (no seal, a wrong one, another entry's)."""
        if not sealed.startswith(SEAL_PREFIX):
            return None
        body = sealed[len(SEAL_PREFIX) :]
        mac, sep, payload = body[:_MAC_HEX], body[_MAC_HEX : _MAC_HEX + 1], body[_MAC_HEX + 1 :]
        if sep != b":":
            return None
        for key in self._keys:
            if hmac.compare_digest(mac, self._mac(key, store_key, payload)):
                return payload
        return None


def answer_identity(
    engine: EngineConfig, model: ModelInfo, provenance: ProvenanceConfig | None
) -> str:
    """A short hash of everything besides the bytes that decides the stored answer
    (`provenance` is None when content credentials are not read)."""
    anchors = (provenance.trust_anchors_pem or "").encode() if provenance else b""
    material = {
        "model": [model.name, model.revision],
        # The prompt as the engine renders it, for a fixed set of timestamps: a change to
        # the system prompt or the template changes this.
        "prompt": hashlib.sha256(render_prompt([0.0, 1.0]).encode()).hexdigest(),
        "frames": [engine.mm_min_pixels, engine.mm_max_pixels],
        "engine": [
            engine.max_tokens,
            engine.temperature,
            engine.seed,
            engine.top_logprobs,
            engine.guided,
            engine.guided_max_text_chars,
        ],
        "c2pa": [
            provenance is not None,
            provenance.max_manifest_bytes if provenance else 0,
            _sha(anchors),
        ],
    }
    return _sha(json.dumps(material, sort_keys=True).encode())[:16]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class VerdictStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl_s: float) -> None: ...


class MemoryVerdictStore:
    """Bounded LRU with expiry, for one process."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class RedisVerdictStore:
    """Redis or Valkey (the same protocol), shared by every worker of the fleet."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import redis  # noqa: PLC0415 - only with SKYRA_VERDICT_CACHE_URL
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # One immediate retry on a fresh connection: a pooled connection to a server
            # that restarted since is dead, and the first call on it fails. Not more: a
            # cache that is really down must cost one timeout, not several.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[redis.exceptions.ConnectionError],
            health_check_interval=30,
        )

    def get(self, key: str) -> bytes | None:
        value = self._redis.get(key)
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._redis.set(key, value, px=max(1, int(ttl_s * 1000)))


class ReuseCache:
    """The analysis path's view: look a content hash up, remember a fresh verdict; never
    raises, whatever the store does."""

    def __init__(
        self,
        store: VerdictStore,
        identity: str,
        ttl_s: float,
        metrics: Metrics | None = None,
        *,
        seal: EntrySeal | None = None,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self.store = store
        self.seal = seal
        self.identity = identity
        self.ttl_s = ttl_s
        self.metrics = metrics or Metrics()
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def build(
        cls, config: ReuseConfig, identity: str, metrics: Metrics | None = None
    ) -> ReuseCache | None:
        """The cache `config` asks for, or None when reuse is off."""
        if not config.enabled:
            return None
        store: VerdictStore
        if config.url is not None:
            if not config.key:
                raise ValueError("a shared verdict store needs a key to seal its entries")
            store = RedisVerdictStore(config.url, config.timeout_s)
        else:
            store = MemoryVerdictStore(config.max_entries)
        seal = EntrySeal(config.key, config.previous_key) if config.key else None
        return cls(store, identity, config.ttl_s, metrics, seal=seal)

    def key(self, sha256: str) -> str:
        return f"{KEY_PREFIX}:{self.identity}:{sha256}"

    def lookup(self, sha256: str) -> Verdict | None:
        key = self.key(sha256)
        raw = self._call("get", lambda: self.store.get(key))
        if raw is None:
            self.metrics.reuse.labels("miss").inc()
            return None
        if self.seal is not None:
            opened = self.seal.open(key, raw)
            if opened is None:  # forged, moved, or sealed with a key no longer held
                self.metrics.reuse.labels("rejected").inc()
                log.warning("verdict_cache_entry_rejected", key=key, bytes=len(raw))
                return None
            raw = opened
        try:
            verdict = Verdict.model_validate_json(raw)
        except ValueError:  # a foreign or damaged entry: a miss, and it will be replaced
            self.metrics.reuse.labels("miss").inc()
            return None
        self.metrics.reuse.labels("hit").inc()
        return verdict

    def remember(self, sha256: str, verdict: Verdict) -> None:
        key = self.key(sha256)
        value = verdict.model_dump_json().encode()
        if self.seal is not None:
            value = self.seal.seal(key, value)
        self._call("put", lambda: self.store.put(key, value, self.ttl_s))

    def _call(self, op: str, fn: Any) -> Any:
        with self._lock:
            if time.monotonic() < self._down_until:
                return None
        try:
            return fn()
        except Exception as exc:
            self.metrics.verdict_cache_errors.labels(op).inc()
            with self._lock:
                was_up = time.monotonic() >= self._down_until
                self._down_until = time.monotonic() + self.retry_after_s
            if was_up:
                log.warning(
                    "verdict_cache_down", op=op, error=repr(exc)[:300], retry_s=self.retry_after_s
                )
            return None


def reused(original: Verdict, **fields: Any) -> Verdict:
    """A new event's verdict from a stored one: its own ids, source, times, worker and
    decision; the model's answer, provenance and fingerprint of the content as stored;
    `reused_from` names the event whose analysis it was."""
    return original.model_copy(
        update={
            **fields,
            "reused_from": original.reused_from or original.event_id,
        }
    )
