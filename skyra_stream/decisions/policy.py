"""Per-tenant policies: what to do with an upload (allow, review, block) given its verdict.

A platform acts on an action, not on a probability. The policy file says which, rule by
rule, so that the thresholds live with the operators who tune them and not in code:

    version: "2026-11-26.1"
    default:
      id: platform-default
      otherwise: allow
      rules:
        - {name: declared-ai, action: block, skip_model: true,
           when: {provenance: [trusted, untrusted], declares_generated: true}}
        - {name: likely-fake, action: block, when: {min_fake_probability: 0.9}}
        - {name: maybe-fake, action: review, when: {min_fake_probability: 0.5}}
    tenants:
      kids-app: {id: kids-strict, otherwise: allow, rules: [...]}

The first rule whose conditions all hold wins; none matching gives `otherwise`. A rule with
`skip_model: true` is tried after the provenance read and before decoding, and may read only
what is known then (provenance): a rule that needed the model's answer there could never be
decided, so the file is refused at start instead. Every decision carries the inputs it read
(`DecisionInputs`), so `skyra-stream policy test` can replay past verdicts under a new file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skyra_stream.messages import (
    Action,
    Decision,
    DecisionInputs,
    Provenance,
    ProvenanceState,
    Verdict,
)
from skyra_stream.model.taxonomy import L3_TYPES, TAXONOMY

L2_CATEGORIES: Final = frozenset(c for cats in TAXONOMY.values() for c in cats)
L1_GROUPS: Final = frozenset(TAXONOMY)
MODEL_FREE_FIELDS: Final = frozenset({"provenance", "declares_generated", "declares_captured"})

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Conditions(_Strict):
    """All given conditions must hold; an empty `when` matches every upload."""

    min_fake_probability: Probability | None = Field(
        default=None, description="P(fake) >= this (an unparseable answer has no P(fake))."
    )
    max_fake_probability: Probability | None = Field(default=None, description="P(fake) < this.")
    label: list[Literal["fake", "real"]] | None = None
    parsed: bool | None = Field(default=None, description="The answer parsed (status `ok`).")
    artifact_types: list[str] | None = Field(default=None, description="Any of these L3 types.")
    categories: list[str] | None = Field(default=None, description="Any of these L2 categories.")
    groups: list[str] | None = Field(default=None, description="Any of these L1 groups.")
    min_duration_s: float | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(default=None, gt=0)
    provenance: list[ProvenanceState] | None = Field(
        default=None, description="The C2PA state is one of these."
    )
    declares_generated: bool | None = None
    declares_captured: bool | None = None
    min_fake_segments: int | None = Field(
        default=None, ge=1, description="At least this many windows of a long upload are fake."
    )

    @field_validator("artifact_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        return _known(value, frozenset(L3_TYPES), "L3 artifact type")

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str] | None) -> list[str] | None:
        return _known(value, L2_CATEGORIES, "L2 category")

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, value: list[str] | None) -> list[str] | None:
        return _known(value, L1_GROUPS, "L1 group")

    @model_validator(mode="after")
    def _ranges(self) -> Conditions:
        lo, hi = self.min_fake_probability, self.max_fake_probability
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"min_fake_probability {lo} >= max_fake_probability {hi}: never")
        lo, hi = self.min_duration_s, self.max_duration_s
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"min_duration_s {lo} >= max_duration_s {hi}: never matches")
        return self

    def used(self) -> set[str]:
        return {name for name, value in self if value is not None}

    def holds(self, x: DecisionInputs) -> bool:
        p = x.fake_probability
        checks = (
            self.min_fake_probability is None or (p is not None and p >= self.min_fake_probability),
            self.max_fake_probability is None or (p is not None and p < self.max_fake_probability),
            self.label is None or x.label in self.label,
            self.parsed is None or (x.status == "ok") == self.parsed,
            self.artifact_types is None or bool(set(self.artifact_types) & set(x.artifact_types)),
            self.categories is None or bool(set(self.categories) & set(x.categories)),
            self.groups is None or bool(set(self.groups) & set(x.groups)),
            self.min_duration_s is None
            or (x.duration_s is not None and x.duration_s >= self.min_duration_s),
            self.max_duration_s is None
            or (x.duration_s is not None and x.duration_s < self.max_duration_s),
            self.provenance is None or x.provenance in self.provenance,
            self.declares_generated is None or x.declares_generated == self.declares_generated,
            self.declares_captured is None or x.declares_captured == self.declares_captured,
            self.min_fake_segments is None or x.fake_segments >= self.min_fake_segments,
        )
        return all(checks)


def _known(value: list[str] | None, known: frozenset[str], what: str) -> list[str] | None:
    unknown = [v for v in value or () if v not in known]
    if unknown:
        raise ValueError(f"not a taxonomy {what}: {', '.join(map(repr, unknown))}")
    return value


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=128)
    action: Action
    when: Conditions = Field(default_factory=Conditions)
    skip_model: bool = Field(
        default=False,
        description="Decide before decoding and the engine, from provenance alone.",
    )

    @model_validator(mode="after")
    def _decidable_without_model(self) -> Rule:
        needs_model = self.when.used() - MODEL_FREE_FIELDS
        if self.skip_model and needs_model:
            raise ValueError(
                f"skip_model rules can read only {sorted(MODEL_FREE_FIELDS)}, "
                f"not {sorted(needs_model)} (known only after the model ran)"
            )
        if self.skip_model and not self.when.used():
            raise ValueError("a skip_model rule with no conditions would never run the model")
        return self


class Policy(_Strict):
    id: str = Field(min_length=1, max_length=128)
    otherwise: Action = Field(description="The action when no rule matches.")
    rules: list[Rule] = Field(default_factory=list, max_length=256)
    receipts: Literal["none", "all", "fake", "restricted"] = Field(
        default="none",
        description="Which verdicts get a signed C2PA receipt when the worker has a receipt key "
        "(docs/receipts.md): all, those labelled fake, those whose action is block, or none.",
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return rules


class PolicyFile(_Strict):
    """The whole file: a version, the default policy, and per-tenant policies."""

    version: str = Field(min_length=1, max_length=128)
    default: Policy
    tenants: dict[str, Policy] = Field(default_factory=dict)

    def for_tenant(self, tenant: str | None) -> Policy:
        """Unknown tenants (and events naming none) get the default policy."""
        return self.tenants.get(tenant, self.default) if tenant else self.default


# Without a file, nothing is blocked automatically: a platform decides what it blocks.
DEFAULT_POLICY: Final = PolicyFile(
    version="builtin-1",
    default=Policy(
        id="builtin-default",
        otherwise="allow",
        rules=[
            Rule(name="fake", action="review", when=Conditions(label=["fake"])),
            Rule(name="unparseable", action="review", when=Conditions(parsed=False)),
        ],
    ),
)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the rule and field."""


def load_policy(path: Path | None) -> PolicyFile:
    """The policy in `path` (YAML or JSON), or the built-in default when None."""
    if path is None:
        return DEFAULT_POLICY
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read it: {exc}") from None
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(data, err['loc'])}: {err['msg']}" for err in exc.errors())
        raise PolicyError(f"{path}: {problems}") from None


def _where(data: Any, loc: Iterable[int | str]) -> str:
    """A pydantic location with rule names beside their indexes: `default.rules[1]
    (likely-fake).when.min_fake_probability`."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(file)"


def inputs_of(
    verdict: Verdict, tenant: str | None, provenance: Provenance | None = None
) -> DecisionInputs:
    """What the rules read from a verdict (the verdict's own provenance unless given)."""
    prov = provenance or verdict.provenance
    return DecisionInputs(
        tenant=tenant,
        status=verdict.status,
        label=verdict.label,
        fake_probability=verdict.fake_probability,
        fake_probability_raw=verdict.fake_probability_raw,
        artifact_types=sorted({a.type for a in verdict.artifacts}),
        categories=sorted({a.category for a in verdict.artifacts if a.category}),
        groups=sorted({a.group for a in verdict.artifacts if a.group}),
        duration_s=verdict.video.duration_s if verdict.video else None,
        provenance=prov.state if prov else None,
        declares_generated=bool(prov and prov.declares_generated),
        declares_captured=bool(prov and prov.declares_captured),
        segments=len(verdict.segments),
        fake_segments=sum(1 for s in verdict.segments if s.label == "fake"),
    )


def before_model_inputs(tenant: str | None, provenance: Provenance | None) -> DecisionInputs:
    """What is known after the provenance read, before decoding."""
    return DecisionInputs(
        tenant=tenant,
        status="skipped",
        label=None,
        fake_probability=None,
        artifact_types=[],
        categories=[],
        groups=[],
        duration_s=None,
        provenance=provenance.state if provenance else None,
        declares_generated=bool(provenance and provenance.declares_generated),
        declares_captured=bool(provenance and provenance.declares_captured),
    )


def decide(policies: PolicyFile, inputs: DecisionInputs) -> Decision:
    """The first matching rule's action (after the model: every rule is tried, those with
    `skip_model` too, so a replay of a skipped verdict gets the same answer)."""
    policy = policies.for_tenant(inputs.tenant)
    for rule in policy.rules:
        if rule.when.holds(inputs):
            return _decision(policies, policy, inputs, rule)
    return _decision(policies, policy, inputs, None)


def decide_before_model(policies: PolicyFile, inputs: DecisionInputs) -> Decision | None:
    """A `skip_model` rule's decision when one matches; None means run the model. Rules
    are tried in order up to the first one that needs the model, so a model rule listed
    first is never overtaken by a skip rule listed after it."""
    policy = policies.for_tenant(inputs.tenant)
    for rule in policy.rules:
        if not rule.skip_model:
            return None
        if rule.when.holds(inputs):
            return _decision(policies, policy, inputs, rule)
    return None


def _decision(
    policies: PolicyFile, policy: Policy, inputs: DecisionInputs, rule: Rule | None
) -> Decision:
    return Decision(
        action=rule.action if rule else policy.otherwise,
        policy_id=policy.id,
        policy_version=policies.version,
        rule=rule.name if rule else None,
        skipped_model=bool(rule and rule.skip_model and inputs.status == "skipped"),
        inputs=inputs,
    )


def replay(policies: PolicyFile, verdicts: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """`skyra-stream policy test`: each past verdict of a JSON-lines file decided again under
    `policies`, from the inputs its decision recorded (its tenant and provenance included).
    Yields (line number, {event_id, tenant, was, now, rule, policy_id}) per verdict, or
    (line number, why) for a line that is not one."""
    with verdicts.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                verdict = Verdict.model_validate_json(line)
            except ValidationError as exc:
                yield n, f"{verdicts}:{n}: not a verdict: {exc.errors()[0]['msg']}"
                continue
            before = verdict.decision
            tenant = before.inputs.tenant if before else None
            after = decide(policies, inputs_of(verdict, tenant))
            yield (
                n,
                {
                    "event_id": verdict.event_id,
                    "tenant": tenant,
                    "was": before.action if before else None,
                    "now": after.action,
                    "rule": after.rule,
                    "policy_id": after.policy_id,
                },
            )
