"""The campaign's books: every planned event id against what landed in the output topics.

The rules are the worker's promises, read the way a downstream consumer reads the topics:
drop records whose event id was already seen; then every planned id must be there exactly
once, with a verdict where a verdict is owed and the right dead-letter code everywhere else.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from campaigns.corpus import VERDICT, Planned


@dataclass
class Ledger:
    events: int = 0
    messages: int = 0
    verdicts: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0  # records dropped by event id (intentional copies + redeliveries)
    # Extra records for ids that were sent once: an outcome published, then the worker died
    # before committing its offset, so the message was replayed.
    redeliveries: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    outside_allowlist: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> bool:
        return bool(
            self.missing or self.wrong or self.unexpected or self.outside_allowlist or self.problems
        )

    def report(self) -> list[str]:
        lines = [
            f"messages produced: {self.messages} ({self.events} event ids)",
            "  by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(self.kinds.items())),
            f"verdicts (after dropping duplicates): {self.verdicts}",
            f"dead letters (after dropping duplicates): {sum(self.dead_letters.values())}",
            *(f"  {code}: {n}" for code, n in sorted(self.dead_letters.items())),
            f"duplicates dropped by event id: {self.duplicates} "
            f"(replays of ids sent once, after a fault: {self.redeliveries})",
            "faults injected: " + ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items())),
            f"fetches outside the allowlist: {len(self.outside_allowlist)}",
        ]
        for title, items in (
            ("MISSING", self.missing),
            ("WRONG OUTCOME", self.wrong),
            ("UNEXPECTED", self.unexpected),
            ("FETCHED OUTSIDE ALLOWLIST", self.outside_allowlist),
            ("PROBLEM", self.problems),
        ):
            lines += [f"{title}: {item}" for item in items[:20]]
        lines.append(self.line())
        return lines

    def line(self) -> str:
        return (
            f"ledger events={self.events} verdicts={self.verdicts} "
            f"dead_letters={sum(self.dead_letters.values())} duplicates={self.duplicates} "
            f"missing={len(self.missing)} faults={sum(self.faults.values())}"
        )


def outcome_of(record: dict[str, Any], is_verdict: bool) -> str:
    return VERDICT if is_verdict else str(record["reason"]["code"])


def balance(
    planned: Sequence[Planned],
    verdicts: Iterable[dict[str, Any]],
    dead_letters: Iterable[dict[str, Any]],
    *,
    fetched_paths: Iterable[str] = (),
    allowed_buckets: Sequence[str] = (),
) -> Ledger:
    """Check the outputs against the plan; the returned ledger says what, if anything, is off."""
    ledger = Ledger(messages=len(planned))
    expect: dict[str, frozenset[str]] = {}
    copies: Counter[str] = Counter()
    for item in planned:
        ledger.kinds[item.kind] += 1
        if not item.ids:
            ledger.problems.append(f"{item.kind} message was never acknowledged by the broker")
        for eid in item.ids:
            expect[eid] = item.expect
            copies[eid] += 1
    ledger.events = len(expect)

    seen: dict[str, list[str]] = defaultdict(list)
    for record in verdicts:
        seen[str(record["event_id"])].append(VERDICT)
    for record in dead_letters:
        seen[str(record.get("event_id"))].append(outcome_of(record, False))

    for eid, outcomes in seen.items():
        if eid not in expect:
            ledger.unexpected.append(f"{eid}: {outcomes}")
            continue
        extra = len(outcomes) - 1
        ledger.duplicates += extra
        if copies[eid] == 1:
            ledger.redeliveries += extra
        first = outcomes[0]
        if first == VERDICT:
            ledger.verdicts += 1
        else:
            ledger.dead_letters[first] += 1
        bad = [o for o in outcomes if o not in expect[eid]]
        if bad:
            ledger.wrong.append(f"{eid}: got {bad}, expected one of {sorted(expect[eid])}")
    ledger.missing = sorted(set(expect) - set(seen))

    for path in fetched_paths:
        bucket = urlsplit(path).path.lstrip("/").split("/", 1)[0]
        if bucket not in allowed_buckets:
            ledger.outside_allowlist.append(path)
    return ledger
