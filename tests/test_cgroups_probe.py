"""The "cgroups" probe: cgroup v2 from a real v2 system's file layout, v1 live with a spinner held to a 20 % quota."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.cgroups import QUOTA_US

from probes.contract import ProbeUnavailable
from probes.host.procfs import CLOCK_TICKS_PER_S
from probes.sources.cgroups import (
    CgroupCpu,
    CgroupCpuProbe,
    CgroupCpuSample,
    CgroupMount,
    CpuHierarchy,
    cgroup_view,
    derive_cgroups,
    find_cpu_hierarchy,
    parse_cgroup_mounts,
    parse_cpu_max,
    parse_v1_quota,
)

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup2"
T0, T1 = FIXTURES / "t0", FIXTURES / "t1"
NGINX = "/system.slice/nginx.service"
POD = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c2d3e_4b5a_4c6d_8e7f_0123456789ab.slice"
CONTAINER = f"{POD}/cri-containerd-3b8f0c1d2e4a.scope"

# /proc/self/mounts of these machines: v1 controllers, each in its own tree,
# beside a cgroup2 tree that holds only hugetlb
HYBRID_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def v2_sample(root: Path, mono_ns: int) -> CgroupCpuSample:
    probe = CgroupCpuProbe(hierarchy=CpuHierarchy(2, str(root)))
    probe.start()
    return replace(probe.sample(), mono_ns=mono_ns)


# --- finding the hierarchy ---------------------------------------------------


def test_v2_mounts_fixture_finds_the_unified_tree() -> None:
    text = (FIXTURES / "mounts").read_text().replace(" /sys/fs/cgroup ", f" {T0} ")
    mounts = parse_cgroup_mounts(text)
    assert [(m.path, m.version) for m in mounts] == [(str(T0), 2)]
    # the root's cgroup.controllers lists cpu
    assert find_cpu_hierarchy(mounts) == CpuHierarchy(2, str(T0))


def test_hybrid_v1_finds_the_cpu_tree_and_cpuacct_beside_it() -> None:
    mounts = parse_cgroup_mounts(HYBRID_MOUNTS)
    # "cpuacct" and "cpuset" are not the cpu controller, and the unified
    # tree without cpu in its cgroup.controllers has no quotas
    reads: list[str] = []

    def read(path: str) -> str | None:
        reads.append(path)
        return "hugetlb\n"

    assert find_cpu_hierarchy(mounts, read) == CpuHierarchy(1, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct")
    assert reads == []  # v1 cpu wins before any v2 tree is looked at


def test_v1_cpu_and_cpuacct_mounted_together_share_a_directory() -> None:
    mounts = parse_cgroup_mounts("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n")
    assert find_cpu_hierarchy(mounts) == CpuHierarchy(1, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct")


def test_unified_tree_without_cpu_controller_is_no_hierarchy() -> None:
    mounts = (CgroupMount("/sys/fs/cgroup/unified", 2, frozenset({"rw"})),)
    assert find_cpu_hierarchy(mounts, lambda path: "hugetlb\n") is None
    assert find_cpu_hierarchy(mounts, lambda path: None) is None


def test_mount_paths_with_spaces_are_unescaped() -> None:
    mounts = parse_cgroup_mounts("cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n")
    assert mounts[0].path == "/mnt/my cgroups"


def test_no_cpu_controller_anywhere_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mounts").write_text("proc /proc proc rw 0 0\n")
    with pytest.raises(ProbeUnavailable) as info:
        CgroupCpuProbe(proc=str(tmp_path)).start()
    assert "cpu controller" in info.value.reason and info.value.absent


# --- parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("50000 100000\n", (50000, 100000)), ("max 100000\n", None), ("", None), (None, None), ("x y\n", None)],
)
def test_parse_cpu_max(text: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_cpu_max(text) == expected


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("20000\n", "100000\n", (20000, 100000)), ("-1\n", "100000\n", None), (None, "100000\n", None), ("20000\n", "", None)],
)
def test_parse_v1_quota(quota: str | None, period: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_v1_quota(quota, period) == expected


def test_v2_sample_keeps_only_cgroups_with_a_quota() -> None:
    sample = v2_sample(T0, 0)
    assert sample.version == 2
    by_path = {c.path: c for c in sample.cgroups}
    # the root has no cpu.max, "max" is no quota, and user-1000.slice has no
    # cpu controller enabled (no cpu.max at all)
    assert set(by_path) == {NGINX, POD, CONTAINER}
    assert by_path[NGINX] == CgroupCpu(
        NGINX, quota_us=50000, period_us=100000, nr_periods=500_000, nr_throttled=120_000,
        throttled_ns=3_600_000_000_000, usage_ns=20_000_000_000_000,
    )


def test_missing_cpu_stat_gives_none_counters_and_no_rates(tmp_path: Path) -> None:
    shutil.copytree(T0, tmp_path / "t0")
    (tmp_path / "t0" / NGINX.lstrip("/") / "cpu.stat").unlink()
    sample = v2_sample(tmp_path / "t0", 0)
    nginx = next(c for c in sample.cgroups if c.path == NGINX)
    assert (nginx.nr_periods, nginx.throttled_ns, nginx.usage_ns) == (None, None, None)
    view = cgroup_view(nginx, nginx, 1.0)
    assert view.quota_cpus == 0.5
    assert (view.throttled_percent, view.throttled_periods_percent, view.usage_cpus) == (None, None, None)


# --- derive ------------------------------------------------------------------


def test_derive_v2_throttling_over_two_seconds() -> None:
    view = derive_cgroups(v2_sample(T0, 0), v2_sample(T1, 2_000_000_000), 2.0)
    assert view.version == 2
    rows = {c.path: c for c in view.cgroups}
    nginx = rows[NGINX]
    assert nginx.quota_cpus == 0.5
    # 0.3 s throttled in 2 s; 10 of 20 periods ran out of quota
    assert nginx.throttled_percent == pytest.approx(15.0)
    assert nginx.throttled_periods_percent == pytest.approx(50.0)
    # 1 s of CPU in 2 s: half a CPU, all of its quota
    assert nginx.usage_cpus == pytest.approx(0.5)
    assert nginx.usage_of_quota_percent == pytest.approx(100.0)
    pod = rows[POD]
    assert pod.quota_cpus == 2.0
    assert pod.throttled_periods_percent == pytest.approx(20.0)
    assert pod.usage_of_quota_percent == pytest.approx(30.0)
    assert rows[CONTAINER].quota_cpus == 1.5
    assert rows[CONTAINER].usage_of_quota_percent == pytest.approx(40.0)


def test_idle_cgroup_with_no_periods_has_no_periods_share() -> None:
    c = CgroupCpu("/idle", 20000, 100000, nr_periods=5, nr_throttled=1, throttled_ns=10, usage_ns=100)
    view = cgroup_view(c, c, 1.0)
    assert view.throttled_periods_percent is None  # 0 of 0 periods is not 0 %
    assert view.throttled_percent == 0.0 and view.usage_cpus == 0.0


def test_removed_cgroup_goes_new_or_remade_one_has_no_rate() -> None:
    old = CgroupCpu("/a", 20000, 100000, nr_periods=50, nr_throttled=40, throttled_ns=10**9, usage_ns=10**9)
    gone = CgroupCpu("/gone", 20000, 100000, 1, 1, 1, 1)
    new = CgroupCpu("/new", 50000, 100000, 1, 0, 0, 5)
    # /a removed and made again: its counters start over
    remade = replace(old, nr_periods=3, nr_throttled=2, throttled_ns=10**6, usage_ns=10**6)
    view = derive_cgroups(CgroupCpuSample(1, (old, gone), 0), CgroupCpuSample(1, (remade, new), 1), 1.0)
    rows = {c.path: c for c in view.cgroups}
    assert set(rows) == {"/a", "/new"}
    assert rows["/a"].throttled_percent is None and rows["/a"].throttled_periods_percent is None
    assert rows["/a"].usage_cpus is None
    assert rows["/new"].quota_cpus == 0.5 and rows["/new"].throttled_percent is None


# --- real: a spinner in a v1 cpu cgroup with a 20 % quota --------------------

WINDOW_S = 1.5
# The quota holds the spinner to 20 ms per 100 ms period; a window that
# starts and ends inside periods can hold up to a period's quota more or
# less (20 ms), and /proc/PID/stat counts in ticks (10 ms at 100 Hz) at
# each end: 20 + 2 * 10 ms over 1.5 s is 2.7 points of CPU %.
CPU_PERCENT_TOLERANCE = 100 * (QUOTA_US / 1e6 + 2 / CLOCK_TICKS_PER_S) / WINDOW_S


def cpu_time_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_spinner_at_a_20_percent_quota_is_throttled_at_its_quota(v1_cpu_cgroup: tuple[CpuHierarchy, str]) -> None:
    hierarchy, path = v1_cpu_cgroup
    procs_files = [os.path.join(root, path.lstrip("/"), "cgroup.procs") for root in {hierarchy.root, hierarchy.usage_root} if root]

    spinner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    try:
        for procs in procs_files:
            Path(procs).write_text(f"{spinner.pid}\n")
        probe = CgroupCpuProbe(hierarchy=hierarchy)
        probe.start()
        # the quota holds from the next period on; the window starts after a few
        time.sleep(0.3)
        s0, t0 = probe.sample(), cpu_time_ticks(spinner.pid)
        time.sleep(WINDOW_S)
        s1, t1 = probe.sample(), cpu_time_ticks(spinner.pid)
    finally:
        spinner.kill()
        spinner.wait()
    dt_s = (s1.mono_ns - s0.mono_ns) / 1e9
    view = next(c for c in derive_cgroups(s0, s1, dt_s).cgroups if c.path == path)
    assert view.quota_cpus == pytest.approx(0.2)
    assert view.throttled_percent is not None and view.throttled_percent > 0
    # it ran out of quota in (nearly) every period
    assert view.throttled_periods_percent is not None and view.throttled_periods_percent > 90
    spinner_percent = 100 * (t1 - t0) / CLOCK_TICKS_PER_S / dt_s
    assert spinner_percent == pytest.approx(20.0, abs=CPU_PERCENT_TOLERANCE)
    if hierarchy.usage_root is not None:
        # the cgroup's own usage agrees: at its quota, not idle
        assert view.usage_cpus == pytest.approx(0.2, abs=CPU_PERCENT_TOLERANCE / 100)
        assert view.usage_of_quota_percent == pytest.approx(100.0, abs=CPU_PERCENT_TOLERANCE * 5)
