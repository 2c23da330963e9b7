"""The "procio" probe: every process's storage I/O, pidstat -d's figures (see probes.host.process_io).

A probe of its own rather than fields of the process probe's sample: that
probe reuses last tick's sample of a process whose stat text did not change,
and a process can dirty pages or wait for a disk within a tick without its
stat moving. Each process's /proc/PID/stat (for its start time and its
block I/O delay) and /proc/PID/io stay open between ticks and are read again
with pread, two syscalls a process a tick.

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
        # pid -> its open (stat, io) descriptors
        self._fds: dict[int, tuple[int, int]] = {}
        self._delay_accounting = False

    def start(self) -> None:
        if not os.path.exists(f"{self._proc}/self/io"):
            raise ProbeUnavailable(
                f"{self._proc}/PID/io is missing", "use a kernel built with CONFIG_TASK_IO_ACCOUNTING (most are)",
            )
        self._delay_accounting = delay_accounting(self._proc)

    def stop(self) -> None:
        for pid in list(self._fds):
            self._forget(pid)

    def _forget(self, pid: int) -> None:
        for fd in self._fds.pop(pid, ()):
            os.close(fd)

    def _open(self, pid: int) -> tuple[int, int] | IoUnreadable:
        try:
            stat_fd = os.open(f"{self._proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return IoUnreadable.GONE
        try:
            io_fd = os.open(f"{self._proc}/{pid}/io", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            os.close(stat_fd)
            return IoUnreadable.DENIED if isinstance(error, PermissionError) else IoUnreadable.GONE
        return stat_fd, io_fd

    def _read(self, pid: int) -> ProcessIoCounters | IoUnreadable:
        fds = self._fds.get(pid)
        kept = fds is not None
        if fds is None:
            opened = self._open(pid)
            if isinstance(opened, IoUnreadable):
                return opened
            fds = opened
        stat_fd, io_fd = fds
        try:
            try:
                stat = os.pread(stat_fd, STAT_BYTES, 0)
            except OSError:
                stat = b""
            io = pread_process_io(io_fd, stat, self._delay_accounting) if stat else IoUnreadable.GONE
            if isinstance(io, ProcessIo):
                try:
                    started = start_time_ticks(stat)
                except (IndexError, ValueError):
                    io = IoUnreadable.GONE
        finally:
            keep = isinstance(io, ProcessIo) and (kept or len(self._fds) * 2 < MAX_FDS)
            if keep:
                self._fds[pid] = fds
            elif kept:
                self._forget(pid)
            else:
                os.close(stat_fd)
                os.close(io_fd)
        if not isinstance(io, ProcessIo):
            return io
        return ProcessIoCounters(pid, started, io.read_bytes, io.write_bytes, io.cancelled_write_bytes, io.blkio_delay_ns)

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
        for pid in [pid for pid in self._fds if pid not in seen]:
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
    before = {(p.pid, p.start_time_ticks): p for p in prev.processes}
    rates = {}
    for p in curr.processes:
        earlier = before.get((p.pid, p.start_time_ticks))
        if earlier is not None:
            rates[p.pid] = derive_process_io(_io(earlier), _io(p), dt_s)
    return ProcessIoView(rates, curr.denied, curr.delay_accounting)


def _io(p: ProcessIoCounters) -> ProcessIo:
    return ProcessIo(p.read_bytes, p.write_bytes, p.cancelled_write_bytes, p.blkio_delay_ns)


PROCESS_IO: ProbeSpec[ProcessIoSample, ProcessIoView] = ProbeSpec(
    ProcessIoProbe.name, ProcessIoSample, ProcessIoView, derive_process_io_view, ProcessIoProbe,
)
