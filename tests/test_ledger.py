"""The chaos campaign's books must catch every way a stream can go wrong, or a green
campaign proves nothing: a lost event, a wrong code, an outcome nobody planned, a fetch
outside the allowlist. Duplicates and redeliveries are counted, not failures."""

from __future__ import annotations

from typing import Any

from campaigns.corpus import VERDICT, Planned
from campaigns.ledger import balance


def planned(kind: str, eid: str, *expect: str) -> Planned:
    return Planned(kind=kind, raw=b"{}", expect=frozenset(expect), ids=[eid])


def verdict(eid: str) -> dict[str, Any]:
    return {"event_id": eid, "status": "ok"}


def dead(eid: str, code: str) -> dict[str, Any]:
    return {"event_id": eid, "reason": {"code": code, "message": "-"}}


PLAN = [
    planned("valid:mp4", "a", VERDICT),
    planned("valid:webm", "b", VERDICT),
    planned("missing", "c", "object_not_found"),
    planned("http_scheme", "d", "uri_not_allowed"),
]
ALL_THERE = (
    [verdict("a"), verdict("b")],
    [dead("c", "object_not_found"), dead("d", "uri_not_allowed")],
)


def test_a_clean_run_balances() -> None:
    ledger = balance(PLAN, *ALL_THERE)
    assert not ledger.lost
    assert (ledger.events, ledger.verdicts, ledger.duplicates) == (4, 2, 0)
    assert dict(ledger.dead_letters) == {"object_not_found": 1, "uri_not_allowed": 1}
    assert ledger.line() == (
        "ledger events=4 verdicts=2 dead_letters=2 duplicates=0 missing=0 faults=0"
    )


def test_a_redelivery_is_a_duplicate_not_a_loss() -> None:
    verdicts, dead_letters = ALL_THERE
    ledger = balance(PLAN, [*verdicts, verdict("a")], dead_letters)
    assert not ledger.lost
    assert (ledger.duplicates, ledger.redeliveries) == (1, 1)


def test_an_intentional_copy_is_a_duplicate_but_not_a_redelivery() -> None:
    plan = [*PLAN, planned("duplicate", "a", VERDICT)]
    verdicts, dead_letters = ALL_THERE
    ledger = balance(plan, [*verdicts, verdict("a")], dead_letters)
    assert not ledger.lost
    assert (ledger.duplicates, ledger.redeliveries) == (1, 0)


def test_a_lost_event_fails_the_run() -> None:
    verdicts, dead_letters = ALL_THERE
    ledger = balance(PLAN, verdicts[:1], dead_letters)
    assert ledger.lost
    assert ledger.missing == ["b"]
    assert ledger.line().endswith("missing=1 faults=0")


def test_a_wrong_code_or_a_verdict_for_a_refused_uri_fails_the_run() -> None:
    verdicts, _ = ALL_THERE
    ledger = balance(PLAN, [*verdicts, verdict("d")], [dead("c", "fetch_failed")])
    assert ledger.lost
    assert len(ledger.wrong) == 2
    assert any(w.startswith("d:") for w in ledger.wrong)


def test_an_unplanned_outcome_and_a_fetch_outside_the_allowlist_fail_the_run() -> None:
    verdicts, dead_letters = ALL_THERE
    assert balance(PLAN, [*verdicts, verdict("zz")], dead_letters).lost
    ledger = balance(
        PLAN,
        *ALL_THERE,
        fetched_paths=["/uploads/a.mp4", "/private/secret.mp4"],
        allowed_buckets=["uploads"],
    )
    assert ledger.outside_allowlist == ["/private/secret.mp4"]
    assert ledger.lost


def test_a_message_the_broker_never_acknowledged_fails_the_run() -> None:
    unacked = Planned(kind="not_json", raw=b"x", expect=frozenset({"invalid_event"}))
    assert balance([*PLAN, unacked], *ALL_THERE).lost
