"""What /healthz and /readyz answer (served by `skyra_stream.api.app`), for Kubernetes probes.

Liveness means the loops still turn (a stuck poll loop gets the pod restarted); readiness
means the engine is loaded and the worker holds partitions (or, for the API, can answer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class HealthState:
    """Heartbeats of the loops and the readiness conditions, read by the HTTP server."""

    def __init__(self, stale_after_s: float = 60.0) -> None:
        self.stale_after_s = stale_after_s
        self._beats: dict[str, float] = {}
        self._ready_checks: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()

    def beat(self, loop: str) -> None:
        with self._lock:
            self._beats[loop] = time.monotonic()

    def forget(self, loop: str) -> None:
        with self._lock:
            self._beats.pop(loop, None)

    def ready_when(self, name: str, check: Callable[[], bool]) -> None:
        self._ready_checks[name] = check

    def alive(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            ages = {k: round(now - v, 1) for k, v in self._beats.items()}
        return all(a <= self.stale_after_s for a in ages.values()), {"loops_age_s": ages}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        results = {}
        for name, check in self._ready_checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        return bool(results) and all(results.values()), {"checks": results}
