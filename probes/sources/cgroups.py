"""The "cgroups" probe: CPU quota and throttling of every cgroup that has a quota.

Two layouts exist. cgroup v2 (one unified tree, usually /sys/fs/cgroup):
`cpu.max` holds "<quota_us> <period_us>" or "max <period_us>", and
`cpu.stat` holds usage_usec, nr_periods, nr_throttled and throttled_usec.
cgroup v1 (a tree per controller): the cpu controller's
`cpu.cfs_quota_us` (-1: no quota) and `cpu.cfs_period_us`, and its
`cpu.stat` holds nr_periods, nr_throttled and throttled_time in ns; usage
is the cpuacct controller's `cpuacct.usage` (ns), in the same directory
where the two are mounted together ("cpu,cpuacct", as systemd does) or at
the same path of the cpuacct tree. A controller is bound to one hierarchy
at a time, so a box has the cpu controller in v1 or in v2, never both
(hybrid boxes mount a v2 tree without it beside the v1 ones).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import read_text


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """One cgroup line of /proc/self/mounts."""

    path: str
    version: int
    # mount options: for v1 they name the controllers ("cpu", "cpuacct")
    options: frozenset[str]


@dataclass(frozen=True, slots=True)
class CpuHierarchy:
    """Where the cpu controller's cgroups are.

    `usage_root` is the v1 cpuacct tree whose cgroups' cpuacct.usage holds
    their CPU time, the same as `root` when the two are mounted together;
    None for v2 (cpu.stat has it) or when cpuacct is not mounted.
    """

    version: int
    root: str
    usage_root: str | None = None


@dataclass(frozen=True, slots=True)
class CgroupCpu:
    """One cgroup's raw CPU bandwidth counters.

    `path` is the cgroup's path below the hierarchy's root, as
    /proc/<pid>/cgroup names it ("/system.slice/nginx.service"). Counters
    are cumulative since the cgroup was made; `throttled_ns` is v2's
    throttled_usec * 1000 or v1's throttled_time, summed over CPUs (the
    kernel adds each CPU's runqueue's throttled time). None where the file
    or field is missing.
    """

    path: str
    quota_us: int
    period_us: int
    nr_periods: int | None
    nr_throttled: int | None
    throttled_ns: int | None
    usage_ns: int | None


@dataclass(frozen=True, slots=True)
class CgroupCpuSample:
    version: int
    cgroups: tuple[CgroupCpu, ...]
    # time.monotonic_ns() as the tree's walk began
    mono_ns: int


@dataclass(frozen=True, slots=True)
class CgroupCpuView:
    """One cgroup's CPU quota and throttling over one interval.

    quota_cpus = quota / period (0.2: a fifth of one CPU per period).
    throttled_percent = 100 * throttled time / interval: how long the
    cgroup's runqueues sat throttled, summed over CPUs as the kernel keeps
    it, so one single-threaded task held to a 20 % quota reads about 80
    and several CPUs' queues throttled at once read over 100.
    throttled_periods_percent = 100 * nr_throttled / nr_periods over the
    interval: the share of enforcement periods in which the quota ran out
    (cAdvisor's container_cpu_cfs_throttled_periods_total over
    container_cpu_cfs_periods_total); None when no period ran (an idle
    cgroup's periods do not advance).
    usage_cpus = CPU time used / interval (0.2: a fifth of one CPU), and
    usage_of_quota_percent = 100 * usage_cpus / quota_cpus: a cgroup near
    100 there is running at its quota, not idle at 20 % CPU.
    Rates are None for a cgroup first seen now, or whose counters went
    backwards (removed and made again under the same path).
    """

    path: str
    quota_cpus: float
    throttled_percent: float | None
    throttled_periods_percent: float | None
    usage_cpus: float | None
    usage_of_quota_percent: float | None


@dataclass(frozen=True, slots=True)
class CgroupsView:
    version: int
    cgroups: tuple[CgroupCpuView, ...]


def _unescape_mount_path(path: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal
    # escapes (\040 ...), as getmntent(3) undoes them.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def parse_cgroup_mounts(text: str) -> tuple[CgroupMount, ...]:
    """The cgroup and cgroup2 mounts of a /proc/<pid>/mounts text."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("cgroup", "cgroup2"):
            continue
        version = 2 if fields[2] == "cgroup2" else 1
        mounts.append(CgroupMount(_unescape_mount_path(fields[1]), version, frozenset(fields[3].split(","))))
    return tuple(mounts)


def find_cpu_hierarchy(
    mounts: tuple[CgroupMount, ...], read: Callable[[str], str | None] = read_text,
) -> CpuHierarchy | None:
    """The hierarchy the cpu controller is bound to, or None.

    v1: a cgroup mount with the "cpu" option ("cpuacct" and "cpuset" are
    other controllers). v2: a cgroup2 mount whose root cgroup.controllers
    lists "cpu"; a v2 tree without it (the "unified" tree of hybrid boxes)
    has no quotas to read.
    """
    for mount in mounts:
        if mount.version == 1 and "cpu" in mount.options:
            usage_root = mount.path if "cpuacct" in mount.options else next(
                (m.path for m in mounts if m.version == 1 and "cpuacct" in m.options), None)
            return CpuHierarchy(1, mount.path, usage_root)
    for mount in mounts:
        controllers = read(f"{mount.path}/cgroup.controllers") if mount.version == 2 else None
        if controllers is not None and "cpu" in controllers.split():
            return CpuHierarchy(2, mount.path)
    return None


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """A "key value" per line file (cpu.stat); lines that are not that are skipped."""
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return values


def parse_cpu_max(text: str | None) -> tuple[int, int] | None:
    """v2 cpu.max "<quota_us> <period_us>": (quota, period), None for "max" (no quota) or no file."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return (quota, period) if quota > 0 and period > 0 else None


def parse_v1_quota(quota_text: str | None, period_text: str | None) -> tuple[int, int] | None:
    """v1 cpu.cfs_quota_us and cpu.cfs_period_us: (quota, period), None for -1 (no quota)."""
    try:
        quota, period = int((quota_text or "").strip()), int((period_text or "").strip())
    except ValueError:
        return None
    return (quota, period) if quota > 0 and period > 0 else None


def read_cgroup_v2(root: str, directory: str, read: Callable[[str], str | None] = read_text) -> CgroupCpu | None:
    """One v2 cgroup's counters, or None when it has no quota."""
    quota = parse_cpu_max(read(f"{directory}/cpu.max"))
    if quota is None:
        return None
    stat = parse_flat_keyed(read(f"{directory}/cpu.stat"))
    throttled_us = stat.get("throttled_usec")
    usage_us = stat.get("usage_usec")
    return CgroupCpu(
        path=_cgroup_path(root, directory),
        quota_us=quota[0],
        period_us=quota[1],
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_ns=None if throttled_us is None else throttled_us * 1000,
        usage_ns=None if usage_us is None else usage_us * 1000,
    )


def read_cgroup_v1(
    root: str, directory: str, usage_root: str | None, read: Callable[[str], str | None] = read_text,
) -> CgroupCpu | None:
    """One v1 cpu cgroup's counters, or None when it has no quota."""
    quota = parse_v1_quota(read(f"{directory}/cpu.cfs_quota_us"), read(f"{directory}/cpu.cfs_period_us"))
    if quota is None:
        return None
    path = _cgroup_path(root, directory)
    stat = parse_flat_keyed(read(f"{directory}/cpu.stat"))
    usage = None
    if usage_root is not None:
        text = read(os.path.join(usage_root, path.lstrip("/"), "cpuacct.usage"))
        usage = int(text) if text and text.strip().isdigit() else None
    return CgroupCpu(
        path=path,
        quota_us=quota[0],
        period_us=quota[1],
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_ns=stat.get("throttled_time"),
        usage_ns=usage,
    )


def _cgroup_path(root: str, directory: str) -> str:
    relative = os.path.relpath(directory, root)
    return "/" if relative == "." else "/" + relative


def _delta(prev: int | None, curr: int | None) -> int | None:
    if prev is None or curr is None or curr < prev:
        return None
    return curr - prev


def cgroup_view(prev: CgroupCpu | None, curr: CgroupCpu, dt_s: float) -> CgroupCpuView:
    quota_cpus = curr.quota_us / curr.period_us
    if prev is None or dt_s <= 0:
        return CgroupCpuView(curr.path, quota_cpus, None, None, None, None)
    throttled_ns = _delta(prev.throttled_ns, curr.throttled_ns)
    periods = _delta(prev.nr_periods, curr.nr_periods)
    throttled_periods = _delta(prev.nr_throttled, curr.nr_throttled)
    usage_ns = _delta(prev.usage_ns, curr.usage_ns)
    usage_cpus = None if usage_ns is None else usage_ns / (dt_s * 1e9)
    return CgroupCpuView(
        path=curr.path,
        quota_cpus=quota_cpus,
        throttled_percent=None if throttled_ns is None else 100.0 * throttled_ns / (dt_s * 1e9),
        throttled_periods_percent=(
            100.0 * throttled_periods / periods if periods and throttled_periods is not None else None
        ),
        usage_cpus=usage_cpus,
        usage_of_quota_percent=None if usage_cpus is None else 100.0 * usage_cpus / quota_cpus,
    )


def derive_cgroups(prev: CgroupCpuSample, curr: CgroupCpuSample, dt_s: float) -> CgroupsView:
    """One view per cgroup with a quota now; a cgroup removed since `prev` is dropped."""
    before = {c.path: c for c in prev.cgroups}
    return CgroupsView(curr.version, tuple(cgroup_view(before.get(c.path), c, dt_s) for c in curr.cgroups))


class CgroupCpuProbe:
    """Walks the cpu controller's tree for cgroups with a quota.

    Args:
        proc: The proc root whose self/mounts says where the trees are.
        hierarchy: Where to look instead (tests, a container's view of
            another tree); found from the mounts at start when None.
    """

    name: ClassVar[str] = "cgroups"

    def __init__(self, proc: str = "/proc", hierarchy: CpuHierarchy | None = None) -> None:
        self._proc = proc
        self._hierarchy = hierarchy

    @property
    def hierarchy(self) -> CpuHierarchy | None:
        return self._hierarchy

    def start(self) -> None:
        if self._hierarchy is None:
            mounts = parse_cgroup_mounts(read_text(f"{self._proc}/self/mounts") or "")
            self._hierarchy = find_cpu_hierarchy(mounts)
        if self._hierarchy is None:
            raise ProbeUnavailable(
                "no cgroup hierarchy has the cpu controller, so there are no CPU quotas to read",
                "mount cgroup2 on /sys/fs/cgroup (or the v1 cpu controller) to see throttling",
                absent=True,
            )

    def sample(self) -> CgroupCpuSample:
        hierarchy = self._hierarchy
        if hierarchy is None:
            raise RuntimeError("CgroupCpuProbe.sample() before start()")
        mono_ns = time.monotonic_ns()
        cgroups = []
        # os.walk ignores directories that vanish mid-walk (a container
        # stopping), and cgroup trees hold no symlinks to follow.
        for directory, _, _ in os.walk(hierarchy.root):
            if hierarchy.version == 2:
                found = read_cgroup_v2(hierarchy.root, directory)
            else:
                found = read_cgroup_v1(hierarchy.root, directory, hierarchy.usage_root)
            if found is not None:
                cgroups.append(found)
        return CgroupCpuSample(hierarchy.version, tuple(cgroups), mono_ns)

    def stop(self) -> None:
        pass


CGROUPS: ProbeSpec[CgroupCpuSample, CgroupsView] = ProbeSpec(CgroupCpuProbe.name, CgroupCpuSample, CgroupsView, derive_cgroups, CgroupCpuProbe)
