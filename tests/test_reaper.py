"""Nothing a killed process started may outlive it: the reaper, on real processes.

A parent starts the reaper and two grandchildren that ignore SIGTERM-free exits (stand-ins
for vLLM's engine core and worker, which keep running when their parent is SIGKILLed); the
parent alone is SIGKILLed, as the OOM killer or `kill -9 <pid>` does, and its whole tree must
be gone within 10 seconds. The same with the real engine is in tests/test_worker.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.subprocess

PARENT = r"""
import subprocess, sys, time
from skyra_stream.model.reaper import start_reaper
start_reaper()
# An engine-like pair: a child that starts its own child, both long-lived.
subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "time.sleep(600)"])
print("started", flush=True)
time.sleep(600)
"""


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_sigkill_of_the_parent_alone_ends_its_whole_tree() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    tree: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "started"
        root = psutil.Process(parent.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # reaper + child + grandchild
            tree = root.children(recursive=True)
            if len(tree) >= 3:
                break
            time.sleep(0.1)
        assert len(tree) >= 3, tree
        time.sleep(1.0)  # the reaper has looked at the tree at least once
        os.kill(parent.pid, signal.SIGKILL)  # the parent alone, not its group
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(tree) == []
    finally:  # only what this test started: other tests may share this process
        if parent.poll() is None:
            parent.kill()
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


def test_a_parent_that_exits_normally_leaves_nothing_either() -> None:
    code = (
        "import subprocess, sys, time\n"
        "from skyra_stream.model.reaper import start_reaper\n"
        "r = start_reaper()\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(r.pid, c.pid, flush=True)\n"
        "time.sleep(1.0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(p) for p in out.stdout.split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
