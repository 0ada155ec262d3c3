"""The rules, their promtool tests, the runbooks and the generated objects stay one thing.

`promtool test rules` itself runs here too (Debian's package: `make prometheus`); on CI a
missing promtool is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from skyra_stream.cli_offline import ops_files
from skyra_stream.operations.dashboards import panel_queries
from skyra_stream.operations.rules import (
    RULES_FILE,
    alert_names,
    alerts,
    compress,
    load_rules,
    runbook_anchor,
)

MONITORING = RULES_FILE.parent
OPERATIONS = RULES_FILE.parents[2] / "docs" / "operations.md"


@pytest.fixture(scope="module")
def rules() -> dict:
    return load_rules()


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make prometheus` installs it")
        pytest.skip("promtool is not installed (make prometheus)")
    return found


def _anchors(markdown: str) -> set[str]:
    return {
        re.sub(r"[^a-z0-9 -]", "", title.strip().lower()).replace(" ", "-")
        for title in re.findall(r"^#{2,4} (.+)$", markdown, re.M)
    }


def test_every_alert_has_a_runbook_section_and_a_severity(rules: dict) -> None:
    sections = _anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in alerts(rules):
        anchor = runbook_anchor(rule)
        assert anchor is not None, f"{rule['alert']}: no runbook_url into docs/operations.md"
        assert anchor in sections, f"{rule['alert']}: docs/operations.md has no #{anchor}"
        assert anchor == rule["alert"].lower()
        assert rule["labels"]["severity"] in {"page", "ticket", "security", "info"}
        assert rule["annotations"]["summary"]


def test_a_runbook_link_to_a_missing_section_is_caught(rules: dict) -> None:
    sections = _anchors("## Alerts\n\n### SkyraNoConsumer\n")
    rule = {**alerts(rules)[0]}
    rule["annotations"] = {
        **rule["annotations"],
        "runbook_url": rule["annotations"]["runbook_url"].replace("nocons", "gone"),
    }
    assert runbook_anchor(rule) not in sections
    assert runbook_anchor(alerts(rules)[0]) in sections


def test_every_alert_has_a_firing_and_a_silent_promtool_case(rules: dict) -> None:
    doc = yaml.safe_load((MONITORING / "tests.yml").read_text(encoding="utf-8"))
    fires: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("promql_expr_test", []):
            match = re.match(r'ALERTS\{alertname="(\w+)", alertstate="firing"\}', check["expr"])
            if match and check["exp_samples"]:
                fires.add(match[1])
        for check in case.get("alert_rule_test", []):
            if check["exp_alerts"] == []:
                silent.add(check["alertname"])
    names = set(alert_names(rules))
    assert names - fires == set(), "alerts without a case that fires"
    assert names - silent == set(), "alerts without a case that stays silent"


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = _promtool()
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "tests.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_the_generated_objects_are_fresh() -> None:
    stale = [str(p) for p, text in ops_files().items() if p.read_text(encoding="utf-8") != text]
    assert stale == [], "run `skyra-stream ops write`"


def test_the_prometheus_rule_object_carries_the_rules_file_unchanged(rules: dict) -> None:
    [path] = [p for p in ops_files() if p.name == "prometheusrule.yaml"]
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert obj["kind"] == "PrometheusRule"
    assert obj["spec"]["groups"] == rules["groups"]


def test_compression_divides_every_duration_and_keeps_thresholds(rules: dict) -> None:
    fast = compress(rules, 60)
    lag = next(r for r in alerts(fast) if r["alert"] == "SkyraConsumerLagHigh")
    assert lag["for"] == "10s"
    assert "[10s]" in lag["expr"]
    assert "> 600" in lag["expr"]
    burn = [r for r in alerts(fast) if r["alert"] == "SkyraVerdictLatencyBudgetBurn"]
    assert [r["for"] for r in burn] == ["2s", "15s"]
    records = {r["record"]: r["expr"] for g in fast["groups"] for r in g["rules"] if "record" in r}
    assert "[360s]" in records["skyra:verdict_latency:error_ratio_rate6h"]
    assert "[5s]" in records["skyra:verdict_latency:error_ratio_rate5m"]


def test_every_dashboard_query_reads_a_metric_something_exports() -> None:
    from skyra_stream.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()}
    recorded = {r["record"] for g in load_rules()["groups"] for r in g["rules"] if "record" in r}
    for uid, title, expr in panel_queries():
        names = set(re.findall(r"\b(skyra_[a-z_]+?)(?:_total|_bucket|_count|_sum)?\b", expr))
        for name in names:
            assert name in exported, f"{uid} / {title}: {name} is not exported"
        for name in re.findall(r"\b(skyra:[a-z_:0-9]+)", expr):
            assert name in recorded, f"{uid} / {title}: {name} is not recorded"
