"""The "cpu" probe: per-CPU times, memory, page faults, pressure, load.

Everything is parsed from /proc text by pure functions, so the same parsers
run on live files and on recorded fixtures in tests. One read of /proc/stat
gives CPU times, context switches and interrupts together (psutil would read
it twice for cpu_times and cpu_stats).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.forks import forks_per_s, parse_forks
from probes.host.procfs import NS_PER_TICK, read_text

PRESSURE_RESOURCES = ("cpu", "memory", "io")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative time one CPU (or all of them) spent in each mode."""

    user_ns: int
    nice_ns: int
    system_ns: int
    idle_ns: int
    iowait_ns: int
    irq_ns: int
    softirq_ns: int
    steal_ns: int
    # N of the "cpuN" line; None for the all-CPU line. CPUs are matched by it
    # across samples, since an offline CPU drops out of /proc/stat.
    cpu_id: int | None = None

    @property
    def total_ns(self) -> int:
        return (
            self.user_ns + self.nice_ns + self.system_ns + self.idle_ns
            + self.iowait_ns + self.irq_ns + self.softirq_ns + self.steal_ns
        )


@dataclass(frozen=True, slots=True)
class Pressure:
    """One /proc/pressure file. `full_*` is None for cpu on older kernels."""

    some_avg10: float
    some_total_us: int
    full_avg10: float | None
    full_total_us: int | None


@dataclass(frozen=True, slots=True)
class MemorySample:
    """From /proc/meminfo, in bytes (the file's kB are KiB).

    `available_bytes` is MemAvailable, the kernel's estimate of what can be
    allocated without swapping (MemFree on kernels before 3.14, which lack
    it). `cached_bytes` is Cached + SReclaimable, free(1)'s "cache";
    `shmem_bytes` is Shmem (tmpfs, /dev/shm, shared anonymous memory), which
    Cached includes although it cannot be dropped, only swapped. None in
    recordings made before orac kept it.
    """

    total_bytes: int
    free_bytes: int
    available_bytes: int
    buffers_bytes: int
    cached_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    shmem_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SystemSample:
    """Raw system-wide counters of one tick."""

    hostname: str
    kernel: str
    uptime_s: float
    load_avg: tuple[float, float, float]
    cpu_total: CpuTimes
    cpus: tuple[CpuTimes, ...]
    context_switches: int
    interrupts: int
    memory: MemorySample
    page_faults: int | None
    major_page_faults: int | None
    # resource -> Pressure, or None where the kernel has no PSI for it
    pressure: dict[str, Pressure | None]
    # time.monotonic_ns() as /proc/stat was read (the rates' counters;
    # vmstat's come right after): None in recordings made before orac kept it
    mono_ns: int | None = None
    # /proc/stat `processes` (probes.host.forks): tasks created since boot;
    # None where the line is missing and in recordings made before orac kept it
    forks: int | None = None
    # /proc/stat's procs_running and procs_blocked at the read (vmstat's r
    # and b), and /proc/vmstat's pswpin (pages swapped in since boot); None
    # in recordings made before orac kept them
    procs_running: int | None = None
    procs_blocked: int | None = None
    swap_in_pages: int | None = None


def parse_cpu_line(fields: list[str], cpu_id: int | None = None) -> CpuTimes:
    """Parse the numbers of one `cpu` line of /proc/stat (ticks) into ns."""
    values = [int(v) * NS_PER_TICK for v in fields[:8]]
    values += [0] * (8 - len(values))
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return CpuTimes(user, nice, system, idle, iowait, irq, softirq, steal, cpu_id)


def parse_proc_stat(text: str) -> tuple[CpuTimes, tuple[CpuTimes, ...], int, int]:
    """Return (all CPUs, per CPU, context switches, interrupts) from /proc/stat."""
    total = None
    cpus: list[CpuTimes] = []
    ctxt = intr = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        key = fields[0]
        if key == "cpu":
            total = parse_cpu_line(fields[1:])
        elif key.startswith("cpu"):
            cpus.append(parse_cpu_line(fields[1:], int(key[3:])))
        elif key == "ctxt":
            ctxt = int(fields[1])
        elif key == "intr":
            intr = int(fields[1])
    if total is None:
        raise ValueError("/proc/stat has no cpu line")
    return total, tuple(cpus), ctxt, intr


def parse_meminfo(text: str) -> MemorySample:
    """Parse /proc/meminfo. Cached counts reclaimable slab too, as free(1) does."""
    kib: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            kib[name] = int(parts[0])
    total = kib["MemTotal"] * 1024
    free = kib.get("MemFree", 0) * 1024
    available = kib.get("MemAvailable", kib.get("MemFree", 0)) * 1024
    return MemorySample(
        total_bytes=total,
        free_bytes=free,
        available_bytes=available,
        buffers_bytes=kib.get("Buffers", 0) * 1024,
        cached_bytes=(kib.get("Cached", 0) + kib.get("SReclaimable", 0)) * 1024,
        swap_total_bytes=kib.get("SwapTotal", 0) * 1024,
        swap_free_bytes=kib.get("SwapFree", 0) * 1024,
        shmem_bytes=kib["Shmem"] * 1024 if "Shmem" in kib else None,
    )


def parse_vmstat_faults(text: str) -> tuple[int | None, int | None]:
    """Return (pgfault, pgmajfault) counters from /proc/vmstat."""
    faults = major = None
    for line in text.splitlines():
        if line.startswith("pgfault "):
            faults = int(line.split()[1])
        elif line.startswith("pgmajfault "):
            major = int(line.split()[1])
    return faults, major


def parse_procs(text: str) -> tuple[int | None, int | None]:
    """Return (procs_running, procs_blocked) from /proc/stat: runnable tasks, those in D."""
    running = blocked = None
    for line in text.splitlines():
        if line.startswith("procs_running "):
            running = int(line.split()[1])
        elif line.startswith("procs_blocked "):
            blocked = int(line.split()[1])
    return running, blocked


def parse_vmstat_swap_in(text: str) -> int | None:
    """Return /proc/vmstat's pswpin: pages read back from swap since boot."""
    for line in text.splitlines():
        if line.startswith("pswpin "):
            return int(line.split()[1])
    return None


def parse_pressure(text: str) -> Pressure:
    """Parse one /proc/pressure/<resource> file."""
    rows: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        rows[kind] = dict(p.split("=", 1) for p in pairs)
    some = rows["some"]
    full = rows.get("full")
    return Pressure(
        some_avg10=float(some["avg10"]),
        some_total_us=int(some["total"]),
        full_avg10=float(full["avg10"]) if full else None,
        full_total_us=int(full["total"]) if full else None,
    )


def parse_loadavg(text: str) -> tuple[float, float, float]:
    one, five, fifteen = text.split()[:3]
    return float(one), float(five), float(fifteen)


class SystemProbe:
    """Samples system-wide CPU, memory and pressure counters from /proc."""

    name: ClassVar[str] = "cpu"

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._hostname = socket.gethostname()
        self._kernel = os.uname().release

    def start(self) -> None:
        if read_text(f"{self._proc}/stat") is None:
            raise ProbeUnavailable(f"{self._proc}/stat is not readable", "mount procfs on /proc")

    def sample(self) -> SystemSample:
        proc = self._proc
        mono_ns = time.monotonic_ns()
        stat = read_text(f"{proc}/stat") or ""
        total, cpus, ctxt, intr = parse_proc_stat(stat)
        running, blocked = parse_procs(stat)
        vmstat = read_text(f"{proc}/vmstat") or ""
        faults, major = parse_vmstat_faults(vmstat)
        pressure: dict[str, Pressure | None] = {}
        for resource in PRESSURE_RESOURCES:
            text = read_text(f"{proc}/pressure/{resource}")
            # Kernels without CONFIG_PSI, or booted with psi=0, have no file or
            # refuse the read (EOPNOTSUPP): that is "no data", not zero.
            pressure[resource] = parse_pressure(text) if text else None
        uptime = read_text(f"{proc}/uptime") or "0"
        return SystemSample(
            hostname=self._hostname,
            kernel=self._kernel,
            uptime_s=float(uptime.split()[0]),
            load_avg=parse_loadavg(read_text(f"{proc}/loadavg") or "0 0 0"),
            cpu_total=total,
            cpus=cpus,
            context_switches=ctxt,
            interrupts=intr,
            memory=parse_meminfo(read_text(f"{proc}/meminfo") or "MemTotal: 0 kB"),
            page_faults=faults,
            major_page_faults=major,
            pressure=pressure,
            mono_ns=mono_ns,
            forks=parse_forks(stat),
            procs_running=running,
            procs_blocked=blocked,
            swap_in_pages=parse_vmstat_swap_in(vmstat),
        )

    def stop(self) -> None:
        pass


# --- the view ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """Share of one CPU's time in the interval, in percent of that CPU."""

    busy_percent: float
    user_percent: float
    system_percent: float
    iowait_percent: float
    steal_percent: float
    irq_percent: float
    cpu_id: int | None = None


@dataclass(frozen=True, slots=True)
class PressureShare:
    """PSI over the interval: Δ total stall µs / interval, in percent.

    `some`: at least one task stalled on the resource; `full`: every
    non-idle task at once (None for cpu on older kernels). Exact for the
    interval, where the files' avg10 is a 10 s moving average that lags.
    """

    some_percent: float
    full_percent: float | None


def pressure_share(prev: Pressure | None, curr: Pressure | None, dt_s: float) -> PressureShare | None:
    if prev is None or curr is None or dt_s <= 0:
        return None
    scale = 100.0 / (dt_s * 1e6)
    some = max(0, curr.some_total_us - prev.some_total_us) * scale
    full = None
    if prev.full_total_us is not None and curr.full_total_us is not None:
        full = max(0, curr.full_total_us - prev.full_total_us) * scale
    return PressureShare(min(100.0, some), None if full is None else min(100.0, full))


@dataclass(frozen=True, slots=True)
class SystemView:
    """The "cpu" probe's figures over one interval.

    Memory, from /proc/meminfo as procps free (4.x) and top compute it:
    used = MemTotal - MemAvailable, what cannot be reclaimed without
    swapping (shared memory and tmpfs included); free = MemFree; buffers =
    Buffers; cached = Cached + SReclaimable (free's buff/cache is buffers +
    cached); shmem = Shmem, part of cached that counts as used, None where
    the sample lacks it; available = MemAvailable. Swap used = SwapTotal -
    SwapFree.
    """

    hostname: str
    kernel: str
    uptime_s: float
    load_avg: tuple[float, float, float]
    cpu_total: CpuUsage
    cpus: tuple[CpuUsage, ...]
    context_switches_per_s: float
    interrupts_per_s: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    memory_cached_bytes: int
    memory_shmem_bytes: int | None
    memory_buffers_bytes: int
    memory_available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    page_faults_per_s: float | None
    major_page_faults_per_s: float | None
    pressure: Mapping[str, Pressure | None]
    # sar -w's proc/s (probes.host.forks.forks_per_s)
    forks_per_s: float | None = None
    procs_running: int | None = None
    procs_blocked: int | None = None
    swap_in_pages_per_s: float | None = None
    # resource -> share of the interval stalled (PressureShare); None where
    # either sample lacks that resource's PSI
    pressure_share: Mapping[str, PressureShare | None] = field(default_factory=dict)


def cpu_usage(prev: CpuTimes, curr: CpuTimes) -> CpuUsage:
    """Percentages of the interval between two cumulative CPU time readings."""
    total = curr.total_ns - prev.total_ns
    if total <= 0:
        return CpuUsage(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, curr.cpu_id)
    scale = 100.0 / total

    def pct(a: int, b: int) -> float:
        return max(0, b - a) * scale

    user = pct(prev.user_ns + prev.nice_ns, curr.user_ns + curr.nice_ns)
    system = pct(prev.system_ns, curr.system_ns)
    iowait = pct(prev.iowait_ns, curr.iowait_ns)
    steal = pct(prev.steal_ns, curr.steal_ns)
    irq = pct(prev.irq_ns + prev.softirq_ns, curr.irq_ns + curr.softirq_ns)
    # iowait is idle time with I/O outstanding: the CPU was free to run
    # something else, so it is shown but not counted as busy (as top does).
    busy = min(100.0, user + system + steal + irq)
    return CpuUsage(busy, user, system, iowait, steal, irq, curr.cpu_id)


def _rate(prev: int | None, curr: int | None, dt_s: float) -> float | None:
    if prev is None or curr is None:
        return None
    return max(0, curr - prev) / dt_s


def derive_system(prev: SystemSample, curr: SystemSample, dt_s: float) -> SystemView:
    mem = curr.memory
    before = {c.cpu_id: c for c in prev.cpus}
    cpus = tuple(cpu_usage(before[c.cpu_id], c) for c in curr.cpus if c.cpu_id in before)
    return SystemView(
        hostname=curr.hostname,
        kernel=curr.kernel,
        uptime_s=curr.uptime_s,
        load_avg=curr.load_avg,
        cpu_total=cpu_usage(prev.cpu_total, curr.cpu_total),
        cpus=cpus,
        context_switches_per_s=_rate(prev.context_switches, curr.context_switches, dt_s) or 0.0,
        interrupts_per_s=_rate(prev.interrupts, curr.interrupts, dt_s) or 0.0,
        memory_total_bytes=mem.total_bytes,
        memory_used_bytes=max(0, mem.total_bytes - mem.available_bytes),
        memory_free_bytes=mem.free_bytes,
        memory_cached_bytes=mem.cached_bytes,
        memory_shmem_bytes=mem.shmem_bytes,
        memory_buffers_bytes=mem.buffers_bytes,
        memory_available_bytes=mem.available_bytes,
        swap_total_bytes=mem.swap_total_bytes,
        swap_used_bytes=mem.swap_total_bytes - mem.swap_free_bytes,
        page_faults_per_s=_rate(prev.page_faults, curr.page_faults, dt_s),
        major_page_faults_per_s=_rate(prev.major_page_faults, curr.major_page_faults, dt_s),
        pressure=curr.pressure,
        forks_per_s=forks_per_s(prev.forks, curr.forks, dt_s),
        procs_running=curr.procs_running,
        procs_blocked=curr.procs_blocked,
        swap_in_pages_per_s=_rate(prev.swap_in_pages, curr.swap_in_pages, dt_s),
        pressure_share={
            resource: pressure_share(prev.pressure.get(resource), p, dt_s) for resource, p in curr.pressure.items()
        },
    )


SYSTEM: ProbeSpec[SystemSample, SystemView] = ProbeSpec(SystemProbe.name, SystemSample, SystemView, derive_system, SystemProbe)
