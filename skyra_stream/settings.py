"""Configuration from `SKYRA_*` environment variables (12-factor), validated at start.

One flat settings class so that every variable is named exactly as operators write it
(`SKYRA_S3_ALLOWED_BUCKETS`, not a nested `SKYRA_S3__ALLOWED_BUCKETS`). It is a leaf: it
imports no stage. The composition root (`skyra_stream.runtime.configs`) turns it into the
small frozen config each stage takes, so that a stage never sees the hundred fields it does
not read and can be built in a test without an environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1 << 20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MIN_KEY_CHARS = 32  # 256 bits of hex, or a long passphrase


# SKYRA_* variables read by something other than Settings: the dev stack's and the tests'.
OTHER_VARIABLES = frozenset({"SKYRA_LABEL_STUDIO_BIN", "SKYRA_REVIEW_SCREENSHOT"})


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the worker, the CLI and the API read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="SKYRA_", extra="ignore", frozen=True, populate_by_name=True
    )

    # -- Kafka --------------------------------------------------------------------------
    kafka_bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost:9092"], description="Comma-separated host:port."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user; required with SASL."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (from a Secret); required with SASL."
    )
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle for SSL.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate for SSL.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client key for SSL.")
    kafka_client_id: str = Field(
        default="skyra-stream", description="Kafka client id (broker logs and quotas)."
    )
    group_id: str = Field(default="skyra-stream", description="Consumer group of the workers.")
    kafka_group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="Static group membership (KIP-345): a stable id per worker, so that a "
        "worker restarted within the session timeout keeps its partitions without a rebalance.",
    )
    ingest_topic: str = Field(default="skyra.ingest", description="Upload events the workers read.")
    verdict_topic: str = Field(default="skyra.verdicts", description="Verdicts, keyed by video id.")
    dead_letter_topic: str = Field(
        default="skyra.dead-letters",
        description="Events that ended without a verdict, with the reason.",
    )
    kafka_max_poll_records: int = Field(
        default=50, ge=1, description="Records per poll at most (consumer tuning)."
    )
    kafka_session_timeout_ms: int = Field(
        default=30_000, ge=1000, description="Group session timeout (consumer tuning)."
    )
    kafka_max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1000,
        description="Longest gap between polls before the group evicts a worker.",
    )
    kafka_auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a group without committed offsets starts."
    )
    kafka_commit_interval_s: float = Field(
        default=1.0, gt=0, description="How often finished offsets are committed."
    )
    kafka_revoke_budget_s: float = Field(
        default=5.0,
        ge=0,
        le=120,
        description="On a rebalance, how long revoked partitions' work in flight may take "
        "to finish and be committed before the partitions are given up; at most half of "
        "kafka_session_timeout_ms.",
    )

    # -- process --------------------------------------------------------------------------
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of /healthz, /readyz, /metrics (and the API).",
    )
    http_host: str = Field(default="0.0.0.0", description="Bind address of the HTTP server.")
    shutdown_timeout_s: float = Field(
        default=60.0, gt=0, description="How long SIGTERM waits for in-flight work."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["json", "console", "auto"] = Field(
        default="auto", description="json, console, or auto (JSON unless on a terminal)."
    )
    worker_id: str | None = Field(
        default=None, description="Reported in every verdict's worker.id; host:pid when unset."
    )

    # -- HTTP analyze API (`skyra-stream serve`, or the worker with SKYRA_API_ENABLED) -------
    api_enabled: bool = Field(
        default=False, description="The worker also serves /v1/analyze* on its HTTP port."
    )
    api_max_concurrency: int = Field(
        default=8, ge=1, description="API videos in progress at once; past it: 429."
    )
    api_max_batch: int = Field(default=16, ge=1, description="Items per /v1/analyze_batch call.")
    api_max_body_bytes: int = Field(
        default=256 * MiB, gt=0, description="Request body cap, enforced while reading."
    )
    api_timeout_s: float = Field(
        default=120.0, gt=0, description="Per request; the engine request is cancelled past it."
    )
    api_retry_after_s: int = Field(default=2, ge=1, description="Retry-After of a 429.")
    api_priority: int = Field(
        default=-10, description="Engine priority of API videos; lower goes first (Kafka is 0)."
    )
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens the API accepts; required (here or in "
        "SKYRA_API_TOKENS_FILE) when SKYRA_HTTP_HOST is not loopback.",
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description="File with one bearer token per line (a mounted Secret), each optionally "
        "bound: `<token> tenant=T rate=R burst=B name=N`.",
    )
    api_rate_per_s: float = Field(
        default=5.0, gt=0, description="Requests per second per token, sustained (429 past it)."
    )
    api_burst: int = Field(default=20, ge=1, description="Requests per token at once.")

    # -- async jobs and webhooks ---------------------------------------------------------
    jobs_enabled: bool = Field(
        default=False,
        description="Serve POST /v1/jobs and GET /v1/jobs/{id} (the API publishes jobs to "
        "the ingest topic).",
    )
    jobs_staging_bucket: str | None = Field(
        default=None, description="Where job uploads are written (one of the allowed buckets)."
    )
    jobs_store_url: SecretStr | None = Field(
        default=None,
        description="Redis/Valkey for job outcomes (polling); SKYRA_VERDICT_CACHE_URL when "
        "unset; sealed with SKYRA_VERDICT_CACHE_KEY.",
    )
    jobs_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0, description="How long a job is kept.")
    webhook_tenants_file: Path | None = Field(
        default=None,
        description="YAML from a Secret: per tenant, its Standard Webhooks secret (whsec_...) "
        "and the callback hosts it may use.",
    )
    webhook_dead_letter_topic: str = Field(
        default="skyra.webhook-dead-letters", description="Deliveries that never landed."
    )
    webhook_group_id: str = Field(default="skyra-webhooks", description="Consumer group.")
    webhook_concurrency: int = Field(default=32, ge=1, description="Deliveries at once.")
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs a callback may resolve to although not public "
        "(tests, receivers on a private network); everything else must be public.",
    )
    webhook_http_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts that may be called over plain http (dev only)."
    )
    webhook_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Per delivery attempt: connecting."
    )
    webhook_read_timeout_s: float = Field(
        default=10.0, gt=0, description="Per delivery attempt: waiting for the answer."
    )
    webhook_max_response_bytes: int = Field(
        default=64 << 10, gt=0, description="A receiver's answer is read up to this many bytes."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Delivery attempts before a webhook_failed record."
    )
    webhook_backoff_initial_s: float = Field(
        default=1.0, gt=0, description="First wait between attempts (doubles, with jitter)."
    )
    webhook_backoff_max_s: float = Field(
        default=300.0, gt=0, description="Longest wait between attempts."
    )

    # -- review console (`skyra-stream review-console`, Label Studio) ---------------------
    review_console_topic: str | None = Field(
        default=None,
        description="The review topic the console turns into Label Studio tasks: the workers' "
        "SKYRA_REVIEW_TOPIC (named apart because the console holds no review-ticket key).",
    )
    label_studio_url: str | None = Field(
        default=None, description="Label Studio's base URL, e.g. https://label-studio.internal."
    )
    label_studio_token: SecretStr | None = Field(
        default=None, description="API token of the Label Studio user the console acts as."
    )
    label_studio_project: str = Field(
        default="Skyra review", description="Project title (made, and kept up to date, on start)."
    )
    label_studio_timeout_s: float = Field(default=10.0, gt=0, description="Per API call.")
    review_console_group_id: str = Field(
        default="skyra-review-console",
        description="Consumer group of `skyra-stream review-console`.",
    )
    review_console_webhook_url: str | None = Field(
        default=None,
        description="Where Label Studio reaches the console's webhook (its Service), ending in "
        "/v1/label-studio/webhook; unset: the catch-up poll alone.",
    )
    review_console_webhook_secret: SecretStr | None = Field(
        default=None, description="Bearer secret Label Studio sends with each webhook."
    )
    review_console_poll_s: float = Field(
        default=300.0, gt=0, description="Catch-up poll of annotated tasks (and on start)."
    )
    review_console_video_ttl_s: int = Field(
        default=3 * 24 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Lifetime of a task's presigned video URL (SigV4 allows at most 7 days); "
        "tasks still unannotated get a fresh one when half of it is left.",
    )
    review_console_s3_public_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint as reviewers' browsers reach it, when not SKYRA_S3_ENDPOINT_URL.",
    )

    # -- object storage -------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto); AWS when unset."
    )
    s3_region: str | None = Field(
        default=None, description="Region for the S3 client; from the AWS chain when unset."
    )
    s3_allowed_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated buckets the worker may read; every other URI is refused.",
    )
    s3_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Per connection to object storage."
    )
    s3_read_timeout_s: float = Field(default=30.0, gt=0, description="Stall limit per read.")
    s3_fetch_timeout_s: float = Field(default=300.0, gt=0, description="Whole download limit.")
    s3_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts per object on 5xx, throttling, timeouts and resets (exponential "
        "backoff with jitter); never retried on 403 or 404.",
    )
    s3_retry_max_wait_s: float = Field(default=8.0, gt=0, description="Cap of one backoff.")
    local_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated folders that file:// URIs may point into (CLI, tests); "
        "symlinks and .. are resolved first.",
    )
    spool_dir: Path | None = Field(
        default=None, description="Where large downloads spool to disk; the system temp dir."
    )
    spool_memory_bytes: int = Field(
        default=16 * MiB, ge=0, description="Downloads larger than this spool to disk."
    )

    # -- concurrency ------------------------------------------------------------------------
    fetch_concurrency: int = Field(default=8, ge=1, description="Downloads at once.")
    decode_concurrency: int = Field(
        default=0,
        ge=0,
        description="Decodes at once; 0: one per CPU that the container's quota (cgroup cpu.max, "
        "v1 CFS quota) and affinity allow. A pod with a CPU request but no limit has "
        "no quota: set one (the manifests do).",
    )
    pipeline_max_messages: int = Field(
        default=64,
        ge=1,
        # SKYRA_PIPELINE_WINDOW: the name before 0.2, still read so that deployments keep
        # working; "window" now means only a long video's windows.
        validation_alias=AliasChoices(
            "pipeline_max_messages", "SKYRA_PIPELINE_MAX_MESSAGES", "SKYRA_PIPELINE_WINDOW"
        ),
        description="Kafka messages in flight before the consumer pauses.",
    )

    # -- limits on untrusted input --------------------------------------------------------
    max_object_bytes: int = Field(
        default=1024 * MiB,
        gt=0,
        description="Checked against the event's size, the response header and while streaming.",
    )
    max_frame_pixels: int = Field(
        default=3840 * 2160,
        gt=0,
        description="Checked on the stream header before any frame is decoded (against "
        "decompression bombs).",
    )
    max_duration_s: float = Field(
        default=30 * 60.0,
        gt=0,
        description="Longest video: container duration and packet timestamps.",
    )
    decode_timeout_s: float = Field(
        default=60.0, gt=0, description="Wall-clock limit of one decode."
    )
    decode_threads: int | None = Field(
        default=None,
        ge=0,
        description="FFmpeg threads per decode; 0 lets FFmpeg choose; unset: 1 while several "
        "decodes run at once (they already use every CPU), else one per CPU.",
    )
    decode_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where to decode: `cuda` on the GPU's video engines (NVDEC), falling back "
        "to software per video with the reason logged; `auto`: cuda when this process can "
        "decode on a GPU, else cpu.",
    )
    decode_skip_nonref: bool = Field(
        default=True,
        description="Skip decoding frames that no other frame references and that are not "
        "samples (H.264, HEVC, MPEG-2/4); the samples are bit-identical either way.",
    )
    window_s: float = Field(
        default=10.0,
        gt=0,
        description="Long uploads are analysed as windows of at most this many seconds, 16 "
        "frames each (Skyra was trained on clips of a few seconds).",
    )
    window_threshold_s: float = Field(
        default=20.0, gt=0, description="Uploads up to this long are one window, as before."
    )
    max_windows: int = Field(
        default=12,
        ge=1,
        le=64,
        description="Windows per video (each one engine request); a longer upload gets this "
        "many windows spread evenly over it, and the verdict's coverage says how much of it "
        "they span. 1: never windowed.",
    )
    max_message_bytes: int = Field(
        default=1 * MiB, gt=0, description="Largest ingest message (and review event)."
    )
    max_metadata_bytes: int = Field(
        default=16 * 1024, ge=0, description="Largest metadata of an ingest event."
    )

    # -- decisions: policies, provenance, review ------------------------------------------
    policy_file: Path | None = Field(
        default=None,
        description="YAML or JSON policy file (skyra_stream.decisions.policy); the built-in "
        "default (review what the model calls fake or cannot answer, allow the rest) when unset.",
    )
    calibration_file: Path | None = Field(
        default=None,
        description="Calibration of P(fake) for the served model (`skyra-stream calibrate`); "
        "a file made for another model name or revision stops the process at start. Unset: "
        "verdicts carry the model's raw P(fake).",
    )
    tenant_metadata_key: str = Field(
        default="tenant", min_length=1, description="The ingest metadata key naming the tenant."
    )
    c2pa_enabled: bool = Field(default=True, description="Read C2PA content credentials.")
    c2pa_trust_anchors: Path | None = Field(
        default=None,
        description="PEM bundle of the C2PA signers' root certificates this platform trusts; "
        "without it every valid manifest is `untrusted`.",
    )
    c2pa_max_manifest_bytes: int = Field(
        default=4 * MiB, gt=0, description="A bigger manifest store is `invalid`, not parsed."
    )
    verdict_cache: bool = Field(
        default=True,
        description="Reuse the verdict of content already analysed (same SHA-256, same model, "
        "prompt and settings): no decode, no engine.",
    )
    verdict_cache_url: SecretStr | None = Field(
        default=None,
        description="redis:// or rediss:// URL of a Redis or Valkey shared by the fleet; a "
        "bounded in-process cache when unset.",
    )
    verdict_cache_key: SecretStr | None = Field(
        default=None,
        description="Key (at least 32 characters, from a Secret) that seals every entry of "
        "the shared cache with HMAC-SHA256; required with SKYRA_VERDICT_CACHE_URL. An entry "
        "that does not verify is a miss, never served.",
    )
    verdict_cache_previous_key: SecretStr | None = Field(
        default=None,
        description="During a key rotation: the key before, still accepted for reading.",
    )
    verdict_cache_ttl_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="How long a cached verdict is reused."
    )
    verdict_cache_max_entries: int = Field(
        default=10_000, ge=1, description="In-process cache size (verdicts are a few KiB)."
    )
    verdict_cache_timeout_s: float = Field(
        default=0.25, gt=0, description="Per Redis call; a slower cache counts as down."
    )
    review_topic: str | None = Field(
        default=None, description="Verdicts whose action is `review` are also published here."
    )
    review_ticket_key: SecretStr | None = Field(
        default=None,
        description="Key (at least 32 characters, from a Secret) of the review tickets: "
        "HMAC-SHA256 over each verdict sent to review; a review event must pass its ticket "
        "back. Required with SKYRA_REVIEW_TOPIC and by `skyra-stream reviews`.",
    )
    review_ticket_previous_key: SecretStr | None = Field(
        default=None,
        description="During a key rotation: the key before, still accepted for verifying.",
    )
    review_results_topic: str = Field(
        default="skyra.review-results", description="Reviewers' decisions (review events)."
    )
    audit_topic: str = Field(default="skyra.audit", description="Validated review decisions.")
    review_group_id: str = Field(
        default="skyra-reviews", description="Consumer group of `skyra-stream reviews`."
    )

    # -- signed verdict receipts (C2PA) ----------------------------------------------------
    receipt_key_file: Path | None = Field(
        default=None,
        description="PEM private key (ES256 or Ed25519, from a Secret) that signs verdict "
        "receipts; with SKYRA_RECEIPT_CERT_FILE it turns receipts on (docs/receipts.md).",
    )
    receipt_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain of the receipt key, the signing certificate first.",
    )
    receipt_algorithm: Literal["es256", "ed25519"] = Field(
        default="es256", description="The receipt key's signature algorithm."
    )
    receipt_bucket: str | None = Field(
        default=None,
        description="Where the worker stores receipts: unset, beside the upload (<key>.c2pa in "
        "its bucket); set, under SKYRA_RECEIPT_PREFIX in this bucket (one of the allowed).",
    )
    receipt_prefix: str = Field(
        default="receipts/", description="Key prefix of receipts in SKYRA_RECEIPT_BUCKET."
    )
    receipt_assertion_label: str = Field(
        default="org.skyra-stream.verdict",
        pattern=r"^[a-z0-9]+(\.[a-z0-9_-]+)+$",
        description="The receipt's verdict assertion label: the platform's own reverse-domain "
        "label (C2PA entity-specific assertions), e.g. com.example.skyra.verdict.",
    )

    # -- model and engine (vLLM) ----------------------------------------------------------
    engine: Literal["vllm", "fake"] = Field(
        default="vllm",
        description="`fake`: skyra_stream.model.fake_engine.FakeEngine, no model (tests of "
        "the plumbing).",
    )
    fake_engine_latency_s: float = Field(
        default=0.0, ge=0, description="With SKYRA_ENGINE=fake: seconds per answer."
    )
    fake_engine_hold_file: Path | None = Field(
        default=None,
        description="With SKYRA_ENGINE=fake: answers are held while this file exists.",
    )
    fake_engine_journal: Path | None = Field(
        default=None,
        description="With SKYRA_ENGINE=fake: each request's id is appended to this file when "
        "it is submitted, so that a campaign can count analyses across processes and kills.",
    )
    model_path: Path | None = Field(
        default=None, description="Skyra checkpoint folder (Skyra-RL or Skyra-SFT)."
    )
    served_model_name: str | None = Field(
        default=None, description="Name reported in verdicts; the folder name when unset."
    )
    model_revision: str | None = Field(default=None, description="Reported in verdicts.")
    dtype: str = Field(default="auto", description="vLLM dtype: auto, bfloat16 (GPUs), float16...")
    max_model_len: int | None = Field(
        default=None, gt=0, description="Derived from frames + prompt + max_tokens when unset."
    )
    max_num_seqs: int = Field(default=32, ge=1, description="vLLM's batch size ceiling.")
    max_in_flight: int = Field(
        default=32, ge=1, description="Videos submitted to the engine at once."
    )
    gpu_memory_utilization: float = Field(
        default=0.90, gt=0, le=1, description="Share of GPU memory for weights and KV cache."
    )
    kv_cache_bytes: int | None = Field(
        default=None, gt=0, description="Fixed KV-cache budget; 1 GiB by default on the CPU."
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per engine.")
    prefix_caching: bool = Field(default=True, description="The system prompt is shared.")
    mm_min_pixels: int = Field(
        default=224 * 224,
        gt=0,
        description="Processor lower bound per frame (the model's default).",
    )
    mm_max_pixels: int = Field(
        default=1280 * 28 * 28,
        gt=0,
        description="Processor upper bound per frame (the model's default).",
    )
    # vLLM keeps processed frames by content hash, once in this process and once in its engine
    # process, 4 GiB each by default. Uploads are almost all distinct, so the cache pays off
    # only for redeliveries and retried API calls; a small one keeps the host memory it takes
    # in proportion to that.
    mm_processor_cache_gb: float = Field(
        default=1.0,
        ge=0,
        description="vLLM's processed-input cache per process (the worker's and vLLM's engine "
        "process), GiB; 0 is off. vLLM's own default is 4, but uploads rarely repeat, "
        "so it mostly fills rather than hits.",
    )
    seed: int = Field(default=0, description="Sampling seed, as the reference evaluation.")
    max_tokens: int = Field(
        default=2560,  # model.grammar.ANSWER_TOKEN_CAP: a leaf imports no stage (test_settings)
        ge=1,
        description="Output cap per video: the longest answer the contract's grammar admits "
        "(model.grammar.longest_answer_tokens); an answer cut here is `unparseable` with "
        "reason `token_cap`. The reference evaluation used 8192.",
    )
    engine_deadline_s: float = Field(
        default=120.0,
        ge=0,
        description="Per video inside the engine (queueing not counted): past it the request "
        "is aborted, its batch slot freed, and the verdict is `unparseable` with reason "
        "`deadline`. Sized for the 7B on one GPU (answers take seconds); 0 is no deadline.",
    )
    temperature: float = Field(default=0.0, ge=0, description="0 is greedy, as the reference.")
    top_logprobs: int = Field(default=5, ge=2, le=20, description="For fake_probability.")
    guided: Literal["off", "regex"] = Field(
        default="off", description="Constrain output to the contract's grammar."
    )
    guided_max_text_chars: int = Field(
        default=400, ge=1, description="Free text between tags, guided decoding."
    )
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        default="fcfs",
        description="vLLM's scheduler; priority also lets urgent (API) requests overtake inside "
        "vLLM (our own in-flight window admits by priority either way).",
    )
    load_format: str = Field(default="auto", description="`dummy`: random weights (bench).")
    enforce_eager: bool = Field(
        default=False,
        description="No torch.compile: the tests and the demo set it for the tiny CPU model (the "
        "engine starts in about 35 s instead of 60).",
    )
    engine_start_timeout_s: float = Field(
        default=900.0, gt=0, description="How long loading the model may take."
    )

    @field_validator(
        "s3_allowed_buckets",
        "local_roots",
        "kafka_bootstrap_servers",
        "api_tokens",
        "webhook_allowed_networks",
        "webhook_http_hosts",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        self._check_verdict_cache_keys()
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password are required "
                f"with kafka_security_protocol={self.kafka_security_protocol}"
            )
        return self

    def _check_verdict_cache_keys(self) -> None:
        key = self.verdict_cache_key
        for name in (
            "verdict_cache_key",
            "verdict_cache_previous_key",
            "review_ticket_key",
            "review_ticket_previous_key",
            "review_console_webhook_secret",
        ):
            secret = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < MIN_KEY_CHARS:
                raise ValueError(f"{name} must be at least {MIN_KEY_CHARS} characters")
        if self.review_topic and self.review_ticket_key is None:
            raise ValueError(
                "review_ticket_key is required with review_topic: a review must prove that "
                "its verdict was sent to review"
            )
        if self.verdict_cache and self.verdict_cache_url is not None and key is None:
            raise ValueError(
                "verdict_cache_key is required with verdict_cache_url: entries of a shared "
                "cache are sealed, or anyone who can write to it decides verdicts"
            )

    def bearer_tokens(self) -> list[str]:
        """Token lines from SKYRA_API_TOKENS and SKYRA_API_TOKENS_FILE (blank lines and #
        ignored); a file's line may bind its token (`api.guards.ApiTokens.parse`)."""
        tokens = [t.get_secret_value() for t in self.api_tokens]
        if self.api_tokens_file is not None:
            lines = (raw.strip() for raw in self.api_tokens_file.read_text().splitlines())
            tokens += [line for line in lines if line and not line.startswith("#")]
        return tokens

    def http_is_loopback(self) -> bool:
        return self.http_host in LOOPBACK_HOSTS


def known_variables() -> frozenset[str]:
    """Every SKYRA_* name something reads: the settings (and their older aliases)."""
    names = set(OTHER_VARIABLES)
    for name, field in Settings.model_fields.items():
        names.add(f"SKYRA_{name.upper()}")
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(a) for a in alias.choices if str(a).startswith("SKYRA_"))
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """SKYRA_* variables in `environ` that nothing reads, each with the nearest known name
    (None when nothing is near): a misspelt variable would otherwise be ignored and its
    setting's default would apply without a word."""
    known = known_variables()
    found: dict[str, str | None] = {}
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("SKYRA_") or upper in known:
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found[name] = near[0] if near else None
    return found
