"""/healthz, /readyz and /metrics over plain HTTP, for Kubernetes probes and Prometheus.

Liveness means the loops still turn (a stuck poll loop gets the pod restarted); readiness
means the engine is loaded and the worker holds partitions (or, for the API, can answer).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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


class HealthServer:
    def __init__(
        self, state: HealthState, registry: CollectorRegistry, host: str, port: int
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                    return
                if path in ("/healthz", "/readyz"):
                    ok, detail = state.alive() if path == "/healthz" else state.ready()
                    body = json.dumps({"ok": ok, **detail}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                    return
                self._send(404, b'{"error": "not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
