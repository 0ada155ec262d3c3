"""uvicorn on a thread of its own, on a socket bound before it starts.

A thread, not the main thread, so that one signal handler (the process's) decides how the
process stops: the worker drains Kafka work, the API server finishes its requests, and
either way the engine is shut down last. Binding the socket here makes port 0 usable (tests)
and makes a taken port fail at start, not later inside a thread.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI


class HttpServer:
    def __init__(
        self, app: FastAPI, host: str, port: int, *, graceful_timeout_s: float = 30.0
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(512)
        self._socket.set_inheritable(True)
        config = uvicorn.Config(
            app,
            log_config=None,  # our structlog setup owns logging
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(graceful_timeout_s),
            limit_concurrency=1024,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, let running requests finish (up to the graceful timeout)."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()
