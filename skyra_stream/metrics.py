"""Prometheus metrics of the worker and the API, on one registry per process.

Ours live on a registry of their own, so that a test can build many `Metrics` in one process;
vLLM's (`vllm:*`, on prometheus_client's default registry, where its stat logger puts them)
are served beside ours by `exposition`, under vLLM's own names, so that vLLM's published
dashboards and alerts work on our pods unchanged. The rules and dashboards that read all of
them are in `k8s/monitoring/` (docs/operations.md).
"""

from __future__ import annotations

import re
import threading

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from skyra_stream.errors import ErrorCode

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# The verdict-latency SLO's threshold (docs/operations.md) must be one of these bounds.
LATENCY_BUCKETS = (1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
TOKEN_BUCKETS = (16, 64, 128, 256, 512, 1024, 1536, 2048, 2560, 4096, 8192)
VERDICT_STATUSES = (
    ("ok", ""),
    ("skipped", ""),
    ("unparseable", "no_answer"),
    ("unparseable", "token_cap"),
    ("unparseable", "deadline"),
)
MAX_TENANT_LABELS = 100
OTHER_TENANT = "other"
_TENANT_LABEL = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class TenantLabels:
    """Tenant names as label values: the ingest metadata is untrusted, so at most
    `limit` distinct names (well-formed ones) get a series of their own; the rest share
    `other`, and no upload can grow the registry without bound."""

    def __init__(self, limit: int = MAX_TENANT_LABELS) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, tenant: str | None) -> str:
        if not tenant:
            return "default"
        if not _TENANT_LABEL.match(tenant):
            return OTHER_TENANT
        with self._lock:
            if tenant in self._seen:
                return tenant
            if len(self._seen) >= self.limit:
                return OTHER_TENANT
            self._seen.add(tenant)
            return tenant


def exposition(registry: CollectorRegistry) -> bytes:
    """Our registry's text format followed by the default registry's: vLLM's engine metrics
    (and nothing of ours, which never registers there)."""
    ours = generate_latest(registry)
    if registry is REGISTRY:
        return ours
    return ours + generate_latest(REGISTRY)


class Metrics:
    """What operators alert on: throughput, outcomes, latency per stage, backlog, batch use."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter("skyra_messages_in", "Ingest messages read", registry=r)
        self.events_in = Counter("skyra_events_in", "Ingest events parsed", registry=r)
        self.verdicts = Counter("skyra_verdicts", "Verdicts published", ["label"], registry=r)
        self.dead_letters = Counter(
            "skyra_dead_letters", "Dead letters published", ["code"], registry=r
        )
        self.duplicates = Counter(
            "skyra_duplicates_skipped", "Events joined to an in-flight copy", registry=r
        )
        self.stage_seconds = Histogram(
            "skyra_stage_seconds",
            "Seconds per stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.decodes = Counter(
            "skyra_decodes", "Videos decoded, by where (cpu or cuda)", ["device"], registry=r
        )
        self.decode_fallbacks = Counter(
            "skyra_decode_fallbacks",
            "Videos asked of the GPU decoder that went to software, by why",
            ["why"],
            registry=r,
        )
        self.decisions = Counter(
            "skyra_decisions", "Verdicts by the action their policy gave", ["action"], registry=r
        )
        self.provenance = Counter(
            "skyra_provenance", "Uploads by C2PA provenance state", ["state"], registry=r
        )
        self.model_skipped = Counter(
            "skyra_model_skipped",
            "Uploads a skip_model rule decided without decoding or the engine",
            registry=r,
        )
        self.reuse = Counter(
            "skyra_reuse",
            "Verdict cache lookups by result (hit: no decode, no engine; rejected: an entry whose "
            "seal did not verify, never served)",
            ["result"],
            registry=r,
        )
        self.gpu_requests_saved = Counter(
            "skyra_gpu_requests_saved",
            "Engine requests a reused verdict made unnecessary",
            registry=r,
        )
        self.verdict_cache_errors = Counter(
            "skyra_verdict_cache_errors",
            "Verdict cache calls that failed (the job went on without the cache)",
            ["op"],
            registry=r,
        )
        self.in_flight = Gauge("skyra_in_flight_messages", "Messages being processed", registry=r)
        self.engine_in_flight = Gauge(
            "skyra_engine_in_flight", "Videos inside the engine", registry=r
        )
        self.engine_occupancy = Gauge(
            "skyra_engine_batch_occupancy", "Engine in-flight / max_num_seqs", registry=r
        )
        self.partition_lag = Gauge(
            "skyra_partition_lag",
            "Messages behind the log end",
            ["topic", "partition"],
            registry=r,
        )
        self.paused = Gauge(
            "skyra_partitions_paused", "Partitions paused by backpressure", registry=r
        )
        self.assigned_partitions = Gauge(
            "skyra_assigned_partitions", "Ingest partitions this worker owns now", registry=r
        )
        self.rebalances = Counter(
            "skyra_rebalances",
            "Rebalances this worker took part in (each revocation of its assignment)",
            registry=r,
        )
        self.revoke_finished = Counter(
            "skyra_revoke_finished",
            "Messages of revoked partitions finished and committed within the revoke budget",
            registry=r,
        )
        self.revoke_abandoned = Counter(
            "skyra_revoke_abandoned",
            "Messages of revoked partitions left to the next owner (analysed again there)",
            registry=r,
        )
        self.api_requests = Counter(
            "skyra_api_requests", "HTTP API requests answered", ["endpoint", "status"], registry=r
        )
        self.api_tenant_requests = Counter(
            "skyra_api_tenant_requests",
            "Authenticated API requests by the token's tenant and what became of them "
            "(accepted, rate_limited, forbidden)",
            ["tenant", "result"],
            registry=r,
        )
        self.api_rate_limit = Gauge(
            "skyra_api_rate_limit_per_second",
            "Sustained requests per second each token may make, by tenant and token name",
            ["tenant", "caller"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "skyra_webhook_deliveries",
            "Outcomes with a callback, by result (delivered, failed: a webhook_failed record)",
            ["result"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "skyra_webhook_attempts",
            "Delivery attempts by result (2xx, 4xx, 5xx, error, refused)",
            ["result"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "skyra_webhook_delivery_seconds",
            "From the outcome's creation to its delivery (or its final failure)",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.review_tasks = Counter(
            "skyra_review_console_tasks",
            "Verdicts from the review topic by result (created, existing: found by event id, "
            "dead_letter)",
            ["result"],
            registry=r,
        )
        self.review_annotations = Counter(
            "skyra_review_console_annotations",
            "Label Studio annotations by result (published: a review event, dead_letter, "
            "skipped: cancelled or already published)",
            ["result"],
            registry=r,
        )
        self.review_links = Counter(
            "skyra_review_console_video_links",
            "Video links of unreviewed tasks re-signed before they lapse, by result (refreshed, "
            "unservable: the task names no object the console may link)",
            ["result"],
            registry=r,
        )
        self.label_studio_up = Gauge(
            "skyra_review_console_label_studio_up",
            "1 while the review console's last Label Studio call succeeded, 0 while it waits "
            "out Label Studio being down (set only by the console; labelled by its group)",
            ["group"],
            registry=r,
        )
        self.review_console_retries = Counter(
            "skyra_review_console_retries",
            "Label Studio calls retried because it was down, slow or overloaded",
            registry=r,
        )
        self.tenant_label = TenantLabels()
        # -- service-level indicators (docs/operations.md, "Service-level indicators")
        self.verdict_latency = Histogram(
            "skyra_verdict_latency_seconds",
            "From the ingest event's time (submitted_at, else the Kafka record's timestamp) "
            "to its verdict published, per tenant",
            ["tenant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.verdict_status = Counter(
            "skyra_verdict_status",
            "Verdicts published by status (ok, unparseable, skipped) and, for unparseable, "
            "why (no_answer, token_cap, deadline)",
            ["status", "reason"],
            registry=r,
        )
        self.generated_tokens = Histogram(
            "skyra_generated_tokens_per_verdict",
            "Tokens the engine wrote for one verdict (all its windows)",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.outputs_cut = Counter(
            "skyra_engine_outputs_cut",
            "Engine answers cut before they closed, by reason (token_cap: SKYRA_MAX_TOKENS, "
            "deadline: SKYRA_ENGINE_DEADLINE_S); the slot was freed",
            ["reason"],
            registry=r,
        )
        self.receipts = Counter(
            "skyra_receipts",
            "Signed verdict receipts by result (written; failed: the verdict went out without one)",
            ["result"],
            registry=r,
        )
        self.unknown_settings = Gauge(
            "skyra_unknown_settings",
            "SKYRA_* environment variables no setting reads (misspelt? logged at start)",
            registry=r,
        )
        self.review_results = Counter(
            "skyra_review_results",
            "Review events by result (audited; invalid: malformed; ticket_failed: a ticket "
            "that does not verify, a forged or edited review)",
            ["result"],
            registry=r,
        )
        self.api_seconds = Histogram(
            "skyra_api_request_seconds",
            "HTTP API request latency",
            ["endpoint"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.api_in_progress = Gauge(
            "skyra_api_videos_in_progress", "API videos being analysed", registry=r
        )
        self._zero_known_labels()

    def _zero_known_labels(self) -> None:
        """Every label value a counter is known to take starts at 0, as Prometheus advises:
        `rate()` and the alerts then see the first event as an increase, and a dashboard
        panel shows a flat line rather than no data."""
        for counter, values in (
            (self.verdicts, ("fake", "real", "none")),
            (self.dead_letters, tuple(code.value for code in ErrorCode)),
            (self.decisions, ("allow", "review", "block")),
            (self.provenance, ("absent", "trusted", "untrusted", "invalid")),
            (self.reuse, ("hit", "miss", "rejected")),
            (self.outputs_cut, ("token_cap", "deadline")),
            (self.webhook_attempts, ("2xx", "4xx", "5xx", "error", "refused")),
            (self.webhook_deliveries, ("delivered", "failed")),
            (self.review_tasks, ("created", "existing", "dead_letter")),
            (self.review_annotations, ("published", "dead_letter", "skipped")),
            (self.review_links, ("refreshed", "unservable")),
            (self.review_results, ("audited", "invalid", "ticket_failed")),
            (self.receipts, ("written", "failed")),
        ):
            for value in values:
                counter.labels(value)
        for status, reason in VERDICT_STATUSES:
            self.verdict_status.labels(status, reason)
