"""Policies: loading and refusing files, first-match decisions, tenants, the rules that may
decide before the model, and replaying a decision from the inputs it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyra_stream.decisions.policy import (
    DEFAULT_POLICY,
    PolicyError,
    before_model_inputs,
    decide,
    decide_before_model,
    load_policy,
)
from skyra_stream.messages import DecisionInputs

EXAMPLE = """
version: "2026-11-26.1"
default:
  id: platform
  otherwise: allow
  rules:
    - name: declared-ai
      action: block
      skip_model: true
      when: {provenance: [trusted, untrusted], declares_generated: true}
    - name: camera-says-real-model-says-fake
      action: review
      when: {declares_captured: true, label: [fake]}
    - name: likely-fake
      action: block
      when: {min_fake_probability: 0.9}
    - name: maybe-fake
      action: review
      when: {min_fake_probability: 0.5}
tenants:
  kids:
    id: kids-strict
    otherwise: allow
    rules:
      - {name: any-doubt, action: block, when: {min_fake_probability: 0.3}}
      - {name: texture, action: review, when: {categories: [Texture Anomaly]}}
"""


def inputs(**kw: object) -> DecisionInputs:
    values: dict[str, object] = {
        "tenant": None,
        "status": "ok",
        "label": "real",
        "fake_probability": 0.1,
        "artifact_types": [],
        "categories": [],
        "groups": [],
        "duration_s": 5.0,
        "provenance": "absent",
        "declares_generated": False,
        "declares_captured": False,
    }
    values.update(kw)
    return DecisionInputs(**values)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE)
    return path


@pytest.mark.parametrize(
    ("kw", "action", "rule"),
    [
        ({"fake_probability": 0.95, "label": "fake"}, "block", "likely-fake"),
        ({"fake_probability": 0.9, "label": "fake"}, "block", "likely-fake"),  # >= inclusive
        ({"fake_probability": 0.6, "label": "fake"}, "review", "maybe-fake"),
        ({"fake_probability": 0.5, "label": "fake"}, "review", "maybe-fake"),
        ({"fake_probability": 0.49}, "allow", None),
        ({"fake_probability": None, "status": "unparseable", "label": None}, "allow", None),
        (
            {"fake_probability": 0.95, "label": "fake", "declares_captured": True},
            "review",
            "camera-says-real-model-says-fake",
        ),
    ],
)
def test_first_matching_rule_wins(
    example: Path, kw: dict[str, object], action: str, rule: str | None
) -> None:
    policies = load_policy(example)
    d = decide(policies, inputs(**kw))
    assert (d.action, d.rule) == (action, rule)
    assert (d.policy_id, d.policy_version) == ("platform", "2026-11-26.1")
    assert d.inputs == inputs(**kw)  # what it read, recorded for the audit


def test_tenants_get_their_policy_and_unknown_ones_the_default(example: Path) -> None:
    policies = load_policy(example)
    x = {"fake_probability": 0.4, "label": "real"}
    assert decide(policies, inputs(tenant="kids", **x)).action == "block"
    assert decide(policies, inputs(tenant="kids", **x)).policy_id == "kids-strict"
    assert decide(policies, inputs(tenant="elsewhere", **x)).action == "allow"
    assert decide(policies, inputs(tenant="elsewhere", **x)).policy_id == "platform"
    texture = inputs(
        tenant="kids", fake_probability=0.2, categories=["Texture Anomaly"], label="fake"
    )
    assert decide(policies, texture).rule == "texture"


def test_skip_rules_decide_before_the_model_only_from_provenance(example: Path) -> None:
    policies = load_policy(example)
    declared = before_model_inputs(None, None).model_copy(
        update={"provenance": "trusted", "declares_generated": True}
    )
    early = decide_before_model(policies, declared)
    assert early is not None
    assert (early.action, early.rule, early.skipped_model) == ("block", "declared-ai", True)
    # Replaying the skipped verdict's inputs gives the same decision.
    assert decide(policies, declared).model_dump() == early.model_dump()
    # An invalid manifest that declares AI does not count: the model runs.
    invalid = declared.model_copy(update={"provenance": "invalid"})
    assert decide_before_model(policies, invalid) is None
    assert decide_before_model(policies, before_model_inputs(None, None)) is None
    # The kids policy has no skip rule in front: the model always runs there.
    kids = declared.model_copy(update={"tenant": "kids"})
    assert decide_before_model(policies, kids) is None


def test_a_skip_rule_after_a_model_rule_never_overtakes_it(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {
                "version": "1",
                "default": {
                    "id": "p",
                    "otherwise": "allow",
                    "rules": [
                        {"name": "fake", "action": "review", "when": {"label": ["fake"]}},
                        {
                            "name": "declared",
                            "action": "block",
                            "skip_model": True,
                            "when": {"declares_generated": True},
                        },
                    ],
                },
            }
        )
    )
    declared = before_model_inputs(None, None).model_copy(update={"declares_generated": True})
    assert decide_before_model(load_policy(path), declared) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("likely-fake", "when", {"min_fake_probability": 1.5}),
            "default.rules[2] (likely-fake).when.min_fake_probability",
        ),
        (
            ("maybe-fake", "when", {"artifact_types": ["Texture Jitter"]}),
            "not a taxonomy L3 artifact type: 'Texture Jitter'",
        ),
        (
            ("declared-ai", "when", {"min_fake_probability": 0.5}),
            "skip_model rules can read only",
        ),
        (("maybe-fake", "action", "delete"), "default.rules[3] (maybe-fake).action"),
        (
            ("maybe-fake", "when", {"min_fake_probability": 0.8, "max_fake_probability": 0.5}),
            "never",
        ),
        (("maybe-fake", "when", {"colour": "red"}), "when.colour"),
    ],
)
def test_invalid_files_name_the_rule_and_field(
    tmp_path: Path, change: tuple[str, str, object], message: str
) -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE)
    name, key, value = change
    for rule in data["default"]["rules"]:
        if rule["name"] == name:
            rule[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_unreadable_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: [unclosed")
    with pytest.raises(PolicyError, match="cannot read it"):
        load_policy(path)
    with pytest.raises(PolicyError, match="cannot read it"):
        load_policy(tmp_path / "absent.yaml")
    path.write_text(
        "version: '1'\ndefault: {id: p, otherwise: allow, rules: ["
        "{name: a, action: block}, {name: a, action: allow}]}"
    )
    with pytest.raises(PolicyError, match="two rules are named 'a'"):
        load_policy(path)


def test_the_builtin_default_reviews_fakes_and_unparseable_and_blocks_nothing() -> None:
    assert load_policy(None) is DEFAULT_POLICY
    fake = inputs(label="fake", fake_probability=0.99)
    assert decide(DEFAULT_POLICY, fake).action == "review"
    unparseable = inputs(status="unparseable", label=None, fake_probability=None)
    assert decide(DEFAULT_POLICY, unparseable).action == "review"
    assert decide(DEFAULT_POLICY, inputs()).action == "allow"


def test_policy_commands_check_and_replay_past_verdicts(example: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from skyra_stream.cli import app
    from tests.test_reviews import verdict

    runner = CliRunner()
    ok = runner.invoke(app, ["policy", "check", str(example)])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.replace("min_fake_probability: 0.9", "min_fake_probability: 9"))
    refused = runner.invoke(app, ["policy", "check", str(bad)])
    assert refused.exit_code == 2
    assert "default.rules[2] (likely-fake).when.min_fake_probability" in refused.output
    # Past traffic: a review at P(fake)=0.6 under the old policy; a kids-app tenant verdict.
    past = verdict()  # decision: review by "platform" v7, tenant "t", P(fake) 0.6
    kids = past.model_copy(
        update={
            "event_id": "ev-kids",
            "decision": past.decision.model_copy(  # type: ignore[union-attr]
                update={"inputs": past.decision.inputs.model_copy(update={"tenant": "kids"})}  # type: ignore[union-attr]
            ),
        }
    )
    lines = tmp_path / "verdicts.jsonl"
    lines.write_text(past.model_dump_json() + "\n" + kids.model_dump_json() + "\n")
    replay = runner.invoke(app, ["policy", "test", str(example), str(lines)])
    assert replay.exit_code == 0, replay.output
    rows = [json.loads(line) for line in replay.stdout.splitlines() if line.startswith("{")]
    assert [(r["event_id"], r["was"], r["now"], r["rule"]) for r in rows] == [
        ("ev-1", "review", "review", "maybe-fake"),
        ("ev-kids", "review", "block", "any-doubt"),
    ]
    lines.write_text(lines.read_text() + "not json\n")
    assert runner.invoke(app, ["policy", "test", str(example), str(lines)]).exit_code == 2
