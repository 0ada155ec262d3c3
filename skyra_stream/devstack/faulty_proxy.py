"""An HTTP reverse proxy on loopback that injects faults in front of a real server (moto S3,
Label Studio).

Tests use it to make a real S3 endpoint answer 503, stall, or deny, and to see every request
the worker made (so a test can prove nothing outside the allowlist was ever fetched).
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    status: int = 503
    code: str = "ServiceUnavailable"
    delay_s: float = 0.0  # stall before answering (or before forwarding when status == 0)
    path_contains: str = ""
    # Forward the request, then hold the upstream's answer this long (status 0): the request
    # took effect upstream, the client is still waiting (a crash there is the test).
    hold_s: float = 0.0


class FaultyProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.requests: list[tuple[str, str]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy._record(self.command, self.path)
                fault = proxy._next_fault(self.path)
                if fault is not None:
                    if fault.delay_s:
                        time.sleep(fault.delay_s)
                    if fault.status:
                        self._answer_error(fault)
                        return
                try:
                    self._forward(body, fault.hold_s if fault is not None else 0.0)
                except OSError:
                    # Upstream gone (end of session) or the client hung up after a stall.
                    self.close_connection = True

            def _answer_error(self, fault: Fault) -> None:
                xml = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                    f"<Message>injected by FaultyProxy</Message></Error>"
                ).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)

            def _forward(self, body: bytes, hold_s: float = 0.0) -> None:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    if hold_s:
                        time.sleep(hold_s)
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = _handle

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, times: int, fault: Fault) -> None:
        """The next `times` requests (whose path contains `fault.path_contains`) get `fault`."""
        with self._lock:
            self._faults.extend([fault] * times)

    @property
    def pending(self) -> int:
        """Faults injected and not yet served."""
        with self._lock:
            return len(self._faults)

    def drop_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            if self._faults and self._faults[0].path_contains in path:
                return self._faults.popleft()
        return None


class _QuietServer(ThreadingHTTPServer):
    """A client that gives up on a stalled answer resets its connection; that is the fault
    working, not an error worth a traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
