"""Grafana dashboards as code (grafanalib), shipped as ConfigMaps that kube-prometheus-stack's
Grafana sidecar loads (label `grafana_dashboard: "1"`).

Three dashboards, for the three questions asked at 3 a.m.: is the fleet keeping up (fleet),
is the engine healthy (engine: vLLM's own series under vLLM's names, so its published
dashboard works beside this one), and is anyone tampering or is review falling behind (trust
and review). Every query is plain PromQL over `$__rate_interval`, so that `make test-ops` can
run each one against a live Prometheus and fail on a panel with no series.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml
from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Target, Template, Templating, TimeSeries

DATASOURCE = "${datasource}"
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[str, ...]
    unit: str = "short"
    legend: str = ""
    description: str = ""


FLEET = (
    Panel(
        "Verdicts per second by label",
        (f"sum by (label) (rate(skyra_verdicts_total[{RATE}]))",),
        "reqps",
        "{{label}}",
    ),
    Panel(
        "Verdicts per second by status",
        (f"sum by (status, reason) (rate(skyra_verdict_status_total[{RATE}]))",),
        "reqps",
        "{{status}} {{reason}}",
    ),
    Panel(
        "Consumer lag (messages)",
        ("sum by (topic, partition) (skyra_partition_lag)",),
        "short",
        "{{topic}}/{{partition}}",
    ),
    Panel(
        "Consumer lag (seconds of work behind)",
        ("skyra:consumer_lag:seconds",),
        "s",
        "behind",
    ),
    Panel(
        "Verdict latency p95 by tenant, against the 120 s SLO",
        (
            "histogram_quantile(0.95, sum by (le, tenant) "
            f"(rate(skyra_verdict_latency_seconds_bucket[{RATE}])))",
            "vector(120)",
        ),
        "s",
        "{{tenant}}",
    ),
    Panel(
        "Latency error budget burn (share of verdicts over 120 s)",
        (
            "skyra:verdict_latency:error_ratio_rate5m",
            "skyra:verdict_latency:error_ratio_rate1h",
        ),
        "percentunit",
    ),
    Panel(
        "Dead letters per second by code",
        (f"sum by (code) (rate(skyra_dead_letters_total[{RATE}]))",),
        "reqps",
        "{{code}}",
    ),
    Panel(
        "Decisions per second by action",
        (f"sum by (action) (rate(skyra_decisions_total[{RATE}]))",),
        "reqps",
        "{{action}}",
    ),
    Panel(
        "Workers and partitions held",
        ("sum(skyra_assigned_partitions)", "count(skyra_assigned_partitions)"),
        "short",
    ),
    Panel(
        "Seconds per stage (p95)",
        (
            "histogram_quantile(0.95, sum by (le, stage) "
            f"(rate(skyra_stage_seconds_bucket[{RATE}])))",
        ),
        "s",
        "{{stage}}",
    ),
)

ENGINE = (
    Panel(
        "Requests running and waiting (vLLM)",
        ("sum(vllm:num_requests_running)", "sum(vllm:num_requests_waiting)"),
    ),
    Panel(
        "KV cache usage (vLLM)", ("max by (instance) (vllm:kv_cache_usage_perc)",), "percentunit"
    ),
    Panel(
        "Generated tokens per second (vLLM)",
        (f"sum(rate(vllm:generation_tokens_total[{RATE}]))",),
        "short",
    ),
    Panel(
        "Time to first token p95 (vLLM)",
        (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket[{RATE}])))",
        ),
        "s",
    ),
    Panel(
        "Request latency p95 (vLLM)",
        (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:e2e_request_latency_seconds_bucket[{RATE}])))",
        ),
        "s",
    ),
    Panel(
        "Finished requests by reason (vLLM)",
        (f"sum by (finished_reason) (rate(vllm:request_success_total[{RATE}]))",),
        "reqps",
        "{{finished_reason}}",
    ),
    Panel(
        "Videos in the engine and batch occupancy",
        ("sum(skyra_engine_in_flight)", "avg(skyra_engine_batch_occupancy)"),
    ),
    Panel(
        "Tokens per verdict (p50, p95)",
        tuple(
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(skyra_generated_tokens_per_verdict_bucket[{RATE}])))"
            for q in (0.5, 0.95)
        ),
    ),
    Panel(
        "Answers cut (token cap, deadline)",
        (f"sum by (reason) (rate(skyra_engine_outputs_cut_total[{RATE}]))",),
        "reqps",
        "{{reason}}",
    ),
)

TRUST = (
    Panel(
        "Verdict reuse by result",
        (f"sum by (result) (rate(skyra_reuse_total[{RATE}]))",),
        "reqps",
        "{{result}}",
    ),
    Panel(
        "Forged cache entries (seal failed)",
        ('sum(increase(skyra_reuse_total{result="rejected"}[1h]))',),
    ),
    Panel(
        "Review events by result (ticket_failed: forged)",
        (f"sum by (result) (rate(skyra_review_results_total[{RATE}]))",),
        "reqps",
        "{{result}}",
    ),
    Panel(
        "Review backlog (tasks created, not yet reviewed)",
        (
            'sum(skyra_review_console_tasks_total{result="created"}) - '
            'sum(skyra_review_console_annotations_total{result=~"published|dead_letter"})',
        ),
    ),
    Panel(
        "Label Studio retries per second",
        (f"sum(rate(skyra_review_console_retries_total[{RATE}]))",),
        "reqps",
    ),
    Panel(
        "Webhook attempts by result",
        (f"sum by (result) (rate(skyra_webhook_attempts_total[{RATE}]))",),
        "reqps",
        "{{result}}",
    ),
    Panel(
        "Webhook deliveries by result",
        (f"sum by (result) (rate(skyra_webhook_deliveries_total[{RATE}]))",),
        "reqps",
        "{{result}}",
    ),
    Panel(
        "Provenance of uploads",
        (f"sum by (state) (rate(skyra_provenance_total[{RATE}]))",),
        "reqps",
        "{{state}}",
    ),
)

DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "skyra-fleet": ("skyra-stream: fleet overview", FLEET),
    "skyra-engine": ("skyra-stream: engine", ENGINE),
    "skyra-trust-review": ("skyra-stream: trust and review", TRUST),
}


def dashboard(uid: str) -> Dashboard:
    title, panels = DASHBOARDS[uid]
    return Dashboard(
        title=title,
        uid=uid,
        tags=["skyra-stream"],
        timezone="utc",
        refresh="30s",
        templating=Templating(
            list=[
                Template(
                    name="datasource", query="prometheus", type="datasource", label="Data source"
                )
            ]
        ),
        panels=[
            TimeSeries(
                title=p.title,
                description=p.description,
                dataSource=DATASOURCE,
                targets=[
                    Target(expr=q, legendFormat=p.legend, refId=chr(ord("A") + i))
                    for i, q in enumerate(p.queries)
                ],
                unit=p.unit,
                gridPos=GridPos(h=8, w=12, x=12 * (n % 2), y=8 * (n // 2)),
            )
            for n, p in enumerate(panels)
        ],
    ).auto_panel_ids()


def dashboard_json(uid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        json.dumps(dashboard(uid).to_json_data(), cls=DashboardEncoder)
    )
    return data


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, query) for every query of every panel, read back from the
    generated JSON (what Grafana will run), for the live check."""
    found = []
    for uid in DASHBOARDS:
        for panel in dashboard_json(uid)["panels"]:
            for target in panel.get("targets", []):
                found.append((uid, panel["title"], target["expr"]))
    return found


def config_map(uid: str) -> str:
    """The ConfigMap that the Grafana sidecar of kube-prometheus-stack loads."""
    body = json.dumps(dashboard_json(uid), indent=1, sort_keys=True)
    meta = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{uid}-dashboard",
                "labels": {"grafana_dashboard": "1", "app.kubernetes.io/component": "monitoring"},
            },
        },
        sort_keys=False,
    )
    header = "# Made by `skyra-stream ops write` (skyra_stream/operations/dashboards.py).\n"
    return f"{header}{meta}data:\n  {uid}.json: |\n{textwrap.indent(body, '    ')}\n"
