"""The "procs" probe: every process's CPU time, memory and identity.

It reads /proc/PID/stat directly: about eight times cheaper than
psutil.process_iter for the same fields, which matters at thousands of
processes every second. What rarely changes (user, command line, cgroup) is
read once per process and again only when the process execs (its comm
changes). A process whose stat text is byte-for-byte what it was last tick
(most of them, on an idle box) reuses last tick's sample without parsing.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import ClassVar

from .base import ProbeUnavailable
from .procfs import NS_PER_TICK, PAGE_SIZE_BYTES, read_bytes, read_text

PROC = "/proc"


@dataclass(frozen=True, slots=True)
class ProcSample:
    """Raw counters of one process at one tick."""

    pid: int
    ppid: int
    state: str
    name: str
    cmdline: str
    user: str
    cgroup: str
    cpu_user_ns: int
    cpu_system_ns: int
    rss_bytes: int
    num_threads: int
    # since boot; with pid it identifies a process across pid reuse
    start_time_ns: int


@dataclass(frozen=True, slots=True)
class ProcessesSample:
    processes: tuple[ProcSample, ...]
    # pids listed in /proc whose files could not be read (gone or denied)
    unreadable: int
    # time since boot when sampled, the clock of ProcSample.start_time_ns: it
    # tells a process born since the last sample from one that was unreadable
    sampled_since_boot_ns: int | None = None


def parse_stat(data: bytes) -> tuple[str, str, int, int, int, int, int, int]:
    """Parse /proc/PID/stat.

    Returns (name, state, ppid, utime_ns, stime_ns, num_threads, start_time_ns,
    rss_bytes). The name sits in parentheses and may itself contain spaces
    and parentheses, so the fields start after the last ')'.
    """
    open_paren = data.index(b"(")
    close_paren = data.rindex(b")")
    name = data[open_paren + 1 : close_paren].decode("utf-8", "replace")
    f = data[close_paren + 2 :].split()
    return (
        name,
        f[0].decode(),
        int(f[1]),
        int(f[11]) * NS_PER_TICK,
        int(f[12]) * NS_PER_TICK,
        int(f[17]),
        int(f[19]) * NS_PER_TICK,
        int(f[21]) * PAGE_SIZE_BYTES,
    )


# Arguments may hold newlines and other control characters (`python -c
# "..."`): one line per process on screen, so they show as spaces.
CONTROL_TO_SPACE = bytes.maketrans(bytes(range(32)), b" " * 32)


def parse_cmdline(data: bytes | None) -> str:
    """Join /proc/PID/cmdline's NUL-separated arguments with spaces."""
    if not data:
        return ""
    return data.rstrip(b"\0").translate(CONTROL_TO_SPACE).decode("utf-8", "replace")


def parse_cgroup(data: bytes | None) -> str:
    """Return the process's cgroup path: the v2 entry, else systemd's v1 one."""
    if not data:
        return ""
    fallback = ""
    for line in data.decode("utf-8", "replace").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            return path
        if controllers == "name=systemd" or not fallback:
            fallback = path
    return fallback


def short_cgroup(path: str) -> str:
    """The part of a cgroup path a person recognises: the unit or container.

    "/system.slice/docker-3f2a...scope" -> "docker-3f2a9c1b8e7d";
    "/user.slice/user-1000.slice/session-2.scope" -> "session-2.scope";
    "/" -> "/".
    """
    leaf = path.rstrip("/").rsplit("/", 1)[-1]
    if not leaf:
        return "/"
    for prefix in ("docker-", "cri-containerd-", "crio-", "libpod-"):
        if leaf.startswith(prefix) and leaf.endswith(".scope"):
            return leaf[: len(prefix) + 12]
    return leaf


def user_name(uid: int, cache: dict[int, str] = {}) -> str:  # noqa: B006 - process-wide cache
    name = cache.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        cache[uid] = name
    return name


class ProcessProbe:
    """Samples all processes from /proc."""

    name: ClassVar[str] = "procs"

    def __init__(self, proc: str = PROC) -> None:
        self._proc = proc
        # pid -> (stat bytes, sample) of the last tick
        self._last: dict[int, tuple[bytes, ProcSample]] = {}

    def start(self) -> None:
        if not os.path.isdir(f"{self._proc}/self"):
            raise ProbeUnavailable(f"{self._proc} is not a mounted procfs", "mount -t proc proc /proc")

    def stop(self) -> None:
        self._last.clear()

    def sample(self) -> ProcessesSample:
        proc = self._proc
        last = self._last
        current: dict[int, tuple[bytes, ProcSample]] = {}
        unreadable = 0
        for entry in os.listdir(proc):
            if not entry.isdigit():
                continue
            pid = int(entry)
            data = read_bytes(f"{proc}/{entry}/stat")
            if not data:
                unreadable += 1
                continue
            previous = last.get(pid)
            if previous is not None and previous[0] == data:
                current[pid] = previous
                continue
            try:
                sample = self._parse(pid, entry, data, previous[1] if previous else None)
            except (ValueError, IndexError):
                unreadable += 1
                continue
            if sample is None:
                unreadable += 1
                continue
            current[pid] = (data, sample)
        self._last = current
        return ProcessesSample(tuple(s for _, s in current.values()), unreadable, self._since_boot_ns())

    def _since_boot_ns(self) -> int | None:
        # /proc/uptime is the clock of the start times in /proc/PID/stat.
        text = read_text(f"{self._proc}/uptime")
        try:
            return int(float(text.split()[0]) * 1e9) if text else None
        except (ValueError, IndexError):
            return None

    def _parse(self, pid: int, entry: str, data: bytes, previous: ProcSample | None) -> ProcSample | None:
        name, state, ppid, utime, stime, threads, start, rss = parse_stat(data)
        if previous is not None and previous.start_time_ns == start and previous.name == name:
            cmdline, user, cgroup = previous.cmdline, previous.user, previous.cgroup
        else:
            # New process, reused pid, or an exec: read what rarely changes.
            base = f"{self._proc}/{entry}"
            try:
                uid = os.stat(base).st_uid
            except OSError:
                return None
            cmdline = parse_cmdline(read_bytes(f"{base}/cmdline"))
            user = user_name(uid)
            cgroup = parse_cgroup(read_bytes(f"{base}/cgroup"))
        return ProcSample(
            pid=pid,
            ppid=ppid,
            state=state,
            name=name,
            cmdline=cmdline,
            user=user,
            cgroup=cgroup,
            cpu_user_ns=utime,
            cpu_system_ns=stime,
            rss_bytes=rss,
            num_threads=threads,
            start_time_ns=start,
        )
