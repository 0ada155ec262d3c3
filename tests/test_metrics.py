"""The indicators operators page on: where verdict latency starts, tenant labels that no
upload can multiply, vLLM's registry served beside ours, and misspelt settings named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY, Counter

from skyra_stream.messages import IngestEvent
from skyra_stream.metrics import OTHER_TENANT, Metrics, TenantLabels, exposition
from skyra_stream.pipeline import Inbound, verdict_clock_start
from skyra_stream.settings import unknown_variables

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def event(submitted_at: datetime | None) -> IngestEvent:
    return IngestEvent(event_id="e", video_id="v", uri="s3://b/k", submitted_at=submitted_at)


def test_latency_starts_at_the_upload_when_its_time_is_believable() -> None:
    upload = NOW - timedelta(seconds=30)
    inbound = Inbound(raw=b"", event_time=NOW.timestamp())
    assert verdict_clock_start(event(upload), inbound) == upload.timestamp()


def test_a_submitted_at_far_from_the_records_time_is_not_believed() -> None:
    inbound = Inbound(raw=b"", event_time=NOW.timestamp())
    for wrong in (NOW - timedelta(days=3), NOW + timedelta(days=3)):
        assert verdict_clock_start(event(wrong), inbound) == NOW.timestamp()


def test_without_a_submitted_at_latency_starts_at_the_record() -> None:
    assert verdict_clock_start(event(None), Inbound(raw=b"", event_time=5.0)) == 5.0
    assert verdict_clock_start(None, Inbound(raw=b"")) is None


def test_tenant_labels_are_bounded_and_well_formed() -> None:
    labels = TenantLabels(limit=2)
    assert labels(None) == "default"
    assert labels("acme") == "acme"
    assert labels("beta") == "beta"
    assert labels("gamma") == OTHER_TENANT  # past the limit
    assert labels("acme") == "acme"  # a known one keeps its series
    assert labels('x"} 1\nfake_metric{') == OTHER_TENANT  # never a label value as written


def test_metrics_serves_the_default_registry_beside_ours() -> None:
    # vLLM's stat logger registers on prometheus_client's default registry.
    probe = Counter("skyra_test_default_registry_probe", "test", registry=REGISTRY)
    try:
        probe.inc()
        text = exposition(Metrics().registry).decode()
        assert "skyra_verdicts_total" in text
        assert "skyra_test_default_registry_probe_total 1.0" in text
    finally:
        REGISTRY.unregister(probe)


def test_every_known_label_value_starts_at_zero() -> None:
    text = exposition(Metrics().registry).decode()
    assert 'skyra_reuse_total{result="rejected"} 0.0' in text
    assert 'skyra_verdict_status_total{reason="deadline",status="unparseable"} 0.0' in text


def test_a_misspelt_variable_is_named_with_the_nearest_setting() -> None:
    found = unknown_variables(
        {
            "SKYRA_MAX_TOKEN": "5",
            "SKYRA_MAX_TOKENS": "64",
            "SKYRA_PIPELINE_WINDOW": "8",
            "HOME": "/",
        }
    )
    assert found == {"SKYRA_MAX_TOKEN": "SKYRA_MAX_TOKENS"}
    assert unknown_variables({"SKYRA_ZZZZZZZZZZZZZZZZZZZ": "1"}) == {
        "SKYRA_ZZZZZZZZZZZZZZZZZZZ": None
    }
