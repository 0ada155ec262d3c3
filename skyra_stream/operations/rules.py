"""The alert and recording rules: the plain Prometheus file is the source, and this module
reads it, makes the Prometheus Operator's PrometheusRule object from it, and compresses its
durations for the ops test.

Why generated rather than written twice: promtool reads only plain rule files, the Operator
only PrometheusRule objects; one file made from the other cannot drift (a test compares the
committed object with a fresh one). Why compressed: a real Prometheus evaluates in real time,
and an alert that waits 10 minutes would make the fault-injection test take hours. Dividing
every duration (`for:` and each range selector) by one factor keeps every rule's shape and
every ratio between its windows; the thresholds stay as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "k8s" / "monitoring" / "skyra.rules.yml"
PROMETHEUS_RULE_FILE = ROOT / "k8s" / "base" / "prometheusrule.yaml"
RUNBOOK_PREFIX = "https://github.com/skyra-stream/skyra-stream/blob/main/docs/operations.md#"

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_RANGE = re.compile(r"\[(\d+)(ms|s|m|h|d|w|y)(?=[]:])")


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise ValueError(f"{path}: not a Prometheus rules file (no groups)")
    return doc


def alerts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alerting rule, in file order (a name may appear twice: fast and slow burns)."""
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def alert_names(doc: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(rule["alert"] for rule in alerts(doc)))


def runbook_anchor(rule: dict[str, Any]) -> str | None:
    """The docs/operations.md section a rule's runbook_url points at."""
    url = str(rule.get("annotations", {}).get("runbook_url", ""))
    return url.removeprefix(RUNBOOK_PREFIX) if url.startswith(RUNBOOK_PREFIX) else None


def prometheus_rule(doc: dict[str, Any], *, name: str = "skyra-stream") -> dict[str, Any]:
    """The PrometheusRule object of kube-prometheus-stack (its default ruleSelector matches
    the `release` label the chart's own rules carry: set it to the release's name)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/component": "monitoring", "release": "prometheus"},
        },
        "spec": {"groups": doc["groups"]},
    }


def render_prometheus_rule(doc: dict[str, Any]) -> str:
    header = (
        "# Made from k8s/monitoring/skyra.rules.yml by `skyra-stream ops write`: edit that "
        "file, not this one.\n"
    )
    return header + yaml.safe_dump(prometheus_rule(doc), sort_keys=False, width=100)


def _seconds(amount: str, unit: str) -> float:
    return int(amount) * _UNITS[unit]


def _compressed(seconds: float, factor: float) -> str:
    ms = max(1, round(seconds / factor * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def compress(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of the rules with every `for:` and every range selector divided by `factor`
    (10m at 60 becomes 10s); thresholds, labels and annotations stay."""

    def expr(text: str) -> str:
        return _RANGE.sub(lambda m: "[" + _compressed(_seconds(m[1], m[2]), factor), text)

    groups = []
    for group in doc["groups"]:
        rules = []
        for rule in group["rules"]:
            new = {**rule, "expr": expr(str(rule["expr"]))}
            if "for" in rule:
                match = _DURATION.match(str(rule["for"]))
                if match is None:
                    raise ValueError(f"{rule.get('alert')}: duration {rule['for']!r}")
                new["for"] = _compressed(_seconds(match[1], match[2]), factor)
            rules.append(new)
        groups.append({**group, "rules": rules})
    return {"groups": groups}
