"""How many CPUs this process may really use: the container's quota, not the node's cores.

`os.cpu_count()` in a pod reports the node (say 96 cores) while the cgroup may allow 8: a
decode pool sized from it oversubscribes the quota and the kernel throttles the whole pod,
the engine's feeder thread included. The quota is in `cpu.max` (cgroup v2: "<quota>
<period>" or "max <period>") or in `cpu.cfs_quota_us` / `cpu.cfs_period_us` (v1); CPU
affinity (taskset, the static CPU manager) bounds it too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_v2_group(root: Path, proc_cgroup: Path) -> Path:
    """This process's cgroup v2 folder: the root inside a container (its own cgroup
    namespace), the "0::<path>" entry of /proc/self/cgroup on a host."""
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                return root / line[3:].strip().lstrip("/")
    except OSError:
        pass
    return root


def cgroup_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs the cgroup quota allows (fractional), or None when there is no quota."""
    for group in dict.fromkeys([_own_v2_group(root, proc_cgroup), root]):
        try:
            quota, period = (group / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError):
            continue
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """Whole CPUs to plan for: the smaller of the quota (rounded down, at least 1) and the
    CPUs this process may be scheduled on."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 1
    quota = cgroup_quota(root, proc_cgroup)
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.floor(quota)))
