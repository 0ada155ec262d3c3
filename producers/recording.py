"""A sink that records instead of producing: the publishing side of a test, shipped with the
package (as `structlog.testing` is) so that users' tests and ours use the same fake.

`RecordingSink` implements `pipeline.Sink`: it keeps what was published and acknowledges it
at once, on demand, or never (a broker that is down). No Kafka import: the pipeline's logic
is tested against it in milliseconds, and the real producer against the real broker.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class RecordingSink(Generic[T]):
    """A sink that keeps what it is given. `auto_ack=False` leaves every publish pending
    until `ack()`; `fail_with` fails every publish (a broker that refuses)."""

    auto_ack: bool = True
    fail_with: BaseException | None = None
    published: list[T] = field(default_factory=list)
    _pending: list[concurrent.futures.Future[None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, outcome: T) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self.published.append(outcome)
            if self.fail_with is not None:
                future.set_exception(self.fail_with)
            elif self.auto_ack:
                future.set_result(None)
            else:
                self._pending.append(future)
        return future

    def ack(self) -> int:
        """Acknowledge every publish still pending; returns how many."""
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.set_result(None)
        return len(pending)

    def flush(self) -> None:
        return None
