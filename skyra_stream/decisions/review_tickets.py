"""Review tickets: a review can only judge a verdict that was sent to review, as it was sent.

A review event carries the verdict it judges, as the reviewer's client sends it back. Without
a check, anyone who can write to the review-results topic could put any video with any label
into the audit trail and the next fine-tune. So each verdict published to the review topic
carries a ticket (the `review-ticket` header): HMAC-SHA256, with `SKYRA_REVIEW_TICKET_KEY`,
over the verdict's event id and the SHA-256 of its canonical bytes (its JSON as the worker
serialises it). The review loop recomputes the ticket from the verdict in the review event:
a review without a ticket, with another verdict's, or of a verdict edited after it was
ticketed does not verify and becomes an `invalid_review` dead letter. During a key rotation
the previous key (`SKYRA_REVIEW_TICKET_PREVIOUS_KEY`) still verifies tickets issued before.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from skyra_stream.messages import Verdict

HEADER: Final = "review-ticket"
_DOMAIN: Final = b"skyra-review-ticket-v1\n"


def canonical_bytes(verdict: Verdict) -> bytes:
    """The verdict as the worker publishes it; a parsed copy serialises to the same bytes."""
    return verdict.model_dump_json().encode()


class ReviewTickets:
    def __init__(self, key: bytes, previous: bytes | None = None) -> None:
        if not key:
            raise ValueError("an empty key issues no tickets")
        self._key = key
        self._keys = [key] + ([previous] if previous else [])

    @staticmethod
    def _mac(key: bytes, verdict: Verdict) -> str:
        digest = hashlib.sha256(canonical_bytes(verdict)).hexdigest()
        message = _DOMAIN + verdict.event_id.encode() + b"\n" + digest.encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def issue(self, verdict: Verdict) -> str:
        return self._mac(self._key, verdict)

    def verify(self, verdict: Verdict, ticket: str | None) -> bool:
        """True when `ticket` was issued for exactly this verdict (current or previous key)."""
        if not ticket:
            return False
        return any(
            hmac.compare_digest(ticket.encode(), self._mac(key, verdict).encode())
            for key in self._keys
        )
