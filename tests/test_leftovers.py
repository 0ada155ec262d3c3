"""The session guard in tests/conftest.py: a test that leaves a child process alive fails the
run, and the child does not outlive it. Checked on a session of its own (pytester), run in a
fresh interpreter so that the child is really a grandchild of this one."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.subprocess

CONFTEST = """
import tests.conftest as guard
from tests.conftest import no_child_outlives_the_session  # noqa: F401

guard.LEFTOVER_GRACE_S = 1.0
"""


ROOT = Path(__file__).resolve().parents[1]


def _run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=body)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(ROOT))
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-p", "no:xdist")


def test_a_child_left_running_fails_the_session_and_is_killed(pytester: pytest.Pytester) -> None:
    pid_file = pytester.path / "pid"
    result = _run(
        pytester,
        f"""
import subprocess, pathlib
def test_leaks():
    proc = subprocess.Popen(["sleep", "300"])
    pathlib.Path({str(pid_file)!r}).write_text(str(proc.pid))
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    assert "outlived the tests that started them" in result.stdout.str()
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_child_that_is_waited_for_passes(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
import subprocess
def test_tidy():
    subprocess.run(["sleep", "0.1"], check=True)
""",
    )
    result.assert_outcomes(passed=1)
