"""Engine processes must not outlive the process that started them.

vLLM runs its engine in child processes (`VLLM::EngineCore` and its worker). When the parent
exits normally it shuts them down; when it is killed (`kill -9`, the OOM killer choosing the
worker) they are reparented and keep running, holding gigabytes of RAM, on a GPU node the
GPU's memory, so that the restarted worker cannot load the model. A container runtime reaps
them with the container; a VM, a terminal or systemd with another KillMode does not.

So whoever starts an engine also starts this reaper: a small process that remembers the
parent's descendants (every half second) and, the moment the parent is gone, terminates the
ones still alive (SIGTERM, then SIGKILL after a grace period). It is a separate process
because nothing inside the killed one can act, and it needs no cooperation from vLLM. It
stays in the parent's process group, so a kill of the whole group takes it too; a process
is only killed if its pid still has the creation time recorded for it (no pid reuse).

    python -m skyra_stream.model.reaper <parent pid>
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
GRACE_S = 3.0


def start_reaper() -> subprocess.Popen[bytes]:
    """Watch this process; its descendants die with it however it dies."""
    return subprocess.Popen(
        [sys.executable, "-m", "skyra_stream.model.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )


def watch(parent_pid: int, poll_s: float = POLL_S) -> dict[int, float]:
    """Remember the parent's descendants until it is gone; returns {pid: create_time}."""
    me = os.getpid()
    known: dict[int, float] = {}
    while True:
        try:
            parent = psutil.Process(parent_pid)
            children = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            return known
        for child in children:
            if child.pid == me:
                continue
            try:
                known[child.pid] = child.create_time()
            except psutil.NoSuchProcess:
                known.pop(child.pid, None)
        # Reparented: the parent died between two looks (or its pid was already reused).
        if os.getppid() != parent_pid or parent.status() == psutil.STATUS_ZOMBIE:
            return known
        time.sleep(poll_s)


def reap(known: dict[int, float], grace_s: float = GRACE_S) -> list[int]:
    """Terminate what is left of `known`; returns the pids that had to be ended."""
    victims = []
    for pid, created in known.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                victims.append(proc)
        except psutil.NoSuchProcess:
            continue
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(victims, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return [p.pid for p in victims]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m skyra_stream.model.reaper <parent pid>", file=sys.stderr)
        return 2
    reap(watch(int(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
