"""The "orac" probe: what orac itself costs the box it watches.

Its CPU time and RSS come from /proc/self (stat's utime + stime, every
thread; statm's resident pages), as top and pidstat read any process. With
eBPF, its programs' run time: the kernel counts each program's runs and the
time they take once BPF stats are on (`kernel.bpf_stats_enabled`), which
costs every program on the box two clock reads a run, so orac turns them on
only while it has programs attached, through BPF_ENABLE_STATS: the kernel
turns them off again when orac's descriptor closes (the probe stops, or orac
exits however it ends), unless something else had them on.

Recorded like any probe, so a replay shows what the recording orac cost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from probes.contract import Probe, ProbeSpec, ProbeUnavailable
from probes.ebpf.bpf import attached_prog_id, enable_run_time_stats, prog_run_time
from probes.host.procfs import NS_PER_TICK, PAGE_SIZE_BYTES, PROC, read_bytes


@runtime_checkable
class HoldsPrograms(Protocol):
    """A probe with eBPF programs attached (probes.ebpf.probe.EbpfProbe)."""

    def attachment_fds(self) -> tuple[int, ...]: ...


@dataclass(frozen=True, slots=True)
class ProgramRunTime:
    """One of orac's attached programs: its kernel id and counters since it was loaded."""

    id: int
    name: str
    run_time_ns: int
    runs: int


@dataclass(frozen=True, slots=True)
class OwnCostSample:
    # utime + stime of every thread of orac's process
    cpu_ns: int
    rss_bytes: int
    # time.monotonic_ns() when read
    mono_ns: int
    # orac's attached programs; empty without eBPF
    programs: tuple[ProgramRunTime, ...] = ()
    # whether the kernel counted their run time this tick (BPF stats on)
    bpf_stats: bool = False


@dataclass(frozen=True, slots=True)
class OwnCostView:
    """orac's cost over one interval.

    - cpu_percent: (cpu_ns delta) / interval, % of one CPU: top's and pidstat's %CPU.
    - rss_bytes: resident memory now (top's RES).
    - bpf_cpu_percent: run time of orac's programs in the interval / interval, % of one
      CPU (bpftop's figure); a program loaded in the interval counts all of its run
      time. None when the kernel did not count it (no eBPF, or stats could not be on).
    """

    cpu_percent: float
    rss_bytes: int
    bpf_cpu_percent: float | None
    bpf_programs: int


def parse_cpu_ns(stat: bytes) -> int:
    """utime + stime (fields 14 and 15 of /proc/PID/stat) in ns."""
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * NS_PER_TICK


class OwnCostProbe:
    """Reads orac's own process, and the run time of the programs the other probes attach."""

    name: ClassVar[str] = "orac"

    def __init__(self, proc: str = PROC) -> None:
        self._proc = proc
        self._watched: Sequence[Probe[Any]] = ()
        # the BPF_ENABLE_STATS descriptor while orac has programs attached
        self._stats_fd: int | None = None
        # why stats cannot be on (no CAP_SYS_ADMIN, an old kernel): asked once
        self._stats_refused = False

    def watch(self, probes: Sequence[Probe[Any]]) -> None:
        """The sampler's running probes (it adds a drill-down's to the same list)."""
        self._watched = probes

    def start(self) -> None:
        if read_bytes(f"{self._proc}/self/stat") is None:
            raise ProbeUnavailable(f"{self._proc} is not a mounted procfs", "mount -t proc proc /proc")

    def stop(self) -> None:
        self._stats(False)

    def _stats(self, on: bool) -> bool:
        if on and self._stats_fd is None and not self._stats_refused:
            try:
                self._stats_fd = enable_run_time_stats()
            except OSError:
                self._stats_refused = True
        elif not on and self._stats_fd is not None:
            os.close(self._stats_fd)
            self._stats_fd = None
        return self._stats_fd is not None

    def _programs(self) -> tuple[ProgramRunTime, ...]:
        fds = [fd for probe in self._watched if isinstance(probe, HoldsPrograms) for fd in probe.attachment_fds()]
        ids = set()
        for fd in fds:
            try:
                ids.add(attached_prog_id(fd))
            except OSError:
                continue
        programs = []
        for prog_id in sorted(ids):
            try:
                run = prog_run_time(prog_id)
            except OSError:
                continue
            programs.append(ProgramRunTime(run.id, run.name, run.run_time_ns, run.run_cnt))
        return tuple(programs)

    def sample(self) -> OwnCostSample:
        mono_ns = time.monotonic_ns()
        stat = read_bytes(f"{self._proc}/self/stat")
        statm = read_bytes(f"{self._proc}/self/statm")
        if stat is None or statm is None:
            raise ProbeUnavailable(f"cannot read {self._proc}/self")
        programs = self._programs()
        stats = self._stats(bool(programs))
        return OwnCostSample(
            parse_cpu_ns(stat), int(statm.split()[1]) * PAGE_SIZE_BYTES, mono_ns, programs, stats,
        )


def derive_own_cost(prev: OwnCostSample, curr: OwnCostSample, dt_s: float) -> OwnCostView:
    dt_ns = curr.mono_ns - prev.mono_ns if curr.mono_ns > prev.mono_ns else dt_s * 1e9
    bpf_percent = None
    if curr.bpf_stats and prev.bpf_stats:
        before = {p.id: p.run_time_ns for p in prev.programs}
        run_ns = sum(max(0, p.run_time_ns - before.get(p.id, 0)) for p in curr.programs)
        bpf_percent = 100 * run_ns / dt_ns
    return OwnCostView(
        cpu_percent=100 * max(0, curr.cpu_ns - prev.cpu_ns) / dt_ns,
        rss_bytes=curr.rss_bytes,
        bpf_cpu_percent=bpf_percent,
        bpf_programs=len(curr.programs),
    )


OWN_COST: ProbeSpec[OwnCostSample, OwnCostView] = ProbeSpec(
    OwnCostProbe.name, OwnCostSample, OwnCostView, derive_own_cost, OwnCostProbe,
)
