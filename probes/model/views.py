"""Derived views: rates and percentages computed from two raw frames.

Nothing here is stored in a recording; live and replayed frames are turned
into views by the same functions, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from probes.model.frame import Frame
from probes.model.redaction import shown
from probes.sources.gpu import derive_gpu
from probes.sources.offcpu import derive_offcpu
from probes.sources.processes import ProcessesSample, ProcSample, short_cgroup
from probes.sources.profile import derive_profile
from probes.sources.syscalls import derive_syscalls
from probes.sources.system import CpuTimes, Pressure, SystemSample
from probes.sources.threads import derive_threads


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


@dataclass(frozen=True, slots=True)
class ProcessView:
    pid: int
    ppid: int
    user: str
    state: str
    # None: the process was not readable last tick, so no rate is known yet
    cpu_percent: float | None
    rss_bytes: int
    num_threads: int
    cpu_time_s: float
    cgroup: str
    name: str
    command: str
    # since boot: with pid, which process this is (a pid is reused; this is
    # what a signal checks before it is sent)
    start_time_ns: int
    # a thread's row (pid is its thread id): its process's pid; None for a process
    thread_of: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessesView:
    processes: tuple[ProcessView, ...]
    num_threads: int
    unreadable: int
    # each process's threads but its first, when they were read (ProcessProbe.threads)
    threads: tuple[ProcessView, ...] = ()


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
    )


def process_view(curr: ProcSample, cpu_percent: float | None) -> ProcessView:
    return ProcessView(
        pid=curr.pid,
        ppid=curr.ppid,
        user=curr.user,
        state=curr.state,
        cpu_percent=cpu_percent,
        rss_bytes=curr.rss_bytes,
        num_threads=curr.num_threads,
        cpu_time_s=(curr.cpu_user_ns + curr.cpu_system_ns) / 1e9,
        cgroup=short_cgroup(curr.cgroup),
        name=curr.name,
        command=shown(curr.cmdline) or f"[{curr.name}]",
        start_time_ns=curr.start_time_ns,
        thread_of=curr.thread_of,
    )


def derive_processes(prev: ProcessesSample, curr: ProcessesSample, dt_s: float) -> ProcessesView:
    """CPU % of one core per process (and per thread, when read) over the interval, as top and htop show it."""
    scale = 100.0 / (dt_s * 1e9)
    born_after = prev.sampled_since_boot_ns
    processes = _rated(prev.processes, curr.processes, scale, born_after)
    threads = _rated(prev.threads, curr.threads, scale, born_after) if curr.threads else ()
    return ProcessesView(processes, sum(p.num_threads for p in curr.processes), curr.unreadable, threads)


def _rated(
    prev: tuple[ProcSample, ...], curr: tuple[ProcSample, ...], scale: float, born_after: int | None,
) -> tuple[ProcessView, ...]:
    before = {p.pid: p for p in prev}
    views = []
    for p in curr:
        old = before.get(p.pid)
        cpu: float | None
        if old is p:
            cpu = 0.0
        elif old is None and born_after is not None and p.start_time_ns < born_after:
            # Running at the last sample but unreadable then (or its
            # threads not asked for then): no rate yet.
            cpu = None
        elif old is None or old.start_time_ns != p.start_time_ns:
            # Started within the interval: all its CPU time was spent in it.
            cpu = (p.cpu_user_ns + p.cpu_system_ns) * scale
        else:
            busy = (p.cpu_user_ns + p.cpu_system_ns) - (old.cpu_user_ns + old.cpu_system_ns)
            cpu = max(0, busy) * scale
        views.append(process_view(p, cpu))
    return tuple(views)


def cpu_sort_key(view: ProcessView) -> float:
    """Busiest first when sorted descending; unknown rates sort below idle."""
    return -1.0 if view.cpu_percent is None else view.cpu_percent


DERIVERS: dict[str, Callable[[Any, Any, float], Any]] = {
    "cpu": derive_system,
    "procs": derive_processes,
    "syscalls": derive_syscalls,
    "gpu": derive_gpu,
    "profile": derive_profile,
    "offcpu": derive_offcpu,
    "threads": derive_threads,
}


def covered_s(prev: Any, curr: Any, frame_dt_s: float) -> float:
    """The seconds a probe's two samples' counters are apart.

    A sample that says when its counters were read (`mono_ns`, the
    monotonic clock) is timed by that: a frame's probes are read one after
    another, and one slow read (the first process table, on a loaded box)
    leaves the probes after it reading later than the frame's time says.
    Samples recorded before probes kept that time cover the frames' interval.
    """
    before = getattr(prev, "mono_ns", None)
    after = getattr(curr, "mono_ns", None)
    if before is None or after is None or after <= before:
        return frame_dt_s
    return (after - before) / 1e9


def derive_frame(prev: Frame | None, curr: Frame) -> dict[str, Any]:
    """Views for every probe present in both frames.

    A probe's first frame has nothing to compare with, so it has no view
    yet. Each probe's rates divide by the time its own counters cover
    (covered_s).
    """
    if prev is None:
        return {}
    dt_s = (curr.mono_ns - prev.mono_ns) / 1e9
    if dt_s <= 0:
        return {}
    views: dict[str, Any] = {}
    for name, sample in curr.samples.items():
        derive = DERIVERS.get(name)
        before = prev.samples.get(name)
        if derive is not None and before is not None:
            views[name] = derive(before, sample, covered_s(before, sample, dt_s))
    return views
