"""Real cgroups for tests: one with a CPU quota in the live v1 cpu tree (throttling), one with a memory limit."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from probes.contract import ProbeUnavailable
from probes.sources.cgroups import CgroupCpuProbe, CpuHierarchy
from support import cannot_run

QUOTA_US, PERIOD_US = 20_000, 100_000


@pytest.fixture
def v1_cpu_cgroup() -> Iterator[tuple[CpuHierarchy, str]]:
    """A cgroup with a 20 % quota in the live v1 cpu tree (and cpuacct's), removed afterwards."""
    if os.geteuid() != 0:
        cannot_run("needs root: makes a cgroup with a CPU quota")
    probe = CgroupCpuProbe()
    try:
        probe.start()
    except ProbeUnavailable as exc:
        cannot_run(str(exc))
    hierarchy = probe.hierarchy
    assert hierarchy is not None
    if hierarchy.version != 1:
        pytest.skip("this live test drives the v1 cpu controller; v2 is tested from fixtures")
    name = f"orac-test-{os.getpid()}"
    dirs = [os.path.join(hierarchy.root, name)]
    if hierarchy.usage_root is not None and hierarchy.usage_root != hierarchy.root:
        dirs.append(os.path.join(hierarchy.usage_root, name))
    made: list[str] = []
    try:
        for directory in dirs:
            os.mkdir(directory)
            made.append(directory)
        cpu_dir = dirs[0]
        Path(cpu_dir, "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        Path(cpu_dir, "cpu.cfs_quota_us").write_text(f"{QUOTA_US}\n")
        # The most weight v1 allows, so on a busy box the spinner gets its
        # quota every period and the quota, not the competition, sets its CPU %.
        Path(cpu_dir, "cpu.shares").write_text("262144\n")
        yield hierarchy, f"/{name}"
    finally:
        for directory in reversed(made):
            os.rmdir(directory)


MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


@contextmanager
def memory_cgroup(name: str, limit_bytes: int) -> Iterator[Path]:
    """A v1 memory cgroup `name`-<pid> limited to `limit_bytes`; its processes killed and it removed afterwards."""
    if os.geteuid() != 0 or not (MEMORY_ROOT / "memory.limit_in_bytes").exists():
        pytest.skip("needs root and the v1 memory controller at /sys/fs/cgroup/memory")
    path = MEMORY_ROOT / f"{name}-{os.getpid()}"
    path.mkdir()
    try:
        (path / "memory.limit_in_bytes").write_text(f"{limit_bytes}\n")
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)
