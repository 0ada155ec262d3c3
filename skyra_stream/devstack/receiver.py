"""A webhook receiver on loopback for the tests, the benchmark and the demo: a real HTTP
server (the standard library's) that records every request and answers as told per path.

Behaviours, by path: `/ok` answers 204; `/flaky/<n>` answers 503 to its first n requests
then 204; `/slow/<seconds>` waits, then 204; `/hang` never answers (until the receiver
closes); `/redirect?to=<url>` answers 302 to it. Every connection is counted, so a test can
show that a refused callback was never connected to.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                with receiver._lock:
                    receiver.connections += 1
                super().setup()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                path = self.path
                with receiver._lock:
                    receiver.received.append(
                        Received(path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver._counts[path] = n = receiver._counts.get(path, 0) + 1
                self._answer(path, n)

            def _answer(self, path: str, n: int) -> None:
                parts = urlsplit(path)
                segments = parts.path.strip("/").split("/")
                if segments[0] == "status":  # /status/500: always that answer
                    return self._status(int(segments[1]))
                if segments[0] == "flaky" and n <= int(segments[1]):
                    return self._status(503)
                if segments[0] == "slow":
                    receiver._closing.wait(float(segments[1]))
                if segments[0] == "hang":
                    receiver._closing.wait()
                    return None
                if segments[0] == "redirect":
                    target = parse_qs(parts.query).get("to", ["/"])[0]
                    return self._status(302, {"Location": target})
                return self._status(204)

            def _status(self, code: int, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/ok", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers.get("webhook-id", "") for r in self.received]

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
