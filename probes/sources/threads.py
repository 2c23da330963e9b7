"""The "threads" probe: one process's threads, their CPU time and run-queue wait, from /proc.

The drill-down runs it for the process it shows. /proc/PID/task/TID/stat
gives each thread's name, state and the CPU it last ran on;
/proc/PID/task/TID/schedstat its time on a CPU and its time waiting on a
run queue, in nanoseconds (the scheduler's own clock, finer than stat's
clock ticks). Neither needs root. Its off-CPU time and syscalls come from
the eBPF probes, which count the drill-down's process thread by thread (their
`focus`); the pane joins them by thread id.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import NS_PER_TICK, PROC, read_bytes


@dataclass(frozen=True, slots=True)
class ThreadSample:
    """Raw counters of one thread at one tick."""

    tid: int
    name: str
    state: str
    last_cpu: int
    # since boot; with tid it tells a thread from a later one with its id
    start_time_ns: int
    # time on a CPU: schedstat's nanoseconds, else stat's clock ticks
    on_cpu_ns: int
    # time runnable but waiting for a CPU; None without schedstat
    run_delay_ns: int | None


@dataclass(frozen=True, slots=True)
class ThreadsSample:
    pid: int
    threads: tuple[ThreadSample, ...]
    # the process has exited: no threads are left to read
    exited: bool = False
    # time.monotonic_ns() in the middle of reading the threads: None in
    # recordings made before orac kept it
    mono_ns: int | None = None


def parse_thread_stat(data: bytes) -> tuple[str, str, int, int, int]:
    """(name, state, last CPU, start time ns, utime + stime ns) from /proc/PID/task/TID/stat."""
    open_paren = data.index(b"(")
    close_paren = data.rindex(b")")
    name = data[open_paren + 1 : close_paren].decode("utf-8", "replace")
    # Fields from the state on (field 3 of proc(5)); processor is field 39.
    f = data[close_paren + 2 :].split()
    return name, f[0].decode(), int(f[36]), int(f[19]) * NS_PER_TICK, (int(f[11]) + int(f[12])) * NS_PER_TICK


def parse_schedstat(data: bytes | None) -> tuple[int, int] | None:
    """(on-CPU ns, run-queue wait ns) from /proc/.../schedstat, or None."""
    if not data:
        return None
    fields = data.split()
    if len(fields) < 2:
        return None
    return int(fields[0]), int(fields[1])


class ThreadsProbe:
    """Samples the threads of one process."""

    name: ClassVar[str] = "threads"

    def __init__(self, pid: int, proc: str = PROC) -> None:
        self.pid = pid
        self._task = f"{proc}/{pid}/task"

    def start(self) -> None:
        if not os.path.isdir(self._task):
            raise ProbeUnavailable(f"process {self.pid} has exited", "")

    def stop(self) -> None:
        pass

    def sample(self) -> ThreadsSample:
        start_ns = time.monotonic_ns()
        try:
            entries = os.listdir(self._task)
        except OSError:
            return ThreadsSample(self.pid, (), exited=True, mono_ns=start_ns)
        threads = []
        for entry in entries:
            thread = self._read(entry)
            if thread is not None:
                threads.append(thread)
        mono_ns = (start_ns + time.monotonic_ns()) // 2
        threads.sort(key=lambda t: t.tid)
        return ThreadsSample(self.pid, tuple(threads), exited=not threads, mono_ns=mono_ns)

    def _read(self, entry: str) -> ThreadSample | None:
        base = f"{self._task}/{entry}"
        data = read_bytes(f"{base}/stat")
        if not data:
            return None  # exited since the listing
        try:
            name, state, last_cpu, start_ns, ticks_ns = parse_thread_stat(data)
            sched = parse_schedstat(read_bytes(f"{base}/schedstat"))
        except (ValueError, IndexError):
            return None
        on_cpu_ns, run_delay_ns = sched if sched is not None else (ticks_ns, None)
        return ThreadSample(int(entry), name, state, last_cpu, start_ns, on_cpu_ns, run_delay_ns)


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThreadView:
    tid: int
    name: str
    state: str
    last_cpu: int
    cpu_percent: float  # of one CPU, over the interval
    # share of the interval spent runnable on a run queue; None without schedstat
    run_delay_percent: float | None


@dataclass(frozen=True, slots=True)
class ThreadsView:
    pid: int
    threads: tuple[ThreadView, ...]  # busiest first
    exited: bool


def derive_threads(prev: ThreadsSample, curr: ThreadsSample, dt_s: float) -> ThreadsView:
    """CPU % and run-queue wait % per thread over the interval.

    A thread born in the interval counts all its time so far; one whose id
    was reused counts from its own start, not the old thread's.
    """
    if prev.pid != curr.pid:
        # Another process's threads (one drill-down closed, the next opened
        # within a tick) are no baseline: no rates until the next tick.
        return ThreadsView(curr.pid, (), curr.exited)
    before = {(t.tid, t.start_time_ns): t for t in prev.threads}
    scale = 100.0 / (dt_s * 1e9)
    views = []
    for t in curr.threads:
        old = before.get((t.tid, t.start_time_ns))
        cpu_ns = t.on_cpu_ns - (old.on_cpu_ns if old else 0)
        delay: float | None = None
        if t.run_delay_ns is not None:
            delay_ns = t.run_delay_ns - ((old.run_delay_ns or 0) if old else 0)
            delay = max(0, delay_ns) * scale
        views.append(ThreadView(t.tid, t.name, t.state, t.last_cpu, max(0, cpu_ns) * scale, delay))
    views.sort(key=lambda v: (-v.cpu_percent, v.tid))
    return ThreadsView(curr.pid, tuple(views), curr.exited)


# Started by a drill-down for one process, never on its own (no `make`).
THREADS: ProbeSpec[ThreadsSample, ThreadsView] = ProbeSpec(ThreadsProbe.name, ThreadsSample, ThreadsView, derive_threads)
