"""Where an async job's outcome waits to be polled (`GET /v1/jobs/{id}`).

The store is the Redis/Valkey the deployment already runs for the verdict cache (no second
store to operate, and it is shared by every API replica and the webhook consumers): the API
writes `queued` when it publishes the job, the webhook consumer writes `done` or `failed`
when the verdict or dead letter passes on its topic. Entries expire after
`SKYRA_JOBS_TTL_S`. Like verdict cache entries they are sealed (`EntrySeal`, the verdict
cache key): an entry someone else wrote is not served. Without a store, polling answers with
a clear error and webhooks are the way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

import structlog
from pydantic import ValidationError

from skyra_stream.decisions.reuse import EntrySeal, VerdictStore
from skyra_stream.messages import DeadLetter, JobRecord, Verdict, WebhookDelivery

DeliveryState = Literal["pending", "delivered", "retrying", "failed"]

log = structlog.get_logger(__name__)

JOB_PREFIX: Final = "job-"
KEY_PREFIX: Final = "skyra:job:v1"


def is_job(event_id: str | None) -> bool:
    return bool(event_id and event_id.startswith(JOB_PREFIX))


class JobStore:
    def __init__(self, store: VerdictStore, seal: EntrySeal, ttl_s: float) -> None:
        self.store = store
        self.seal = seal
        self.ttl_s = ttl_s

    @staticmethod
    def key(job_id: str) -> str:
        return f"{KEY_PREFIX}:{job_id}"

    def get(self, job_id: str) -> JobRecord | None:
        key = self.key(job_id)
        raw = self.store.get(key)
        if raw is None:
            return None
        payload = self.seal.open(key, raw)
        if payload is None:
            log.warning("job_store_entry_rejected", job_id=job_id)
            return None
        try:
            return JobRecord.model_validate_json(payload)
        except ValidationError:
            return None

    def put(self, record: JobRecord) -> None:
        key = self.key(record.job_id)
        value = self.seal.seal(key, record.model_dump_json().encode())
        self.store.put(key, value, self.ttl_s)

    def queued(self, job_id: str, tenant: str | None) -> JobRecord:
        now = datetime.now(UTC)
        record = JobRecord(
            job_id=job_id, status="queued", tenant=tenant, created_at=now, updated_at=now
        )
        self.put(record)
        return record

    def finished(self, outcome: Verdict | DeadLetter) -> None:
        """Record a job's outcome (a redelivered one writes the same again)."""
        job_id = outcome.event_id
        if not is_job(job_id):
            return
        assert job_id is not None
        before = self.get(job_id)
        now = datetime.now(UTC)
        tenant = outcome.callback.tenant if outcome.callback else None
        if isinstance(outcome, Verdict):
            tenant = tenant or (outcome.decision.inputs.tenant if outcome.decision else None)
        record = JobRecord(
            job_id=job_id,
            status="done" if isinstance(outcome, Verdict) else "failed",
            tenant=before.tenant if before else tenant,
            created_at=before.created_at if before else now,
            updated_at=now,
            verdict=outcome if isinstance(outcome, Verdict) else None,
            dead_letter=outcome if isinstance(outcome, DeadLetter) else None,
            # A redelivered outcome keeps how far its webhook got.
            delivery=(before.delivery if before and before.delivery else None)
            or (WebhookDelivery(state="pending", updated_at=now) if outcome.callback else None),
        )
        self.put(record)

    def delivery(
        self, job_id: str, state: DeliveryState, attempts: int, reason: str | None = None
    ) -> None:
        """Record where the job's webhook stands (from `skyra-stream webhooks`)."""
        before = self.get(job_id)
        if before is None:
            return  # expired, or never a job of this store: nothing to update
        now = datetime.now(UTC)
        delivery = WebhookDelivery(
            state=state,
            attempts=attempts,
            reason=reason[:1000] if reason else None,
            updated_at=now,
        )
        self.put(before.model_copy(update={"delivery": delivery, "updated_at": now}))
