"""The "procs" probe: every process's CPU time, memory and identity.

It reads /proc/PID/stat and /proc/PID/statm directly: about eight times
cheaper than psutil.process_iter for the same fields, which matters at
thousands of processes every second. What rarely changes (user, command
line, cgroup) is read once per process and again only when the process
execs (its comm changes). A process whose stat text is byte-for-byte what
it was last tick (most of them, on an idle box) reuses last tick's sample
without parsing.

RSS is statm's resident field (pages), the figure ps, top and htop show:
on the development VM's 6.18 kernel it equals `ps -o rss` (status's VmRSS)
to the page for every process, where stat's rss field, an approximation
the kernel does not sum over its per-CPU counters, read 5 to 11 % low for
small processes (a sleep: 1512 KiB against ps's 1684). statm is read when a
process is first seen and whenever its stat text changes. A process whose
stat is unchanged ran no clock tick, took no page fault, mapped nothing
and its approximate rss did not move, so it keeps last tick's RSS: what can
have moved it meanwhile is pages reclaimed from it (or dropped with
madvise), fewer than the kernel's per-CPU batch (max(32, 2 x CPUs) pages)
on each CPU that did it, or stat's rss would have moved too.

Each process's stat file stays open between ticks and is read again with
pread at offset 0 (procfs makes the text anew on every read): one syscall a
process a tick instead of open, read and close, 4.3 -> 1.8 ms a tick for
570 processes on the development VM, and fewer of orac's own syscalls for
its syscalls probe to trace. A process's statm stays open too once its stat
has changed since it was first seen: an active process costs two preads a
tick, an idle one still one. A process that is gone (reaped) fails the read
with ESRCH, and its pid is opened afresh should it come back as another
process. Open files are capped below the file-descriptor limit; past the
cap, files are opened and closed each tick.

Threads (htop's H) are read only while asked for (`threads`): then every
process that had more than one thread last tick has its task directory
listed and each other thread's /proc/PID/task/TID/stat read, kept open and
re-read with pread like a process's stat, in the same quick pass. A thread
row carries its own name, state, CPU time and start time, and its
process's command line, user, cgroup and RSS (threads share them). The
kernel's side of that pread is the cost, about 40 us a thread on the
development VM under load: a process of 500 sleeping threads took a sample
from 0.9 to 21 ms while threads were shown, nothing while they are not.
"""

from __future__ import annotations

import os
import pwd
import resource
import time
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import (
    NS_PER_TICK,
    PAGE_SIZE_BYTES,
    read_bytes,
    read_text,
    shown,
)

PROC = "/proc"
# Descriptors left for everything else orac opens (eBPF maps, files, sockets).
RESERVED_FDS = 256
# The soft descriptor limit is raised to the hard one up to this many.
WANTED_FDS = 65536
# /proc/PID/stat is about 300 bytes, statm about 40.
STAT_BYTES = 4096
STATM_BYTES = 256


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
    # statm's resident pages: anonymous, file-backed and shared memory mapped now
    rss_bytes: int
    num_threads: int
    # since boot; with pid it identifies a process across pid reuse
    start_time_ns: int
    # a thread's row (pid is its thread id): the pid of its process; None for a process
    thread_of: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessesSample:
    processes: tuple[ProcSample, ...]
    # pids listed in /proc whose files could not be read (gone or denied)
    unreadable: int
    # time since boot when sampled, the clock of ProcSample.start_time_ns: it
    # tells a process born since the last sample from one that was unreadable
    sampled_since_boot_ns: int | None = None
    # time.monotonic_ns() in the middle of the pass that read every stat,
    # which CPU % divides by: None in recordings made before orac kept it
    mono_ns: int | None = None
    # every thread but each process's first, while threads are asked for (ProcessProbe.threads)
    threads: tuple[ProcSample, ...] = ()


def parse_stat(data: bytes) -> tuple[str, str, int, int, int, int, int]:
    """Parse /proc/PID/stat.

    Returns (name, state, ppid, utime_ns, stime_ns, num_threads,
    start_time_ns). The name sits in parentheses and may itself contain
    spaces and parentheses, so the fields start after the last ')'. Its rss
    field is left alone: it is approximate (see parse_statm_rss).
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
    )


def parse_statm_rss(data: bytes) -> int:
    """Resident set size in bytes from /proc/PID/statm (its second field, in pages).

    The kernel sums its per-CPU counters for statm and status (ps's VmRSS),
    not for stat's rss field, which reads up to a batch of pages per CPU off.
    """
    return int(data.split(None, 2)[1]) * PAGE_SIZE_BYTES


# Arguments may hold newlines and other control characters (`python -c
# "..."`): one line per process on screen, so they show as spaces. The NULs
# between arguments stay, so that redaction knows where each one ends.
CONTROL_TO_SPACE = bytes.maketrans(bytes(range(1, 32)), b" " * 31)


def parse_cmdline(data: bytes | None) -> str:
    """/proc/PID/cmdline's arguments, NUL-separated (probes.host.procfs.ARG_SEPARATOR) as the kernel gives them."""
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
        # pid -> (hash of its stat text, sample) of the last tick: the hash
        # rather than the ~300 bytes saves ~1 MB at 3000 processes; two texts
        # of one pid colliding (2^-64) would repeat a sample for one tick
        self._last: dict[int, tuple[int, ProcSample]] = {}
        # pid -> its open /proc/PID/stat
        self._stat_fds: dict[int, int] = {}
        # pid -> its open /proc/PID/statm, for processes whose stat has moved
        # since they were first read: idle ones need no second descriptor
        self._statm_fds: dict[int, int] = {}
        # Read every process's threads too (set from the UI while it shows
        # them; read at each sample's start).
        self.threads = False
        # tid -> its open /proc/PID/task/TID/stat, and last tick's (hash of
        # that text, its process's sample, the thread's sample)
        self._task_fds: dict[int, int] = {}
        self._task_last: dict[int, tuple[int, ProcSample, ProcSample]] = {}
        self._max_fds = 0

    def start(self) -> None:
        if not os.path.isdir(f"{self._proc}/self"):
            raise ProbeUnavailable(f"{self._proc} is not a mounted procfs", "mount -t proc proc /proc")
        self._max_fds = max(0, _raise_fd_limit() - RESERVED_FDS)

    def stop(self) -> None:
        self._last.clear()
        self._task_last.clear()
        for pid in list(self._stat_fds.keys() | self._statm_fds.keys() | self._task_fds.keys()):
            self._forget(pid)

    def _forget(self, pid: int) -> None:
        """Close the pid's (or thread id's) kept descriptors: its process or thread is gone."""
        for kept in (self._stat_fds, self._statm_fds, self._task_fds):
            fd = kept.pop(pid, None)
            if fd is not None:
                os.close(fd)

    def _read(self, kept: dict[int, int], pid: int, entry: str, name: str, size: int, keep: bool) -> bytes | None:
        """The text of /proc/PID/`name`, through its kept descriptor where there is one.

        Otherwise the file is opened afresh, and kept open if `keep` and
        there is room under the descriptor cap.
        """
        fd = kept.get(pid)
        if fd is not None:
            try:
                data = os.pread(fd, size, 0)
            except OSError:
                data = b""
            if data:
                return data
            # Gone; the pid may now be another process's.
            self._forget(pid)
        try:
            fd = os.open(f"{self._proc}/{entry}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = os.read(fd, size)
        except OSError:
            data = b""
        if data and keep and len(self._stat_fds) + len(self._statm_fds) + len(self._task_fds) < self._max_fds:
            kept[pid] = fd
        else:
            os.close(fd)
        return data or None

    def sample(self) -> ProcessesSample:
        proc = self._proc
        last = self._last
        stat_fds, statm_fds = self._stat_fds, self._statm_fds
        unreadable = 0
        # Every stat first, in one quick pass that dates them all, and only
        # then what is slow (statm, parsing, a new process's command line
        # and cgroup): read in between, the processes listed last would be
        # read long after the time their CPU % is divided by.
        stats: list[tuple[int, str, bytes]] = []
        entries = os.listdir(proc)
        start_ns = time.monotonic_ns()
        for entry in entries:
            if not entry.isdigit():
                continue
            pid = int(entry)
            data = self._read(stat_fds, pid, entry, "stat", STAT_BYTES, True)
            if data:
                stats.append((pid, entry, data))
            else:
                unreadable += 1
        task_stats = self._read_task_stats() if self.threads else []
        mono_ns = (start_ns + time.monotonic_ns()) // 2
        since_boot_ns = self._since_boot_ns()

        current: dict[int, tuple[int, ProcSample]] = {}
        for pid, entry, data in stats:
            digest = hash(data)
            previous = last.get(pid)
            if previous is not None and previous[0] == digest:
                # Its RSS too: see "RSS" in the module's docstring.
                current[pid] = previous
                continue
            statm = self._read(statm_fds, pid, entry, "statm", STATM_BYTES, previous is not None)
            if not statm:
                unreadable += 1
                continue
            try:
                sample = self._parse(pid, entry, data, statm, previous[1] if previous else None)
            except (ValueError, IndexError):
                unreadable += 1
                continue
            if sample is None:
                unreadable += 1
                continue
            current[pid] = (digest, sample)
        self._last = current
        listed = current.keys()
        for pid in [pid for pid in stat_fds.keys() | statm_fds.keys() if pid not in listed]:
            self._forget(pid)
        threads = self._threads(task_stats, current)
        return ProcessesSample(tuple(s for _, s in current.values()), unreadable, since_boot_ns, mono_ns, threads)

    def _read_task_stats(self) -> list[tuple[int, int, bytes]]:
        """(pid, tid, stat text) of every thread but the first of last tick's many-threaded processes."""
        out = []
        for pid, (_, process) in self._last.items():
            if process.num_threads < 2:
                continue
            try:
                entries = os.listdir(f"{self._proc}/{pid}/task")
            except OSError:
                continue
            for entry in entries:
                tid = int(entry)
                if tid == pid:
                    continue
                data = self._read(self._task_fds, tid, f"{pid}/task/{entry}", "stat", STAT_BYTES, True)
                if data:
                    out.append((pid, tid, data))
        return out

    def _threads(self, task_stats: list[tuple[int, int, bytes]], current: dict[int, tuple[int, ProcSample]]) -> tuple[ProcSample, ...]:
        """Thread rows from their stat texts, each with its process's identity; descriptors of gone threads closed."""
        last = self._task_last
        now: dict[int, tuple[int, ProcSample, ProcSample]] = {}
        for pid, tid, data in task_stats:
            entry = current.get(pid)
            if entry is None:
                continue
            process = entry[1]
            digest = hash(data)
            previous = last.get(tid)
            if previous is not None and previous[0] == digest and previous[1] is process:
                now[tid] = previous
                continue
            try:
                name, state, _, utime, stime, _, start = parse_stat(data)
            except (ValueError, IndexError):
                continue
            thread = ProcSample(
                pid=tid, ppid=pid, state=state, name=name, cmdline=process.cmdline, user=process.user,
                cgroup=process.cgroup, cpu_user_ns=utime, cpu_system_ns=stime, rss_bytes=process.rss_bytes,
                num_threads=process.num_threads, start_time_ns=start, thread_of=pid,
            )
            now[tid] = (digest, process, thread)
        self._task_last = now
        for tid in [tid for tid in self._task_fds if tid not in now]:
            self._forget(tid)
        return tuple(thread for _, _, thread in now.values())

    def _since_boot_ns(self) -> int | None:
        # /proc/uptime is the clock of the start times in /proc/PID/stat.
        text = read_text(f"{self._proc}/uptime")
        try:
            return int(float(text.split()[0]) * 1e9) if text else None
        except (ValueError, IndexError):
            return None

    def _parse(self, pid: int, entry: str, stat: bytes, statm: bytes, previous: ProcSample | None) -> ProcSample | None:
        name, state, ppid, utime, stime, threads, start = parse_stat(stat)
        rss = parse_statm_rss(statm)
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


def _raise_fd_limit() -> int:
    """Raise the soft descriptor limit towards the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_FDS if hard == resource.RLIM_INFINITY else min(hard, WANTED_FDS)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return WANTED_FDS if soft == resource.RLIM_INFINITY else soft


# --- the view ---------------------------------------------------------------------


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
    idle = _idle_views
    for p in curr:
        old = before.get(p.pid)
        cpu: float | None
        if old is p:
            kept = idle.get(p.pid)
            if kept is not None and kept[0] is p:
                views.append(kept[1])
                continue
            view = process_view(p, 0.0)
            idle[p.pid] = (p, view)
            views.append(view)
            continue
        if old is None and born_after is not None and p.start_time_ns < born_after:
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
    if len(idle) > 2 * len(curr) + 64:
        # pids gone since: keep only the latest sample's
        for pid in idle.keys() - {p.pid for p in curr}:
            idle.pop(pid, None)
    return tuple(views)


# pid -> (a sample that did not change over an interval, its view at 0 % CPU).
# Most processes are idle: their view is the same object tick after tick,
# not one made again (its command line and cgroup formatted) for each.
_idle_views: dict[int, tuple[ProcSample, ProcessView]] = {}


def cpu_sort_key(view: ProcessView) -> float:
    """Busiest first when sorted descending; unknown rates sort below idle."""
    return -1.0 if view.cpu_percent is None else view.cpu_percent


PROCESSES: ProbeSpec[ProcessesSample, ProcessesView] = ProbeSpec(ProcessProbe.name, ProcessesSample, ProcessesView, derive_processes, ProcessProbe)
