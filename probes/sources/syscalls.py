"""The "syscalls" probe: per-process syscall counts, errors and latency, from eBPF.

The kernel side (syscalls.bpf.c) aggregates per (process, syscall) in maps.
Each `sample()` moves it on to a new generation of map entries and takes out
the old one, so a sample holds the counts *for the interval* since the
previous sample, and each syscall is in exactly one sample. Numbers are
turned into names at sample time so recordings replay on any machine.
`derive_syscalls` turns a sample into rates, percentiles and rankings.
"""

from __future__ import annotations

import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from probes.contract import ProbeSpec
from probes.ebpf.bpf import possible_cpus
from probes.ebpf.maps import (
    ARRAY_INDEX,
    MapDrain,
    name_the_unnamed,
    parse_comms,
    percpu_entries,
)
from probes.ebpf.probe import FocusingEbpfProbe, PerCpuCounters
from probes.ebpf.programs import BpfProgram, LoadedProgram, build_program
from probes.ebpf.syscall_names import errno_name, syscall_name
from probes.model.histograms import LatencyBucket, log2_quantile_bucket

SOURCE = "syscalls.bpf.c"
HIST_SLOTS = 32
# In the order of syscalls.bpf.c's enum lost_reason.
LOST_REASONS = ("stats_map_full", "errno_map_full", "comm_map_full", "exit_without_enter", "thread_map_full")

# Per-CPU stats values take STATS_ENTRIES x CPUs x 152 bytes of kernel memory;
# the default entry count keeps that near this budget on big machines.
STATS_MAP_BUDGET_BYTES = 32 << 20
STATS_ENTRIES_RANGE = (1024, 8192)
ERRNO_ENTRIES = 4096
# Threads of the focus process that make syscalls within one tick.
THREAD_ENTRIES = 1024
# 2^18 slots of 16 bytes (4 MiB): three threads hashed to one two-slot set,
# all inside syscalls at once, are rare even with thousands of threads.
START_SLOT_BITS = 18
# Tasks forked and not yet back from fork: a handful at any moment even at
# thousands of forks a second; the rest is room for kernel threads, which
# never return and age out of the LRU map.
NEW_TASK_ENTRIES = 4096

# What tracing adds to each syscall, in ns, measured by benchmarks/syscalls
# on the development VM (2 vCPUs, kernel 6.18, retpolines). Used only for
# the estimate of the probe's own cost shown to the user.
TRACING_NS_PER_SYSCALL = 240

# The structs of syscalls.bpf.c, native byte order. Every key ends with its
# generation (u32).
_STATS_KEY = struct.Struct("=III")  # tgid, nr, gen
_STATS_HEAD = struct.Struct("=QQQ")  # calls, errors, total_ns
_STATS_HIST = struct.Struct(f"={HIST_SLOTS}I")
_STATS_VALUE_BYTES = _STATS_HEAD.size + _STATS_HIST.size
_ERRNO_KEY = struct.Struct("=IIII")  # tgid, nr, errno, gen
_COMM_KEY = struct.Struct("=II")  # tgid, gen
_THREAD_KEY = struct.Struct("=III")  # tgid, tid, gen
_THREAD_VALUE = struct.Struct("=QQQ")  # calls, errors, total_ns
_COUNT = struct.Struct("=Q")  # an errno's count


@dataclass(frozen=True, slots=True)
class SyscallCounts:
    """One process's use of one syscall during the interval."""

    pid: int  # the process (thread group) id
    nr: int
    name: str
    calls: int
    errors: int
    latency_total_ns: int
    # log2 buckets: slot i counts calls that took [2**i, 2**(i+1)) ns (slot 0
    # also takes 0 and 1 ns); the last slot takes everything longer.
    latency_hist: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ErrnoCounts:
    """How often one process's syscall failed with one errno during the interval."""

    pid: int
    nr: int
    syscall: str
    errno: int
    errno_name: str
    errors: int


@dataclass(frozen=True, slots=True)
class ThreadSyscallCounts:
    """One thread of the focus process: all its syscalls during the interval."""

    pid: int
    tid: int
    calls: int
    errors: int
    latency_total_ns: int


@dataclass(frozen=True, slots=True)
class SyscallsSample:
    """Everything the probe saw since the previous sample."""

    syscalls: tuple[SyscallCounts, ...]
    errnos: tuple[ErrnoCounts, ...]
    # pid -> process name (comm) as the kernel had it when the pid made a syscall
    comms: dict[int, str]
    # reason (LOST_REASONS) -> events in the interval; see syscalls.bpf.c
    lost: dict[str, int]
    # syscalls the probe handled in the interval, lost ones and new tasks' first returns included
    events: int
    target_pid: int | None
    # the process whose threads are counted one by one (the drill-down's), if any
    focus_pid: int | None = None
    threads: tuple[ThreadSyscallCounts, ...] = ()
    # New tasks' first returns from fork, vfork or clone in the interval (an
    # exit with no entry of its own, see syscalls.bpf.c): None in recordings
    # made before orac told them apart, whose "exit_without_enter" includes them
    new_task_returns: int | None = None
    # time.monotonic_ns() as counting was switched to the next generation,
    # where this sample's interval ends: None in recordings made before orac
    # kept it
    mono_ns: int | None = None


def default_stats_entries(cpus: int) -> int:
    low, high = STATS_ENTRIES_RANGE
    return max(low, min(high, STATS_MAP_BUDGET_BYTES // (cpus * _STATS_VALUE_BYTES)))


def syscalls_program(targeted: bool = False, cpus: int | None = None) -> BpfProgram:
    """The probe's BPF program and options; pure apart from reading the source file.

    `targeted`: of one process, whose tgid goes in the program's `target` map.
    """
    stats_entries = default_stats_entries(cpus if cpus is not None else possible_cpus())
    return build_program(
        SOURCE,
        {
            "TARGETED": 1 if targeted else None,
            "STATS_ENTRIES": stats_entries,
            "ERRNO_ENTRIES": ERRNO_ENTRIES,
            "THREAD_ENTRIES": THREAD_ENTRIES,
            "START_SLOT_BITS": START_SLOT_BITS,
            "NEW_TASK_ENTRIES": NEW_TASK_ENTRIES,
            "HIST_SLOTS": HIST_SLOTS,
        },
    )


def _signed32(nr: int) -> int:
    # Syscall number -1 (syscall(-1), or a call a tracer or seccomp skipped)
    # arrives as a u32.
    return nr - (1 << 32) if nr >= 1 << 31 else nr


class StatsEntry(NamedTuple):
    """One (process, syscall) entry of the stats map, summed over every CPU's copy."""

    pid: int
    nr: int
    calls: int
    errors: int
    total_ns: int
    hist: tuple[int, ...]


class ErrnoEntry(NamedTuple):
    """One (process, syscall, errno) entry of the errnos map, summed over every CPU's copy."""

    pid: int
    nr: int
    errno: int
    errors: int


def parse_stats(keys: bytes, values: bytes, n: int) -> list[StatsEntry]:
    """The stats map's entries with calls in the interval."""
    if n == 0:
        return []
    value_size = len(values) // n
    cpus = value_size // _STATS_VALUE_BYTES
    out = []
    for i in range(n):
        pid, nr, _ = _STATS_KEY.unpack_from(keys, i * _STATS_KEY.size)
        calls = errors = total_ns = 0
        hist = [0] * HIST_SLOTS
        for cpu in range(cpus):
            offset = i * value_size + cpu * _STATS_VALUE_BYTES
            c, e, t = _STATS_HEAD.unpack_from(values, offset)
            if not c:
                # This CPU never ran the pair this tick: most copies, skipped cheaply.
                continue
            calls += c
            errors += e
            total_ns += t
            for slot, count in enumerate(_STATS_HIST.unpack_from(values, offset + _STATS_HEAD.size)):
                hist[slot] += count
        if calls:
            out.append(StatsEntry(pid, _signed32(nr), calls, errors, total_ns, tuple(hist)))
    return out


def parse_threads(keys: bytes, values: bytes, n: int) -> list[ThreadSyscallCounts]:
    """One ThreadSyscallCounts per entry, summed over CPUs."""
    return [
        ThreadSyscallCounts(pid, tid, calls, errors, total_ns)
        for (pid, tid, _), (calls, errors, total_ns) in percpu_entries(keys, values, n, _THREAD_KEY, _THREAD_VALUE)
        if calls
    ]


def parse_errnos(keys: bytes, values: bytes, n: int) -> list[ErrnoEntry]:
    """The errnos map's entries with errors in the interval."""
    return [
        ErrnoEntry(pid, _signed32(nr), err, count)
        for (pid, nr, err, _), (count,) in percpu_entries(keys, values, n, _ERRNO_KEY, _COUNT)
        if count
    ]


class SyscallProbe(FocusingEbpfProbe):
    """Counts every syscall on the machine (or of one process) with eBPF.

    Args:
        target_pid: count only this process's syscalls. The others still
            run the two tracepoint programs up to that check, about half of
            what counting them would cost.
    """

    name: ClassVar[str] = "syscalls"
    kernel_lost_reasons: ClassVar[tuple[str, ...]] = LOST_REASONS

    def program(self) -> BpfProgram:
        return syscalls_program(targeted=self.target_pid is not None)

    def open_maps(self, bpf: LoadedProgram) -> None:
        self._stats = MapDrain(bpf["stats"])
        self._errnos = MapDrain(bpf["errnos"])
        self._comms = MapDrain(bpf["comms"])
        self._new_task_returns = PerCpuCounters(bpf["new_task_returns"], 1)
        focus_word = bpf["focus"]
        self._focus.open(bpf["thread_stats"], lambda pid: focus_word.update(ARRAY_INDEX.pack(0), ARRAY_INDEX.pack(pid)))

    def sample(self) -> SyscallsSample:
        self.require_running()
        mono_ns = time.monotonic_ns()
        done = self.next_generation()
        comms = parse_comms(*self._comms.take(done), _COMM_KEY)
        stats = parse_stats(*self._stats.take(done))
        errnos = parse_errnos(*self._errnos.take(done))
        threads = parse_threads(*self._focus.take(done))
        lost = self.lost_in_interval()
        (new_task_returns,) = self._new_task_returns.take()

        syscalls = tuple(
            SyscallCounts(e.pid, e.nr, syscall_name(e.nr), e.calls, e.errors, e.total_ns, e.hist) for e in stats
        )
        name_the_unnamed(comms, (entry.pid for entry in syscalls))
        return SyscallsSample(
            syscalls=syscalls,
            errnos=tuple(
                ErrnoCounts(e.pid, e.nr, syscall_name(e.nr), e.errno, errno_name(e.errno), e.errors) for e in errnos
            ),
            comms=comms,
            lost=lost,
            events=sum(s.calls for s in syscalls) + lost["stats_map_full"] + lost["exit_without_enter"] + new_task_returns,
            target_pid=self.target_pid,
            focus_pid=self.focus_pid,
            threads=tuple(t for t in threads if t.pid == self.focus_pid),
            new_task_returns=new_task_returns,
            mono_ns=mono_ns,
        )


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyscallRate:
    """One syscall, of one process or of the whole system."""

    name: str
    calls_per_s: float
    errors_per_s: float
    top_errno: str | None  # the most frequent errno of the interval
    mean_latency_ns: float | None  # exact: total time / calls
    # the log2 bucket that holds the median, and the 99th percentile
    p50_latency_bucket: LatencyBucket | None
    p99_latency_bucket: LatencyBucket | None
    latency_hist: tuple[int, ...]  # calls per log2 bucket (SyscallCounts.latency_hist)
    errnos: tuple[tuple[str, float], ...]  # (errno name, errors/s), most frequent first


@dataclass(frozen=True, slots=True)
class ProcessSyscalls:
    pid: int
    comm: str
    total: SyscallRate  # all its syscalls together, named "all"
    syscalls: tuple[SyscallRate, ...]  # busiest first


@dataclass(frozen=True, slots=True)
class ThreadSyscallRate:
    """All the syscalls of one thread of the focus process."""

    tid: int
    calls_per_s: float
    errors_per_s: float
    mean_latency_ns: float


@dataclass(frozen=True, slots=True)
class SyscallsView:
    processes: tuple[ProcessSyscalls, ...]  # busiest first
    top_syscalls: tuple[SyscallRate, ...]  # the whole system's, busiest first (like syscount)
    calls_per_s: float
    errors_per_s: float
    events_per_s: float
    lost: Mapping[str, int]  # events lost in the interval, by reason
    # new tasks' first returns from fork and clone: not lost (None: not told apart when recorded)
    new_task_returns_per_s: float | None
    # events/s x TRACING_NS_PER_SYSCALL: the estimated CPU the tracing takes,
    # in percent of one CPU
    overhead_cpu_percent: float
    target_pid: int | None
    focus_pid: int | None = None
    threads: tuple[ThreadSyscallRate, ...] = ()  # the focus process's, busiest first


class _Totals:
    """Sums of SyscallCounts (one syscall of many processes, or many syscalls of one).

    Histograms are kept as the entries' own tuples and summed once, in
    `rate`, by C loops (zip, sum): adding them slot by slot in Python for
    every entry, three times over, was most of a busy tick's derive.
    """

    __slots__ = ("calls", "errnos", "errors", "hists", "latency_total_ns")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.latency_total_ns = 0
        self.hists: list[tuple[int, ...]] = []
        self.errnos: dict[str, int] | None = None

    def add(self, entry: SyscallCounts) -> None:
        self.calls += entry.calls
        self.errors += entry.errors
        self.latency_total_ns += entry.latency_total_ns
        self.hists.append(entry.latency_hist)

    def add_errors(self, errno_name: str, errors: int) -> None:
        if self.errnos is None:
            self.errnos = {}
        self.errnos[errno_name] = self.errnos.get(errno_name, 0) + errors

    def rate(self, name: str, dt_s: float) -> SyscallRate:
        hists = self.hists
        if len(hists) == 1:
            hist = hists[0]
        elif hists:
            hist = tuple(map(sum, zip(*hists, strict=True)))
        else:
            hist = (0,) * HIST_SLOTS
        timed = sum(hist)
        # Ties go to the alphabetically first name, so the order is stable.
        errnos = sorted(self.errnos.items(), key=lambda item: (-item[1], item[0])) if self.errnos else []
        return SyscallRate(
            name=name,
            calls_per_s=self.calls / dt_s,
            errors_per_s=self.errors / dt_s,
            top_errno=errnos[0][0] if errnos else None,
            mean_latency_ns=self.latency_total_ns / timed if timed else None,
            p50_latency_bucket=log2_quantile_bucket(hist, 0.50) if timed else None,
            p99_latency_bucket=log2_quantile_bucket(hist, 0.99) if timed else None,
            latency_hist=hist,
            errnos=tuple((errno, count / dt_s) for errno, count in errnos),
        )


def _busiest(rates: Iterable[SyscallRate]) -> tuple[SyscallRate, ...]:
    return tuple(sorted(rates, key=lambda r: (-r.calls_per_s, r.name)))


def derive_syscalls(prev: SyscallsSample, curr: SyscallsSample, dt_s: float) -> SyscallsView:
    """Rates and rankings of one interval.

    The probe empties its maps every tick, so `curr` alone covers the
    interval; `prev` is taken for the signature all derive functions share.
    """
    per_pair: dict[tuple[int, str], _Totals] = defaultdict(_Totals)
    per_process: dict[int, _Totals] = defaultdict(_Totals)
    per_syscall: dict[str, _Totals] = defaultdict(_Totals)
    for entry in curr.syscalls:
        per_pair[entry.pid, entry.name].add(entry)
        per_process[entry.pid].add(entry)
        per_syscall[entry.name].add(entry)
    for err in curr.errnos:
        per_pair[err.pid, err.syscall].add_errors(err.errno_name, err.errors)
        per_process[err.pid].add_errors(err.errno_name, err.errors)
        per_syscall[err.syscall].add_errors(err.errno_name, err.errors)

    pair_rates: dict[int, list[SyscallRate]] = defaultdict(list)
    for (pid, name), totals in per_pair.items():
        pair_rates[pid].append(totals.rate(name, dt_s))
    processes = sorted(
        (
            ProcessSyscalls(pid, curr.comms.get(pid, "?"), totals.rate("all", dt_s), _busiest(pair_rates[pid]))
            for pid, totals in per_process.items()
        ),
        key=lambda p: (-p.total.calls_per_s, p.pid),
    )

    calls = sum(t.calls for t in per_process.values())
    errors = sum(t.errors for t in per_process.values())
    events_per_s = curr.events / dt_s
    return SyscallsView(
        processes=tuple(processes),
        top_syscalls=_busiest(totals.rate(name, dt_s) for name, totals in per_syscall.items()),
        calls_per_s=calls / dt_s,
        errors_per_s=errors / dt_s,
        events_per_s=events_per_s,
        lost=dict(curr.lost),
        new_task_returns_per_s=None if curr.new_task_returns is None else curr.new_task_returns / dt_s,
        overhead_cpu_percent=events_per_s * TRACING_NS_PER_SYSCALL / 1e9 * 100,
        target_pid=curr.target_pid,
        focus_pid=curr.focus_pid,
        threads=tuple(
            sorted(
                (
                    ThreadSyscallRate(t.tid, t.calls / dt_s, t.errors / dt_s, t.latency_total_ns / t.calls)
                    for t in curr.threads
                ),
                key=lambda t: (-t.calls_per_s, t.tid),
            )
        ),
    )


SYSCALLS: ProbeSpec[SyscallsSample, SyscallsView] = ProbeSpec(SyscallProbe.name, SyscallsSample, SyscallsView, derive_syscalls, SyscallProbe)
