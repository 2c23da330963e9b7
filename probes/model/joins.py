"""Joins of one tick's views: what a pane or `orac dump` shows of one process, from several probes.

They sit beside the views, not in tui/, so every reader of frames (the
panes, dump, exporters) joins the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from probes.sources.offcpu import OffCpuView
from probes.sources.profile import ProfileView
from probes.sources.syscalls import SyscallsView
from probes.sources.threads import ThreadsView


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """One thread, its /proc counters joined with what eBPF measured of it (None: not measured)."""

    tid: int
    name: str
    state: str  # "" for a thread that exited within the tick
    last_cpu: int | None
    cpu_percent: float | None
    run_delay_percent: float | None
    off_cpu_s_per_s: float | None
    off_cpu_d_s_per_s: float | None  # uninterruptible (D): usually disk or NFS
    syscalls_per_s: float | None
    errors_per_s: float | None
    syscall_mean_ns: float | None


def focused(view: Any, pid: int) -> Any:
    """The view, if it counted `pid`'s threads; else None."""
    return view if view is not None and view.focus_pid == pid else None


def join_threads(
    threads: ThreadsView, offcpu: OffCpuView | None, syscalls: SyscallsView | None, profile: ProfileView | None
) -> list[ThreadRow]:
    """One row per thread in /proc, or seen by eBPF in the interval (one that has exited since).

    A thread missing from an eBPF view that counted the process's threads
    was measured at zero; from a view that did not, it was not measured.
    """
    pid = threads.pid
    offcpu = focused(offcpu, pid)
    syscalls = focused(syscalls, pid)
    off = {t.tid: t for t in offcpu.threads} if offcpu else {}
    sys = {t.tid: t for t in syscalls.threads} if syscalls else {}
    # Names of threads already gone from /proc, as the profile's samples had them.
    names = profile.thread_names if profile is not None and profile.target_pid == pid else {}
    off_zero = 0.0 if offcpu else None
    sys_zero = 0.0 if syscalls else None
    rows = []
    procfs = {t.tid: t for t in threads.threads}
    for tid in sorted(procfs.keys() | off.keys() | sys.keys()):
        t = procfs.get(tid)
        o = off.get(tid)
        s = sys.get(tid)
        rows.append(
            ThreadRow(
                tid=tid,
                name=t.name if t else names.get(tid, "(exited)"),
                state=t.state if t else "",
                last_cpu=t.last_cpu if t else None,
                cpu_percent=t.cpu_percent if t else None,
                run_delay_percent=t.run_delay_percent if t else None,
                off_cpu_s_per_s=o.off_cpu_s_per_s if o else off_zero,
                off_cpu_d_s_per_s=o.state_s_per_s["D"] if o else off_zero,
                syscalls_per_s=s.calls_per_s if s else sys_zero,
                errors_per_s=s.errors_per_s if s else sys_zero,
                syscall_mean_ns=s.mean_latency_ns if s else None,
            )
        )
    return rows


def offcpu_of(view: OffCpuView, pid: int) -> OffCpuView:
    """The system-wide view narrowed to one process; the run queue stays the system's."""
    mine = tuple(p for p in view.processes if p.pid == pid)
    off = mine[0].off_cpu_s_per_s if mine else 0.0
    return dataclasses.replace(view, processes=mine, off_cpu_s_per_s=off, target_pid=pid)
