"""`Settings` in, one small frozen config per stage out: the only place that knows both.

Each stage declares the config it reads next to its code (`FetchConfig` beside the fetcher,
`EngineConfig` beside the engine protocol, ...), with field names that match the settings
they come from, so that most of them are copied field by field here and a new field cannot
be forgotten silently (`_take` fails on a name the settings lack). The few that are derived
(decode workers and threads from the CPU quota, the decode device) are derived here, once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import SecretStr

from skyra_stream.analysis import AnalysisConfig
from skyra_stream.api.service import ServiceConfig
from skyra_stream.decisions.reuse import ReuseConfig
from skyra_stream.media.cpu import available_cpus
from skyra_stream.media.decode import DecodeLimits, cuda_decode_available
from skyra_stream.media.fetch import FetchConfig
from skyra_stream.media.provenance import ProvenanceConfig
from skyra_stream.model.engine import EngineConfig
from skyra_stream.pipeline import PipelineConfig
from skyra_stream.producers.kafka_config import KafkaConfig
from skyra_stream.settings import Settings

C = TypeVar("C")


def _take(cls: type[C], settings: Settings, **derived: Any) -> C:
    """`cls` with every field copied from the setting of the same name, but for `derived`;
    lists become tuples (the configs are frozen and hashable)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in derived:
            continue
        value = getattr(settings, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **derived)


def fetch_config(settings: Settings) -> FetchConfig:
    return _take(FetchConfig, settings)


def engine_config(settings: Settings) -> EngineConfig:
    return _take(EngineConfig, settings, deadline_s=settings.engine_deadline_s or None)


def kafka_config(settings: Settings) -> KafkaConfig:
    return _take(KafkaConfig, settings)


def pipeline_config(settings: Settings) -> PipelineConfig:
    return _take(PipelineConfig, settings, max_messages=settings.pipeline_max_messages)


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        max_concurrency=settings.api_max_concurrency,
        priority=settings.api_priority,
        timeout_s=settings.api_timeout_s,
        tenant_metadata_key=settings.tenant_metadata_key,
    )


def secret_bytes(secret: SecretStr | None) -> bytes | None:
    """A key from the settings as the HMACs take it."""
    return secret.get_secret_value().encode() if secret is not None else None


def reuse_config(settings: Settings) -> ReuseConfig:
    url = settings.verdict_cache_url
    return ReuseConfig(
        enabled=settings.verdict_cache,
        url=url.get_secret_value() if url is not None else None,
        key=secret_bytes(settings.verdict_cache_key),
        previous_key=secret_bytes(settings.verdict_cache_previous_key),
        ttl_s=settings.verdict_cache_ttl_s,
        max_entries=settings.verdict_cache_max_entries,
        timeout_s=settings.verdict_cache_timeout_s,
    )


def provenance_config(settings: Settings) -> ProvenanceConfig | None:
    """None when content credentials are not read (SKYRA_C2PA_ENABLED=false)."""
    if not settings.c2pa_enabled:
        return None
    return ProvenanceConfig.from_paths(
        settings.c2pa_max_manifest_bytes, settings.c2pa_trust_anchors
    )


def decode_workers(settings: Settings) -> int:
    """Decodes at once: the setting, or the CPUs the container may use."""
    return settings.decode_concurrency or available_cpus()


def resolved_decode_device(settings: Settings) -> str:
    if settings.decode_device == "auto":
        return "cuda" if cuda_decode_available() else "cpu"
    return settings.decode_device


def decode_limits(settings: Settings) -> DecodeLimits:
    threads = settings.decode_threads
    if threads is None:
        # Throughput comes from decoding videos side by side, one thread each; a lone
        # decode (the CLI, a one-CPU pod) may as well use every CPU.
        threads = 1 if decode_workers(settings) > 1 else available_cpus()
    return DecodeLimits(
        max_pixels=settings.max_frame_pixels,
        max_duration_s=settings.max_duration_s,
        timeout_s=settings.decode_timeout_s,
        threads=threads,
        skip_nonref=settings.decode_skip_nonref,
        device=resolved_decode_device(settings),
        window_s=settings.window_s,
        window_threshold_s=settings.window_threshold_s,
        max_windows=settings.max_windows,
    )


def analysis_config(settings: Settings) -> AnalysisConfig:
    return _take(AnalysisConfig, settings, decode_workers=decode_workers(settings))
