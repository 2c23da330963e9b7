"""Per-process storage I/O: /proc/PID/io's bytes and /proc/PID/stat's block I/O delay.

For the process probe to call once per process per tick: it already holds
each process's stat text, and adds one read of /proc/PID/io
(`read_process_io`, or `pread_process_io` on a descriptor it keeps open, as
it keeps stat's). The figures are pidstat -d's, and what htop's I/O tab and
iotop show:

- read_bytes: bytes this process caused to be fetched from storage (block
  reads it submitted; reads served from the page cache do not count).
- write_bytes: bytes it caused to be sent to storage: counted when it
  dirties page-cache pages (a buffered write) or submits a direct write, not
  when writeback later writes them out. Filesystem metadata pages it dirties
  count too, each the first time it is dirtied: allocating 8 MiB on ext4
  with direct writes read 8 MiB + 24 KiB (bitmaps, the inode's table page).
- cancelled_write_bytes: bytes it dirtied that never reached storage
  (truncated or deleted before writeback); pidstat's kB_ccwr/s.

/proc/PID/io is readable only by the process's owner (and then not for a
process that changed credentials, such as a setuid program) or by root: for
anyone else the read fails with EACCES, which is reported as DENIED so that
a pane says "needs root" rather than showing 0.

Block I/O delay is field 42 of /proc/PID/stat, delayacct_blkio_ticks: the
clock ticks the process's main thread spent waiting for block I/O to
complete (synchronous reads, fsync, direct I/O, swap-in). Only the thread
group leader's own count: the kernel does not sum it over threads as it does
CPU times, so I/O waited for in worker threads is not in it. It needs delay
accounting: since Linux 5.14 off unless the `delayacct` boot option or
`sysctl kernel.task_delayacct=1` turns it on (before, on wherever the kernel
is built with it, unless booted with `nodelayacct`). Where it is off the
field reads 0 for every process, so `delay_accounting()` tells unknown from
zero.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from probes.host.procfs import NS_PER_TICK, read_text

# /proc/PID/io is seven "name: value" lines, about 120 bytes.
IO_BYTES = 512
KERNEL_IO_NAMES = [b"read_bytes:", b"write_bytes:", b"cancelled_write_bytes:"]
# Index of delayacct_blkio_ticks (stat field 42) among the fields after
# the command name's closing parenthesis, which start at field 3 (state).
BLKIO_TICKS_INDEX = 42 - 3


class IoUnreadable(enum.Enum):
    """Why a process's /proc/PID/io gave no figures."""

    # not this user's process (or one that changed credentials): needs root
    DENIED = "denied"
    # exited before or while it was read
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class ProcessIo:
    """One process's cumulative storage I/O, from /proc/PID/io and /proc/PID/stat."""

    read_bytes: int
    write_bytes: int
    cancelled_write_bytes: int
    # main thread's wait for block I/O; None without delay accounting
    blkio_delay_ns: int | None = None


def parse_io(data: bytes) -> tuple[int, int, int]:
    """(read_bytes, write_bytes, cancelled_write_bytes) from /proc/PID/io text.

    Raises ValueError when one of them is missing (a truncated or foreign text).
    """
    words = data.split()
    # The kernel's layout since 2.6.20 (fs/proc/base.c do_io_accounting):
    # rchar, wchar, syscr, syscw, then these three; read by position, for
    # this runs for every process every tick.
    if words[8:13:2] == KERNEL_IO_NAMES:
        try:
            return int(words[9]), int(words[11]), int(words[13])
        except (IndexError, ValueError):
            pass
    values: dict[bytes, int] = {}
    for line in data.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"read_bytes", b"write_bytes", b"cancelled_write_bytes"):
            values[key] = int(value)
    try:
        return values[b"read_bytes"], values[b"write_bytes"], values[b"cancelled_write_bytes"]
    except KeyError as missing:
        raise ValueError(f"/proc/PID/io has no {missing.args[0].decode()}") from None


def parse_blkio_delay_ns(stat: bytes) -> int:
    """delayacct_blkio_ticks (field 42 of /proc/PID/stat) in ns.

    The fields are counted after the last ')', since the command name may
    hold spaces and parentheses. Raises IndexError on a stat from a kernel
    before 2.6.18, which lacks the field, and ValueError on garbage.
    """
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[BLKIO_TICKS_INDEX]) * NS_PER_TICK


def delay_accounting(proc: str = "/proc") -> bool:
    """Whether the kernel counts block I/O delay per task now (see the module docstring)."""
    switch = read_text(f"{proc}/sys/kernel/task_delayacct")
    if switch is not None:
        return switch.strip() == "1"
    # Before 5.14 there is no switch: on unless booted with nodelayacct.
    return "nodelayacct" not in (read_text(f"{proc}/cmdline") or "").split()


def _unreadable(error: OSError) -> IoUnreadable:
    return IoUnreadable.DENIED if isinstance(error, PermissionError) else IoUnreadable.GONE


def process_io(io: bytes, stat: bytes | None, delay_accounting_on: bool) -> ProcessIo:
    """A ProcessIo from the texts of /proc/PID/io and /proc/PID/stat; ValueError on garbage."""
    read, write, cancelled = parse_io(io)
    delay = None
    if delay_accounting_on and stat:
        try:
            delay = parse_blkio_delay_ns(stat)
        except (IndexError, ValueError):
            delay = None
    return ProcessIo(read, write, cancelled, delay)


def read_process_io(
    pid_dir: str, stat: bytes | None = None, delay_accounting_on: bool = False,
) -> ProcessIo | IoUnreadable:
    """Read `pid_dir`/io (pid_dir: "/proc/1234") with `stat`, that process's stat text, if held.

    One open, read and close; see pread_process_io for a kept descriptor.
    """
    try:
        fd = os.open(f"{pid_dir}/io", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        return _unreadable(error)
    try:
        return pread_process_io(fd, stat, delay_accounting_on)
    finally:
        os.close(fd)


def pread_process_io(fd: int, stat: bytes | None = None, delay_accounting_on: bool = False) -> ProcessIo | IoUnreadable:
    """Read /proc/PID/io again through a descriptor kept open on it.

    procfs makes the text anew on every read at offset 0 and checks the
    reader's access each time, so a kept descriptor of a process that has
    exited fails (ESRCH) rather than giving old figures.
    """
    try:
        data = os.pread(fd, IO_BYTES, 0)
    except OSError as error:
        return _unreadable(error)
    if not data:
        return IoUnreadable.GONE
    try:
        return process_io(data, stat, delay_accounting_on)
    except ValueError:
        return IoUnreadable.GONE


@dataclass(frozen=True, slots=True)
class ProcessIoRates:
    """One process's storage I/O over an interval of t seconds (pidstat -d).

    Attributes:
        read_bytes_per_s: Δ read_bytes / t (pidstat's kB_rd/s x 1024).
        write_bytes_per_s: Δ write_bytes / t (kB_wr/s x 1024).
        cancelled_write_bytes_per_s: Δ cancelled_write_bytes / t (kB_ccwr/s x 1024).
        blkio_delay_percent: Δ blkio_delay_ns / t, in percent of the
            interval: the share of it the main thread spent waiting for
            block I/O (pidstat's iodelay is the same Δ in ticks). None
            without delay accounting.
    """

    read_bytes_per_s: float
    write_bytes_per_s: float
    cancelled_write_bytes_per_s: float
    blkio_delay_percent: float | None


def derive_process_io(prev: ProcessIo, curr: ProcessIo, dt_s: float) -> ProcessIoRates:
    """Rates of one process between two readings of the same process (same pid and start time).

    The counters only grow over a process's life; a difference below zero
    can only come from mixing two processes' readings, and is taken as 0.
    The block I/O delay is capped at the interval: one thread cannot wait
    longer than the time that passed, yet the kernel's count can say so (a
    one-thread direct-I/O helper read 114 % once on CI, 36-61 % in the same
    test here). The kernel times each wait from the sleep to the wake-up,
    on the CPUs that do them; which of its stamps over-counted was not
    pinned down.
    """
    def rate(before: int, after: int) -> float:
        return max(0, after - before) / dt_s

    delay = None
    if prev.blkio_delay_ns is not None and curr.blkio_delay_ns is not None:
        delay = min(100.0, max(0, curr.blkio_delay_ns - prev.blkio_delay_ns) / (dt_s * 1e9) * 100.0)
    return ProcessIoRates(
        read_bytes_per_s=rate(prev.read_bytes, curr.read_bytes),
        write_bytes_per_s=rate(prev.write_bytes, curr.write_bytes),
        cancelled_write_bytes_per_s=rate(prev.cancelled_write_bytes, curr.cancelled_write_bytes),
        blkio_delay_percent=delay,
    )
