"""`skyra-stream <command>` as a child process, configured only through SKYRA_* variables,
as operators configure pods: the demo, the tests, the benchmarks and the campaigns start the
worker and the API server this way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from skyra_stream.devstack.broker import free_port


def skyra_env(**settings: object) -> dict[str, str]:
    """The current environment plus `SKYRA_<NAME>` for each setting given by field name.

    Children are configured the way operators configure pods: only through the environment.
    """
    env = dict(os.environ)
    for name, value in settings.items():
        if value is None:
            env.pop(f"SKYRA_{name.upper()}", None)
        elif isinstance(value, list | tuple):
            env[f"SKYRA_{name.upper()}"] = ",".join(str(v) for v in value)
        else:
            env[f"SKYRA_{name.upper()}"] = str(value)
    return env


def skyra_command() -> str:
    """The `skyra-stream` entry point next to this interpreter (the venv's)."""
    return str(Path(sys.executable).with_name("skyra-stream"))


class ChildProcess:
    """A `skyra-stream <command>` child in its own session, logging to a file, with its
    HTTP port for /readyz and /metrics."""

    def __init__(
        self,
        command: str,
        log_path: Path,
        settings: Mapping[str, object],
        *,
        http_port: int | None = None,
    ) -> None:
        self.http_port = http_port or free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        env = skyra_env(http_port=self.http_port, **settings)
        env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen
        self.proc = subprocess.Popen(
            [skyra_command(), command],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
        """(status, body) of a GET on the child's HTTP port; (0, b"") when nothing answers."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout_s
            ) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def metric(self, name: str) -> float | None:
        """One unlabelled sample from /metrics (None when absent or unreachable)."""
        status, body = self.get("/metrics")
        if status != 200:
            return None
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.log_path.stem} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if self.get("/readyz", timeout_s=2)[0] == 200:
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"{self.log_path.stem} not ready after {timeout_s:.0f} s:\n{self.tail()}"
        )

    def tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def signal(self, sig: int) -> None:
        """Signal the whole session, the worker and vLLM's engine processes, as a lost node
        or a container runtime stopping the whole cgroup does."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill_alone(self) -> None:
        """SIGKILL the worker process and nothing else, as the kernel's OOM killer does (one
        process, often the largest): its engine processes must not outlive it."""
        if self.proc.poll() is None:
            self.proc.kill()

    def terminate(self) -> None:
        """SIGTERM to the worker alone, as Kubernetes stops a pod (to PID 1): the worker
        drains through its engine, which must still be running to finish the work."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout_s: float = 180.0) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def stop(self, timeout_s: float = 180.0) -> int:
        """SIGTERM and wait for the drain; SIGKILL if it takes longer than `timeout_s`."""
        self.terminate()
        try:
            return self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()
