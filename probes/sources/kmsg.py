"""The "kmsg" probe: the kernel's log as `dmesg` reads it, live, with the lines that matter in triage classified.

/dev/kmsg (Documentation/ABI/testing/dev-kmsg) gives one record per
read(): "PRIO,SEQ,TS_US,FLAGS[,...];MESSAGE", then continuation lines
" KEY=VALUE" (device info) that are not part of the message. PRIO is
facility * 8 + level, SEQ a number that grows by one per record, TS_US
the printk clock in microseconds (local_clock, which is CLOCK_MONOTONIC's
time since boot less suspends). Opened non-blocking, a read with nothing
new gives EAGAIN; one whose next record the ring buffer has overwritten
gives EPIPE and moves on to the oldest record still there: the records
lost are the gap in SEQ, counted in `lost_lines`.

Each sample carries the last MAX_EVENTS records, so a replayed frame shows
what the screen showed without the frames before it; the recording stores
only the new ones (the codec copies the unchanged run).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable

DEV_KMSG = "/dev/kmsg"
MAX_EVENTS = 64
# Records from before orac started that are shown (marked earlier): what
# led up to opening it.
EARLIER_S = 300
# A record is at most 1024 bytes of text plus its prefix and dictionary
# (kernel/printk: PRINTK_MESSAGE_MAX and the device properties); a larger
# buffer never truncates one.
READ_BYTES = 8192
# Reads per sample at most: a kernel logging in a loop cannot hold the
# collector thread; what is left is read on the next tick.
MAX_READS = 4096

# kind -> what it is, as the pane and the dump name it
KINDS = {
    "oom-kill": "OOM kill",
    "oom": "out of memory",
    "hung-task": "hung task",
    "segfault": "segfault",
    "trap": "trap",
    "io-error": "I/O error",
    "fs-error": "filesystem error",
    "xid": "NVIDIA Xid",
    "soft-lockup": "lockup",
    "thermal": "thermal",
}

# (kind, pattern): the first match classifies a message. Patterns follow
# the kernel's format strings, named beside each.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # mm/oom_kill.c __oom_kill_process: "%s: Killed process %d (%s) total-vm:..."
    ("oom-kill", re.compile(r"Killed process (?P<pid>\d+) \((?P<comm>[^)]*)\)")),
    # mm/oom_kill.c dump_oom_victim / oom_kill_process context lines
    ("oom", re.compile(r"^oom-kill:|invoked oom-killer|Out of memory|out of memory|oom_reaper")),
    # kernel/hung_task.c: "INFO: task %s:%d blocked for more than %ld seconds."
    ("hung-task", re.compile(r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than")),
    # arch/x86/mm/fault.c show_signal_msg: "%s[%d]: segfault at %lx ip ..."
    ("segfault", re.compile(r"^(?P<comm>.+)\[(?P<pid>\d+)\]: segfault at ")),
    # arch/x86/kernel/traps.c: "traps: %s[%d] general protection fault ...", "trap divide error ..."
    ("trap", re.compile(r"^traps: (?P<comm>.+)\[(?P<pid>\d+)\] |^(?P<comm2>.+)\[(?P<pid2>\d+)\] trap ")),
    # drivers/gpu NVIDIA: "NVRM: Xid (PCI:0000:3b:00): 79, pid=..., name=..., GPU has fallen off the bus."
    ("xid", re.compile(r"NVRM: Xid \([^)]*\): (?P<xid>\d+)")),
    # kernel/watchdog.c: "BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]", "Watchdog detected hard LOCKUP";
    # kernel/rcu: "rcu_sched self-detected stall", "rcu: INFO: rcu_preempt detected stalls"
    ("soft-lockup", re.compile(
        r"soft lockup - CPU#\d+ stuck for \d+s! \[(?P<comm>.+):(?P<pid>\d+)\]|hard LOCKUP|self-detected stall|detected stalls")),
    # block/blk-core.c "I/O error, dev %s, sector %llu ..."; fs/buffer.c "Buffer I/O error on dev %s"; SCSI, NVMe
    ("io-error", re.compile(r"I/O error|critical medium error|blk_update_request|nvme\d+.*(timeout|reset)", re.I)),
    # ext4/xfs/btrfs error lines, and any filesystem going read-only
    ("fs-error", re.compile(
        r"EXT[234]-fs (error|warning)|XFS \([^)]*\): .*(error|shutdown|corruption)|BTRFS (error|critical)"
        r"|Remounting filesystem read-only|remounted read-only|journal abort", re.I)),
    # arch/x86/kernel/cpu/mce/therm_throt.c; drivers/thermal
    ("thermal", re.compile(r"temperature above threshold|critical temperature|thermal.*(shutdown|throttl)", re.I)),
)
# mm/oom_kill.c dump_oom_summary: "oom-kill:constraint=...,task_memcg=%s,task=%s,pid=%d,uid=%d"
_OOM_SUMMARY = re.compile(r"oom-kill:.*task_memcg=(?P<cgroup>[^,]*),task=(?P<comm>[^,]*),pid=(?P<pid>\d+)")


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One kernel log record, classified.

    `kind` is a key of KINDS, or "" for a record of no kind orac knows;
    `pid`, `comm` and `cgroup` name the process a record is about (an OOM
    kill's victim, the segfaulting program) where its text says, and
    `xid` is an NVIDIA Xid's number. `earlier`: logged before orac
    started.
    """

    seq: int
    ts_us: int
    level: int
    facility: int
    message: str
    kind: str = ""
    earlier: bool = False
    pid: int | None = None
    comm: str | None = None
    cgroup: str | None = None
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class KmsgSample:
    """The last MAX_EVENTS records, and the count of records lost since the probe started."""

    events: tuple[KernelEvent, ...]
    # the SEQ of the newest record read, None before any
    last_seq: int | None
    # records the ring buffer overwrote before orac read them (EPIPE gaps)
    lost_lines: int
    # records that could not be parsed (not "PRIO,SEQ,TS;TEXT")
    malformed_lines: int
    mono_ns: int


@dataclass(frozen=True, slots=True)
class KmsgView:
    """The log over one interval.

    `events` are the records shown, oldest first; `new_events` those
    logged in the interval (SEQ after the previous sample's newest).
    `lost_lines` and `malformed_lines` count the interval's (None when a
    counter went backwards: the probe restarted). `mono_ns`: when the log
    was read, on the clock of the records' `ts_us`, so a record's age is
    known (the verdict keeps one for some minutes).
    """

    events: tuple[KernelEvent, ...]
    new_events: tuple[KernelEvent, ...]
    lost_lines: int | None
    malformed_lines: int | None
    mono_ns: int

    @property
    def oom_kills(self) -> tuple[KernelEvent, ...]:
        return tuple(e for e in self.new_events if e.kind == "oom-kill")

    def wall_ns_of(self, event: KernelEvent, read_wall_ns: int) -> int:
        """When `event` was logged, on the wall clock, given the wall time the log was read at.

        A record's timestamp is the monotonic clock's, as `mono_ns` is: its
        age is their difference, as dmesg -T converts it.
        """
        return read_wall_ns - (self.mono_ns - event.ts_us * 1000)


def classify(message: str) -> tuple[str, int | None, str | None, int | None]:
    """(kind, pid, comm, xid) of a record's message; ("", None, None, None) when it is of no known kind."""
    for kind, pattern in _PATTERNS:
        match = pattern.search(message)
        if match is None:
            continue
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        pid = groups.get("pid") or groups.get("pid2")
        comm = groups.get("comm") or groups.get("comm2")
        xid = groups.get("xid")
        return kind, int(pid) if pid else None, comm, int(xid) if xid else None
    return "", None, None, None


def _unescape(text: str) -> str:
    # /dev/kmsg writes non-printable bytes as \xNN
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_record(record: str, earlier: bool = False) -> KernelEvent | None:
    """One /dev/kmsg record; None when it is not "PRIO,SEQ,TS_US,FLAGS;MESSAGE"."""
    header, semicolon, rest = record.partition(";")
    fields = header.split(",")
    if not semicolon or len(fields) < 3:
        return None
    try:
        prio, seq, ts_us = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return None
    if prio < 0 or seq < 0 or ts_us < 0:
        return None
    # continuation lines (" SUBSYSTEM=...") are device info, not the message
    message = _unescape(rest.split("\n", 1)[0])
    kind, pid, comm, xid = classify(message)
    return KernelEvent(seq, ts_us, prio & 7, prio >> 3, message, kind, earlier, pid, comm, None, xid)


class KmsgProbe:
    """Reads new /dev/kmsg records each tick.

    Args:
        path: The device, or a file of records one per line (a saved log, tests).
        earlier_s: How far before the start records are kept (marked earlier).
    """

    name: ClassVar[str] = "kmsg"

    def __init__(self, path: str = DEV_KMSG, earlier_s: float = EARLIER_S) -> None:
        self._path = path
        self._earlier_s = earlier_s
        self._fd: int | None = None
        self._events: list[KernelEvent] = []
        self._last_seq: int | None = None
        self._lost = 0
        self._malformed = 0
        # an oom-kill: summary line, until its "Killed process" line names the victim
        self._oom_cgroups: dict[int, str] = {}
        # a character device gives a record per read; a file, lines
        self._device = True
        self._partial = ""

    def start(self) -> None:
        try:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            raise ProbeUnavailable(
                "reading the kernel log needs root or CAP_SYSLOG (kernel.dmesg_restrict is 1)",
                "run `sudo orac`, or `sudo sysctl kernel.dmesg_restrict=0`",
            ) from None
        except FileNotFoundError:
            raise ProbeUnavailable(f"{self._path} does not exist", "this kernel has no /dev/kmsg (CONFIG_PRINTK)") from None
        except OSError as exc:
            raise ProbeUnavailable(f"cannot open {self._path}: {exc.strerror}") from None
        self._device = stat.S_ISCHR(os.fstat(self._fd).st_mode)
        now_us = time.monotonic_ns() // 1000
        self._read(earlier_since_us=now_us - int(self._earlier_s * 1e6))

    def sample(self) -> KmsgSample:
        mono_ns = time.monotonic_ns()
        self._read(None)
        return KmsgSample(tuple(self._events), self._last_seq, self._lost, self._malformed, mono_ns)

    def _read(self, earlier_since_us: int | None) -> None:
        """Read what is there; at start (earlier_since_us given) keep only the recent part, marked earlier."""
        fd = self._fd
        if fd is None:
            raise RuntimeError("KmsgProbe.sample() before start()")
        for _ in range(MAX_READS):
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return
            except BrokenPipeError:
                # overwritten before it was read: the SEQ gap says how many
                continue
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    # a record longer than the buffer: skipped, counted
                    self._malformed += 1
                    continue
                raise
            if not data:
                return
            for record in self._records(data):
                self._take(record, earlier_since_us)

    def _records(self, data: bytes) -> list[str]:
        text = data.decode("utf-8", "replace")
        if self._device:
            return [text]
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return [line for line in lines if line]

    def _take(self, record: str, earlier_since_us: int | None) -> None:
        event = parse_record(record, earlier=earlier_since_us is not None)
        if event is None:
            self._malformed += 1
            return
        if self._last_seq is not None:
            if event.seq <= self._last_seq:
                # the ring restarted under us (a new boot's records in a file): keep counting from it
                self._last_seq = None
            elif event.seq > self._last_seq + 1:
                self._lost += event.seq - self._last_seq - 1
        self._last_seq = event.seq
        summary = _OOM_SUMMARY.search(event.message)
        if summary is not None:
            self._oom_cgroups[int(summary["pid"])] = summary["cgroup"]
        elif event.kind == "oom-kill" and event.pid is not None:
            cgroup = self._oom_cgroups.pop(event.pid, None)
            if cgroup is not None:
                event = KernelEvent(event.seq, event.ts_us, event.level, event.facility, event.message, event.kind,
                                    event.earlier, event.pid, event.comm, cgroup, event.xid)
        if earlier_since_us is not None and event.ts_us < earlier_since_us:
            return
        self._events.append(event)
        if len(self._events) > MAX_EVENTS:
            del self._events[: len(self._events) - MAX_EVENTS]

    def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _delta(prev: int, curr: int) -> int | None:
    return curr - prev if curr >= prev else None


def derive_kmsg(prev: KmsgSample, curr: KmsgSample, dt_s: float) -> KmsgView:
    since = prev.last_seq
    new = tuple(e for e in curr.events if not e.earlier and (since is None or e.seq > since))
    return KmsgView(
        curr.events, new, _delta(prev.lost_lines, curr.lost_lines), _delta(prev.malformed_lines, curr.malformed_lines),
        curr.mono_ns,
    )


KMSG: ProbeSpec[KmsgSample, KmsgView] = ProbeSpec(KmsgProbe.name, KmsgSample, KmsgView, derive_kmsg, KmsgProbe)
