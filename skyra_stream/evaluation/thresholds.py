"""`skyra-stream policy tune`: block and review thresholds chosen from labelled data at a
precision the platform states, instead of guessed.

Over thresholds t on the P(fake) the policy reads (the raw score through the calibration in
force): the precision of blocking everything at or above t, with its 95 % Wilson score
interval (a closed form, well behaved near 1 and at small counts, where the normal
approximation is not), the recall of fake, the share auto-blocked. The block threshold is
the lowest t whose interval's lower bound meets the target; the review band below it is as
wide as the maximum review rate allows. Too few labels to show the target: the tool says so,
and how many labels at the best precision seen would, instead of picking.

The tuned policy is the input policy with two rules at the top of the chosen policy
(`tuned-block`, `tuned-review`), the block and review rules on P(fake) alone that they
supersede removed (rules on artifacts, provenance and the rest kept), and a new version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skyra_stream.decisions.policy import Conditions, PolicyFile, Rule
from skyra_stream.evaluation.labelled import Labelled

Z95 = 1.959963984540054
TUNED = ("tuned-block", "tuned-review")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Row:
    threshold: float
    blocked: int
    true_fake: int
    precision: float
    low: float
    high: float
    recall: float
    share_blocked: float


@dataclass(frozen=True, slots=True)
class Tuning:
    rows: list[Row]
    block: float | None
    review: float | None
    share_review: float
    needed: int | None  # labels needed when no threshold meets the target
    message: str


def table(scores: Sequence[tuple[float, bool]], grid: Sequence[float]) -> list[Row]:
    n = len(scores)
    fakes = sum(f for _, f in scores)
    rows = []
    for t in grid:
        hit = [f for p, f in scores if p >= t]
        tp = sum(hit)
        low, high = wilson(tp, len(hit))
        rows.append(
            Row(
                threshold=round(t, 4),
                blocked=len(hit),
                true_fake=tp,
                precision=tp / len(hit) if hit else float("nan"),
                low=low,
                high=high,
                recall=tp / fakes if fakes else float("nan"),
                share_blocked=len(hit) / n if n else 0.0,
            )
        )
    return rows


def labels_needed(precision: float, target: float, have: int) -> int | None:
    """Blocked records needed, at this observed precision, for the Wilson lower bound to
    reach `target`; None when the precision itself is below the target."""
    if precision <= target:
        return None
    n = max(1, have)
    while wilson(round(precision * n), n)[0] < target:
        n = math.ceil(n * 1.1) + 1
        if n > 10_000_000:
            return None
    return n


def tune(
    records: Sequence[Labelled],
    target: float,
    max_review_rate: float,
    calibrate: Callable[[float], float] = lambda p: p,
) -> Tuning:
    scores = [(calibrate(r.p_raw), r.fake) for r in records if r.p_raw is not None]
    grid = [i / 100 for i in range(50, 100)] + [0.995, 0.999]
    rows = table(scores, grid)
    meeting = [r for r in rows if r.blocked and r.low >= target]
    if not meeting:
        candidates = [r for r in rows if r.blocked]
        best = max(candidates, key=lambda r: (r.precision, r.blocked), default=None)
        needed = labels_needed(best.precision, target, best.blocked) if best is not None else None
        if best is None or needed is None:
            msg = (
                f"no threshold reaches precision {target:.3f}: the best seen is "
                f"{best.precision if best else float('nan'):.3f}; more labels will not help"
            )
        else:
            scale = needed / max(1, best.blocked)
            msg = (
                f"too few labels for precision {target:.3f}: at t={best.threshold} the "
                f"precision is {best.precision:.3f} over {best.blocked} blocked, lower bound "
                f"{best.low:.3f}; about {needed} blocked records (~{math.ceil(scale * len(scores))}"
                f" labelled in all, {math.ceil(scale * len(scores)) - len(scores)} more) would "
                "show it"
            )
        return Tuning(rows, None, None, 0.0, needed, msg)
    block = min(r.threshold for r in meeting)
    below = sorted((p for p, _ in scores if p < block), reverse=True)
    room = math.floor(max_review_rate * len(scores))
    review = below[room - 1] if room and below else None
    if review is not None and len(below) <= room:
        review = below[-1]
    in_band = sum(1 for p, _ in scores if review is not None and review <= p < block)
    share = in_band / len(scores) if scores else 0.0
    review = round(review, 4) if review is not None else None
    msg = f"block at P(fake) >= {block}" + (
        f", review in [{review:.4f}, {block})" if review is not None else ", no review band"
    )
    return Tuning(rows, block, review, share, None, msg)


PROBABILITY_ONLY = frozenset({"min_fake_probability", "max_fake_probability", "label"})


def superseded(rule: Rule) -> bool:
    """A block or review rule on P(fake) alone (and the label): the tuned thresholds replace
    it (kept, it would block or review outside the tuned band). Rules on artifacts,
    provenance, duration, windows stay, after the tuned ones."""
    used = rule.when.used()
    return (
        rule.action in ("block", "review")
        and not rule.skip_model
        and bool(used & {"min_fake_probability", "max_fake_probability"})
        and used <= PROBABILITY_ONLY
    ) or rule.name in TUNED


def tuned_policy(
    policies: PolicyFile, tenant: str | None, block: float, review: float | None
) -> PolicyFile:
    """The policy file with the tuned rules first in `tenant`'s policy (or the default)."""
    doc: dict[str, Any] = policies.model_dump(mode="json", exclude_none=True)
    target = doc["tenants"][tenant] if tenant else doc["default"]
    policy = policies.tenants[tenant] if tenant else policies.default
    dropped = {r.name for r in policy.rules if superseded(r)}
    rules = [r for r in target.get("rules", []) if r.get("name") not in dropped]
    tuned = [Rule(name="tuned-block", action="block", when=Conditions(min_fake_probability=block))]
    if review is not None and review < block:
        tuned.append(
            Rule(
                name="tuned-review",
                action="review",
                when=Conditions(min_fake_probability=round(review, 4), max_fake_probability=block),
            )
        )
    target["rules"] = [r.model_dump(mode="json", exclude_none=True) for r in tuned] + rules
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M")
    doc["version"] = f"{policies.version}+tuned.{stamp}"
    return PolicyFile.model_validate(doc)


def precision_recall_png(
    rows: Sequence[Row], target: float, block: float | None, out: Path
) -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    xs = [r.threshold for r in rows if r.blocked]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [r.precision for r in rows if r.blocked], label="precision of block")
    ax.fill_between(
        xs,
        [r.low for r in rows if r.blocked],
        [r.high for r in rows if r.blocked],
        alpha=0.25,
        label="95 % Wilson interval",
    )
    ax.plot(xs, [r.recall for r in rows if r.blocked], label="recall of fake")
    ax.axhline(target, linestyle=":", color="grey", label=f"target {target:.2f}")
    if block is not None:
        ax.axvline(block, linestyle="--", color="black", label=f"block at {block}")
    ax.set_xlabel("threshold on P(fake)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
