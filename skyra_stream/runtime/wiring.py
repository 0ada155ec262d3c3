"""Collaborators built once from the settings: the engine, and the analysis path with its
fetcher, policies, provenance reader and verdict store.

Every process (worker, API server, CLI, demo, campaigns, benchmarks) builds its path here,
so the path a test drives is wired as production wires it; a test that wants a fake hands it
in (`fetcher=`, `policies=`) instead of patching.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from skyra_stream.analysis import Analysis
from skyra_stream.api.jobs import JobsService
from skyra_stream.consumers.review_console import ReviewConsole, ReviewConsoleConfig
from skyra_stream.consumers.webhook_loop import WebhookLoop
from skyra_stream.decisions.calibration import CalibrationFile, load_calibration
from skyra_stream.decisions.job_store import JobStore
from skyra_stream.decisions.policy import PolicyFile, load_policy
from skyra_stream.decisions.receipts import ReceiptError, ReceiptSigner, ReceiptWriter
from skyra_stream.decisions.reuse import EntrySeal, RedisVerdictStore, ReuseCache, answer_identity
from skyra_stream.decisions.review_tickets import ReviewTickets
from skyra_stream.delivery.callbacks import CallbackRefused, precheck_callback
from skyra_stream.delivery.label_studio import LabelStudio, LabelStudioConfig
from skyra_stream.delivery.webhooks import (
    DEFAULT_TENANT,
    WebhookConfig,
    WebhookSender,
    WebhookTenants,
)
from skyra_stream.media.fetch import Fetcher, ObjectFetcher
from skyra_stream.media.links import VideoLinks
from skyra_stream.media.provenance import ProvenanceReader
from skyra_stream.media.samples import VideoSpec, write_video
from skyra_stream.media.staging import ObjectWriter, Stager
from skyra_stream.messages import IngestEvent, ModelInfo
from skyra_stream.metrics import Metrics
from skyra_stream.model.engine import Engine, model_name
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.producers.ingest import IngestProducer
from skyra_stream.runtime.configs import (
    analysis_config,
    decode_limits,
    engine_config,
    fetch_config,
    kafka_config,
    provenance_config,
    reuse_config,
    secret_bytes,
)
from skyra_stream.settings import Settings


def build_engine(settings: Settings) -> Engine:
    """The engine SKYRA_ENGINE names; vLLM is imported only when it is the one."""
    if settings.engine == "fake":
        return FakeEngine(
            latency_s=settings.fake_engine_latency_s,
            hold_file=settings.fake_engine_hold_file,
            journal=settings.fake_engine_journal,
        )
    from skyra_stream.model.vllm_engine import VerdictEngine  # noqa: PLC0415 - vLLM, ~10 s

    return VerdictEngine(engine_config(settings))


def model_info(settings: Settings) -> ModelInfo:
    """The model as every verdict names it."""
    return ModelInfo(name=model_name(engine_config(settings)), revision=settings.model_revision)


def build_analysis(
    settings: Settings,
    engine: Engine,
    *,
    fetcher: Fetcher | None = None,
    metrics: Metrics | None = None,
    policies: PolicyFile | None = None,
) -> Analysis:
    """The analysis path as the settings configure it. The policy file is loaded here, at
    start (PolicyError on a bad one): a process never runs half-configured."""
    metrics = metrics or Metrics()
    model = model_info(settings)
    engine_cfg = engine_config(settings)
    provenance = provenance_config(settings)
    fetcher = fetcher or ObjectFetcher(fetch_config(settings))
    signer = receipt_signer(settings)
    receipts = (
        ReceiptWriter(
            signer,
            fetcher.fetch,
            ObjectWriter(fetch_config(settings)).put,
            bucket=settings.receipt_bucket,
            prefix=settings.receipt_prefix,
        )
        if signer is not None
        else None
    )
    return Analysis(
        analysis_config(settings),
        engine,
        fetcher=fetcher,
        limits=decode_limits(settings),
        model=model,
        engine_config=engine_cfg,
        policies=policies or load_policy(settings.policy_file),
        provenance=ProvenanceReader(provenance) if provenance is not None else None,
        reuse=ReuseCache.build(
            reuse_config(settings), answer_identity(engine_cfg, model, provenance), metrics
        ),
        calibration=calibration(settings),
        metrics=metrics,
        receipts=receipts,
    )


def calibration(settings: Settings) -> CalibrationFile | None:
    """SKYRA_CALIBRATION_FILE checked for the served model (CalibrationError otherwise)."""
    if settings.calibration_file is None:
        return None
    return load_calibration(settings.calibration_file, model_info(settings))


def review_tickets(settings: Settings) -> ReviewTickets | None:
    """The review tickets' keys, when set (required with SKYRA_REVIEW_TOPIC and by the
    review loop)."""
    key = secret_bytes(settings.review_ticket_key)
    if key is None:
        return None
    return ReviewTickets(key, secret_bytes(settings.review_ticket_previous_key))


def job_store(settings: Settings) -> JobStore | None:
    """The jobs' outcome store: SKYRA_JOBS_STORE_URL, else the verdict cache's Redis; None
    without one (polling then answers 501 and webhooks are the way)."""
    url = settings.jobs_store_url or settings.verdict_cache_url
    key = secret_bytes(settings.verdict_cache_key)
    if url is None or key is None:
        return None
    store = RedisVerdictStore(url.get_secret_value(), settings.verdict_cache_timeout_s * 4)
    return JobStore(store, EntrySeal(key), settings.jobs_ttl_s)


def webhook_config(settings: Settings) -> WebhookConfig:
    """The delivery rules; the tenants' secrets and allowlists from their file (a Secret)."""
    tenants = (
        WebhookTenants.model_validate(
            yaml.safe_load(settings.webhook_tenants_file.read_text(encoding="utf-8")) or {}
        ).tenants
        if settings.webhook_tenants_file is not None
        else {}
    )
    return WebhookConfig(
        tenants=tenants,
        allowed_networks=WebhookConfig.networks(settings.webhook_allowed_networks),
        http_hosts=tuple(settings.webhook_http_hosts),
        connect_timeout_s=settings.webhook_connect_timeout_s,
        read_timeout_s=settings.webhook_read_timeout_s,
        max_response_bytes=settings.webhook_max_response_bytes,
        max_attempts=settings.webhook_max_attempts,
        backoff_initial_s=settings.webhook_backoff_initial_s,
        backoff_max_s=settings.webhook_backoff_max_s,
    )


def build_webhook_loop(settings: Settings, metrics: Metrics | None = None) -> WebhookLoop:
    metrics = metrics or Metrics()

    def count(result: str) -> None:
        metrics.webhook_attempts.labels(result).inc()

    return WebhookLoop(
        kafka_config(settings),
        WebhookSender(webhook_config(settings), on_attempt=count),
        dead_letter_topic=settings.webhook_dead_letter_topic,
        group_id=settings.webhook_group_id,
        store=job_store(settings),
        concurrency=settings.webhook_concurrency,
        metrics=metrics,
    )


def build_review_console(settings: Settings, metrics: Metrics | None = None) -> ReviewConsole:
    """The Label Studio bridge; raises ValueError naming what its configuration lacks."""
    missing = [
        name
        for name in ("review_console_topic", "label_studio_url", "label_studio_token")
        if getattr(settings, name) is None
    ]
    if missing:
        raise ValueError(", ".join(f"SKYRA_{name.upper()}" for name in missing) + ": required")
    if settings.review_console_webhook_url and settings.review_console_webhook_secret is None:
        raise ValueError("SKYRA_REVIEW_CONSOLE_WEBHOOK_SECRET: required with the webhook URL")
    assert settings.label_studio_url is not None
    assert settings.label_studio_token is not None
    studio = LabelStudio(
        LabelStudioConfig(
            url=settings.label_studio_url,
            token=settings.label_studio_token.get_secret_value(),
            project_title=settings.label_studio_project,
            timeout_s=settings.label_studio_timeout_s,
        )
    )
    links = VideoLinks(
        fetch_config(settings),
        settings.review_console_video_ttl_s,
        settings.review_console_s3_public_endpoint_url,
    )
    secret = settings.review_console_webhook_secret
    return ReviewConsole(
        dataclasses.replace(kafka_config(settings), review_topic=settings.review_console_topic),
        studio,
        links.url,
        ReviewConsoleConfig(
            group_id=settings.review_console_group_id,
            webhook_url=settings.review_console_webhook_url,
            webhook_secret=secret.get_secret_value() if secret else None,
            poll_interval_s=settings.review_console_poll_s,
            # Re-signed with half their lifetime left, checked four times in that half (hourly
            # at most), so no queued task shows an expired video.
            link_refresh_s=min(3600.0, settings.review_console_video_ttl_s / 8),
            link_margin_s=settings.review_console_video_ttl_s / 2,
        ),
        metrics=metrics,
    )


def jobs_service(settings: Settings, producer: IngestProducer) -> JobsService:
    """What POST /v1/jobs needs: the ingest producer, the staging bucket, the store."""

    def publish(event: IngestEvent) -> None:
        producer.send(event).get(timeout=30)  # acknowledged by the broker (acks=all)

    stager = (
        Stager(fetch_config(settings), settings.jobs_staging_bucket)
        if settings.jobs_staging_bucket
        else None
    )
    return JobsService(
        publish=publish,
        stage=stager.stage if stager is not None else None,
        store=job_store(settings),
        tenant_key=settings.tenant_metadata_key,
        check_callback=callback_precheck(webhook_config(settings)),
    )


def callback_precheck(config: WebhookConfig) -> Callable[[str, str | None], None]:
    """The submission-time check of a job's callback against the rules the webhook sender
    applies (the same tenants file, networks and development hosts)."""

    def check(url: str, tenant: str | None) -> None:
        allowlist: list[str] | None = None  # no tenants file here: the sender checks hosts
        if config.tenants:
            hooks = config.tenants.get(tenant or DEFAULT_TENANT)
            if hooks is None:
                raise CallbackRefused(
                    f"tenant {tenant or DEFAULT_TENANT!r} has no webhooks configured"
                )
            allowlist = hooks.hosts
        precheck_callback(
            url,
            allowlist,
            allowed_networks=config.allowed_networks,
            http_hosts=config.http_hosts,
        )

    return check


def receipt_signer(settings: Settings) -> ReceiptSigner | None:
    """The signer of verdict receipts, or None when receipts are off (no key or no
    certificate set). Raises ReceiptError, naming the setting, when the key and certificate
    cannot sign now: unreadable, mismatched, or a certificate that is not valid today (tried
    on a tiny generated video, so a process never starts with receipts it cannot make)."""
    key, cert = settings.receipt_key_file, settings.receipt_cert_file
    if key is None and cert is None:
        return None
    if key is None or cert is None:
        raise ReceiptError(
            "SKYRA_RECEIPT_KEY_FILE and SKYRA_RECEIPT_CERT_FILE go together: one is unset"
        )
    try:
        signer = ReceiptSigner(
            key.read_bytes(),
            cert.read_bytes(),
            label=settings.receipt_assertion_label,
            algorithm=settings.receipt_algorithm,
        )
    except OSError as exc:
        raise ReceiptError(f"SKYRA_RECEIPT_KEY_FILE / SKYRA_RECEIPT_CERT_FILE: {exc}") from None
    with tempfile.TemporaryDirectory() as folder:
        probe = write_video(Path(folder) / "probe.mp4", VideoSpec(width=32, height=32, frames=2))
        signer.check(probe.read_bytes())
    return signer
