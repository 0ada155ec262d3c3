"""CPU sizing from the container's quota (cgroup v1 and v2 layouts written by the test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyra_stream.media.cpu import available_cpus, cgroup_quota
from skyra_stream.runtime.configs import decode_limits, decode_workers
from skyra_stream.settings import Settings


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def affinity() -> int:
    return len(os.sched_getaffinity(0))


def test_v2_quota_inside_a_container(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "none") == 1.5
    assert available_cpus(tmp_path, tmp_path / "none") == 1  # whole CPUs, rounded down


def test_v2_quota_of_this_process_group_on_a_host(tmp_path: Path, affinity: int) -> None:
    _write(tmp_path / "cpu.max", "max 100000\n")  # the root has none
    _write(tmp_path / "kubepods/pod1/cpu.max", "100000 100000\n")
    _write(tmp_path / "self-cgroup", "0::/kubepods/pod1\n")
    assert cgroup_quota(tmp_path, tmp_path / "self-cgroup") == 1.0
    assert available_cpus(tmp_path, tmp_path / "self-cgroup") == 1


def test_v1_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cpu/cpu.cfs_quota_us", "800000\n")
    _write(tmp_path / "cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "none") == 8.0


def test_no_quota_means_the_cpus_this_process_may_run_on(tmp_path: Path, affinity: int) -> None:
    _write(tmp_path / "cpu.max", "max 100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "none") is None
    assert available_cpus(tmp_path, tmp_path / "none") == affinity
    _write(tmp_path / "cpu/cpu.cfs_quota_us", "-1\n")  # v1's "no limit"
    assert available_cpus(tmp_path / "cpu", tmp_path / "none") == affinity


def test_a_quota_above_the_affinity_is_bounded_by_it(tmp_path: Path, affinity: int) -> None:
    _write(tmp_path / "cpu.max", f"{(affinity + 4) * 100000} 100000\n")
    assert available_cpus(tmp_path, tmp_path / "none") == affinity


def test_decode_settings_follow_the_cpus() -> None:
    cpus = available_cpus()
    auto = Settings()
    assert decode_workers(auto) == cpus
    assert decode_limits(auto).threads == (1 if cpus > 1 else cpus)
    assert decode_limits(auto).skip_nonref
    fixed = Settings(decode_concurrency=1, decode_threads=0, decode_skip_nonref=False)
    assert decode_workers(fixed) == 1
    assert decode_limits(fixed).threads == 0  # FFmpeg picks
    assert not decode_limits(fixed).skip_nonref
