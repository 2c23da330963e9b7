"""The "procio" probe: every process's storage I/O, pidstat -d's figures (see probes.host.process_io).

A probe of its own rather than fields of the process probe's sample: that
probe reuses last tick's sample of a process whose stat text did not change,
and a process can dirty pages or wait for a disk within a tick without its
stat moving. Each process's /proc/PID/io stays open between ticks and is
read again with pread, one syscall a process a tick; its /proc/PID/stat is
read at open for the start time and, with delay accounting on, every tick
for the block I/O delay.

A process whose /proc/PID/io orac may not read (another user's, as anyone
but root) is listed in `denied`, so the table says it cannot know rather
than showing 0.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.process_io import (
    IoUnreadable,
    ProcessIo,
    ProcessIoRates,
    delay_accounting,
    derive_process_io,
    pread_process_io,
)

PROC = "/proc"
STAT_BYTES = 4096
# Index of starttime (stat field 22) among the fields after the command
# name's closing parenthesis, which start at field 3.
START_TIME_INDEX = 22 - 3
# Descriptors this probe keeps open at most (two a process); past it, files
# are opened and closed each tick.
MAX_FDS = 8192


@dataclass(frozen=True, slots=True)
class ProcessIoCounters:
    """One process's cumulative storage I/O since it started (/proc/PID/io, stat field 42)."""

    pid: int
    # stat's starttime in clock ticks since boot: with pid, one process across pid reuse
    start_time_ticks: int
    read_bytes: int
    write_bytes: int
    cancelled_write_bytes: int
    # None without delay accounting
    blkio_delay_ns: int | None


@dataclass(frozen=True, slots=True)
class ProcessIoSample:
    processes: tuple[ProcessIoCounters, ...]
    # processes whose /proc/PID/io is not orac's to read (needs root)
    denied: tuple[int, ...]
    delay_accounting: bool
    mono_ns: int | None = None


def start_time_ticks(stat: bytes) -> int:
    """stat's starttime (field 22); IndexError or ValueError on a text that lacks it."""
    return int(stat[stat.rindex(b")") + 2 :].split()[START_TIME_INDEX])


class ProcessIoProbe:
    """Samples every process's /proc/PID/io and block I/O delay."""

    name: ClassVar[str] = "procio"

    def __init__(self, proc: str = PROC) -> None:
        self._proc = proc
        # pid -> (its open io descriptor, its stat descriptor or -1, its start time)
        self._kept: dict[int, tuple[int, int, int]] = {}
        # pid -> its counters last sample: handed out again while they do not
        # move, so the recording's delta and the rates see the same object
        self._last: dict[int, ProcessIoCounters] = {}
        self._delay_accounting = False

    def start(self) -> None:
        if not os.path.exists(f"{self._proc}/self/io"):
            raise ProbeUnavailable(
                f"{self._proc}/PID/io is missing", "use a kernel built with CONFIG_TASK_IO_ACCOUNTING (most are)",
            )
        self._delay_accounting = delay_accounting(self._proc)

    def stop(self) -> None:
        for pid in list(self._kept):
            self._forget(pid)

    def _forget(self, pid: int) -> None:
        self._last.pop(pid, None)
        io_fd, stat_fd, _ = self._kept.pop(pid)
        os.close(io_fd)
        if stat_fd >= 0:
            os.close(stat_fd)

    def _open(self, pid: int) -> tuple[int, int, int] | IoUnreadable:
        """(io descriptor, stat descriptor or -1, start time), or why the process cannot be read.

        The start time comes from one read of stat at open: a descriptor
        kept on /proc/PID/io fails once its process is gone (see
        pread_process_io), so a later read through it is the same process.
        stat stays open only for the block I/O delay, which it alone has.
        Reading it is most of the cost of a /proc/PID/stat (10 us a process
        against 2 for io, measured here), so without delay accounting, off
        by default since Linux 5.14, it is not read again.
        """
        try:
            stat_fd = os.open(f"{self._proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return IoUnreadable.GONE
        try:
            started = start_time_ticks(os.pread(stat_fd, STAT_BYTES, 0))
            io_fd = os.open(f"{self._proc}/{pid}/io", os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:
            os.close(stat_fd)
            return IoUnreadable.DENIED
        except (OSError, IndexError, ValueError):
            os.close(stat_fd)
            return IoUnreadable.GONE
        if not self._delay_accounting:
            os.close(stat_fd)
            stat_fd = -1
        return io_fd, stat_fd, started

    def _read(self, pid: int) -> ProcessIoCounters | IoUnreadable:
        kept = self._kept.get(pid)
        fds = kept if kept is not None else self._open(pid)
        if isinstance(fds, IoUnreadable):
            return fds
        io_fd, stat_fd, started = fds
        stat = None
        if stat_fd >= 0:
            try:
                stat = os.pread(stat_fd, STAT_BYTES, 0)
            except OSError:
                stat = b""
        io = pread_process_io(io_fd, stat, self._delay_accounting) if stat != b"" else IoUnreadable.GONE
        if isinstance(io, ProcessIo) and (kept is not None or len(self._kept) * 2 < MAX_FDS):
            self._kept[pid] = fds
        elif kept is not None:
            self._forget(pid)
        else:
            os.close(io_fd)
            if stat_fd >= 0:
                os.close(stat_fd)
        if not isinstance(io, ProcessIo):
            return io
        last = self._last.get(pid)
        if last is not None and last.start_time_ticks == started and (
            last.read_bytes, last.write_bytes, last.cancelled_write_bytes, last.blkio_delay_ns,
        ) == (io.read_bytes, io.write_bytes, io.cancelled_write_bytes, io.blkio_delay_ns):
            return last
        counters = ProcessIoCounters(pid, started, io.read_bytes, io.write_bytes, io.cancelled_write_bytes, io.blkio_delay_ns)
        if pid in self._kept:
            self._last[pid] = counters
        return counters

    def sample(self) -> ProcessIoSample:
        mono_ns = time.monotonic_ns()
        processes, denied = [], []
        seen = set()
        for entry in os.listdir(self._proc):
            if not entry.isdigit():
                continue
            pid = int(entry)
            got = self._read(pid)
            if isinstance(got, ProcessIoCounters):
                processes.append(got)
                seen.add(pid)
            elif got is IoUnreadable.DENIED:
                denied.append(pid)
        for pid in [pid for pid in self._kept if pid not in seen]:
            self._forget(pid)
        return ProcessIoSample(tuple(processes), tuple(denied), self._delay_accounting, mono_ns)


@dataclass(frozen=True, slots=True)
class ProcessIoView:
    """pidstat -d's rates of each process that has two readings (see ProcessIoRates).

    A process new since the last sample has no rate yet; one in `denied`
    cannot be read by orac's user.
    """

    rates: dict[int, ProcessIoRates]
    denied: tuple[int, ...]
    delay_accounting: bool


def derive_process_io_view(prev: ProcessIoSample, curr: ProcessIoSample, dt_s: float) -> ProcessIoView:
    before = {p.pid: p for p in prev.processes}
    rates = {}
    for p in curr.processes:
        earlier = before.get(p.pid)
        if earlier is None or earlier.start_time_ticks != p.start_time_ticks:
            continue
        if earlier is p or (earlier.read_bytes, earlier.write_bytes, earlier.cancelled_write_bytes, earlier.blkio_delay_ns) == (
            p.read_bytes, p.write_bytes, p.cancelled_write_bytes, p.blkio_delay_ns,
        ):
            # Most processes do no I/O in a tick: one shared rate of nothing.
            rates[p.pid] = IDLE if p.blkio_delay_ns is not None else IDLE_WITHOUT_DELAY
        else:
            rates[p.pid] = derive_process_io(_io(earlier), _io(p), dt_s)
    return ProcessIoView(rates, curr.denied, curr.delay_accounting)


IDLE = ProcessIoRates(0.0, 0.0, 0.0, 0.0)
IDLE_WITHOUT_DELAY = ProcessIoRates(0.0, 0.0, 0.0, None)


def _io(p: ProcessIoCounters) -> ProcessIo:
    return ProcessIo(p.read_bytes, p.write_bytes, p.cancelled_write_bytes, p.blkio_delay_ns)


PROCESS_IO: ProbeSpec[ProcessIoSample, ProcessIoView] = ProbeSpec(
    ProcessIoProbe.name, ProcessIoSample, ProcessIoView, derive_process_io_view, ProcessIoProbe,
)
