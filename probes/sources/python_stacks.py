"""The "python" probe: a Python process's own stacks (function, file:line), read from its memory.

The eBPF profile of a CPython process names interpreter functions
(`_PyEval_EvalFrameDefault`, `PyObject_Free`), never the Python functions
they run: on a program spending 70 % and 30 % in two functions it could not
tell them apart. Python 3.12+ can write a perf map of trampolines
(`-X perf`, PYTHONPERFSUPPORT=1) that the native profile reads already, but
only when the process was started with it, and Debian 12's 3.11 has none.

So this probe reads the interpreter's own frames from the process's memory.
For 3.11 and newer it does so itself (probes/host/cpython_frames.py), on a
thread of its own at the rate asked: each sample reads the state of each
thread (/proc/PID/task/TID/stat: only running threads are counted, as
py-spy's record leaves idle ones out) and the running threads' frames,
without stopping the process; `sample()` takes what was counted since the
last one, and reads the thread list again. py-spy (PyPI, a dependency of
orac), which knows the layouts of CPython 2.7 to 3.13, reads older
versions, the native frames (below) and threading's thread names. Measured
with benchmarks/python_stacks (CPU-bound 3.11 loop, 99 Hz, 15 s windows,
the development VM): the probe with py-spy cost 3.5 to 5.3 % of a CPU (its
2 s chunks restarting and a dump each second); with its own reader 1.5 to
2.1 %, beside py-spy's bare record at 1.5 to 1.9 % in the same run. Most of
it is waking a thread 99 times a second: a Python thread doing nothing but
that used 0.6 to 0.8 % there, and the first reads after each wake-up take
ten times what they take warm.

Fed by the profile: in a drill-down as root the eBPF profile reads each
sampled thread's Python frames in the kernel (profile.bpf.c); while it
does (`profile`), this probe takes its stacks from those samples
(`sampled_by` "ebpf") and its thread samples nothing, so the Python tab
costs next to nothing over the native profile (+0.13 and +0.27 % of a CPU
in benchmarks/python_stacks). Only threads on a CPU are sampled there,
where the own reader also counts runnable ones waiting for a CPU.

Chunks (py-spy only): py-spy writes its folded stacks ("raw" format) only
when a recording ends, so the thread runs it in chunks of CHUNK_S seconds
back to back and `sample()` takes the chunks that ended since the previous
tick: Python stacks then lag the native profile by up to a chunk. Starting
py-spy (it reads the interpreter's symbols) is time in which nothing is
sampled: a 2 s chunk took 1.99 to 2.10 s of wall time, a 1 s one 1.34 s on
the loaded VM. The shares are of the time sampled, which is all they
claim, and `sampled_ns` says how much time was sampled.

Native frames: with `native` set (the drill-down's `n`), chunks run
`py-spy --native` instead, whose stacks interleave the native frames
(`deflate (libz.so.1.2.13)`) with the Python ones, a C extension's own code
under its Python caller. py-spy can unwind native stacks only with the
threads stopped, so it stops the process for each sample: off unless asked.
Measured with a CPU-bound 3.11 loop at 99 Hz (three 5 s rounds, the
development VM): py-spy 6.3 to 6.8 % of a CPU, against 2.8 % without; the
loop's rate varied by 25 % between untraced windows there, too much to
resolve what the stops cost it.

Where threads wait: each sample reads the frames of the threads not running
then, with the line each is on (orac's reader), or takes a `py-spy dump
--nonblocking --json` (older versions), started at one sample and read at
the next so the collector never waits for it (6.3 ms of CPU a dump). It is
the Python line a thread blocked in `recv` or `queue.get` waits on, one
moment a tick: a thread that waits in several places shows the one it was
in then. With orac's reader the dump is taken only for threading's names,
when threads come or go and every NAMES_S seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.cpython_frames import CPythonProcess, FramesUnreadable, python_version
from probes.host.procfs import PROC
from probes.sources.profile import FunctionShare, HotStack, ProfileProbe, process_start_ticks

DEFAULT_RATE_HZ = 99
# Long enough that py-spy's start (0.1 to 0.3 s measured) leaves most of the time
# sampled, short enough that the view follows the process within a tick or two.
CHUNK_S = 2
# The first version orac's own reader knows (probes/host/cpython_frames.py); py-spy reads older ones.
READER_SINCE = (3, 11)
# Where orac's reader takes the stacks, threading's names come from a py-spy dump when threads
# come or go, and this often besides (a thread renamed after it started).
NAMES_S = 60.0
# While the eBPF profile feeds the stacks, the sampling thread looks this often whether it still does.
FED_CHECK_S = 0.5
# Code objects are read again this often (a freed one's address may hold another by then).
CODE_CACHE_S = 10.0
# A dump takes milliseconds; one still running after this is stuck and is killed.
DUMP_TIMEOUT_S = 5.0
PERF_MAP_HINT = "start it with PYTHONPERFSUPPORT=1 or -X perf for Python frames in the native profile"

# "thread (1234): name" (or "thread (1234)" for a thread without one): py-spy's root frame with --threads.
_THREAD_FRAME = re.compile(r"thread \((\d+)\)(?:: (.*))?")
# With --native, code without a symbol: "0x7ff0c23c7f77 (libz.so.1.2.13)", an address of this run only.
_NATIVE_ADDRESS = re.compile(r"0x[0-9a-f]+ \((?P<module>[^()]+)\)")
_SUMMARY = re.compile(r"Samples: (\d+) Errors: (\d+)")


@dataclass(frozen=True, slots=True)
class PythonStack:
    """How often one thread was sampled in one Python stack."""

    tid: int
    samples: int
    frames: tuple[str, ...]  # "function (file:line of its def)", outermost first


@dataclass(frozen=True, slots=True)
class WaitingThread:
    """A thread that was not running Python code at py-spy's last dump, and where it waited."""

    tid: int
    frames: tuple[str, ...]  # "function (file:line it waits on)", outermost first


@dataclass(frozen=True, slots=True)
class PythonStacksSample:
    """The Python stacks of the py-spy chunks that ended since the previous sample."""

    target_pid: int
    # "3.11", from the executable's or the mapped libpython's name
    python_version: str
    stacks: tuple[PythonStack, ...]  # most samples first
    thread_names: dict[int, str]  # tid -> Python thread name (threading's), as py-spy read it
    samples: int  # samples of threads running Python code (idle ones are left out)
    errors: int  # samples py-spy failed to take
    sampled_ns: int  # time the chunks covered
    rate_hz: int
    exited: bool
    # why the chunks gave no stacks (py-spy's own words), "" when they did
    problem: str
    # for 3.12+ without a perf map: how to get Python frames in the native profile too
    note: str
    # the threads py-spy's latest dump found not running, and where they waited
    waiting: tuple[WaitingThread, ...] = ()
    # the stacks hold native frames too ("deflate (libz.so.1.2.13)"): py-spy --native, which pauses the process
    native: bool = False
    # who read the frames: "ebpf" (the eBPF profile's samples, the interpreter's memory read in the
    # kernel), "orac" (its own reader of that memory, 3.11+) or "py-spy"
    sampled_by: str = "py-spy"


def perf_map_note(pid: int, version: str) -> str:
    """The hint for a 3.12+ process that writes no perf map; "" where there is one or the version has none."""
    major, minor = (int(part) for part in version.split("."))
    if (major, minor) < (3, 12) or os.path.exists(f"/tmp/perf-{pid}.map"):
        return ""
    return PERF_MAP_HINT


def py_spy_path() -> str | None:
    """py-spy beside this Python (orac's venv) first, then on PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which("py-spy", path=os.pathsep.join((here, os.environ.get("PATH", os.defpath))))


def parse_raw(text: str) -> tuple[list[PythonStack], dict[int, str]]:
    """py-spy's raw (folded) output, recorded with --threads, as stacks and thread names."""
    stacks: list[PythonStack] = []
    names: dict[int, str] = {}
    for line in text.splitlines():
        folded, _, count = line.rpartition(" ")
        if not folded or not count.isdigit():
            continue
        frames = folded.split(";")
        tid = 0
        thread = _THREAD_FRAME.fullmatch(frames[0])
        if thread is not None:
            tid = int(thread[1])
            if thread[2]:
                names[tid] = thread[2]
            frames = frames[1:]
        stacks.append(PythonStack(tid, int(count), tuple(_native_name(frame) for frame in frames)))
    return stacks, names


def _native_name(frame: str) -> str:
    """A native frame without a symbol under its file's name, as the native profile counts it."""
    match = _NATIVE_ADDRESS.fullmatch(frame)
    return f"{match['module']} (no symbol)" if match else frame


def parse_dump(text: str) -> tuple[list[WaitingThread], dict[int, str]]:
    """`py-spy dump --json`: the threads it found not running (their stacks) and every thread's name.

    Text that is not a dump (py-spy failed, or wrote half of it) gives none.
    """
    try:
        threads = json.loads(text)
    except ValueError:
        return [], {}
    waiting: list[WaitingThread] = []
    names: dict[int, str] = {}
    if not isinstance(threads, list):
        return [], {}
    for thread in threads:
        try:
            tid = int(thread["os_thread_id"])
            if thread.get("thread_name"):
                names[tid] = str(thread["thread_name"])
            if thread["active"]:
                continue
            frames = tuple(
                f"{f['name']} ({f.get('short_filename') or f['filename']}:{f['line']})" for f in reversed(thread["frames"])
            )
        except (KeyError, TypeError, ValueError):
            continue
        if frames:
            waiting.append(WaitingThread(tid, frames))
    waiting.sort(key=lambda w: w.tid)
    return waiting, names


@dataclass(slots=True)
class _Live:
    """What orac's reader has counted since the last sample()."""

    begin_ns: int
    counts: defaultdict[tuple[int, tuple[str, ...]], int] = field(default_factory=lambda: defaultdict(int))
    samples: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class _Chunk:
    stacks: list[PythonStack]
    names: dict[int, str]
    native: bool
    samples: int
    errors: int
    sampled_ns: int
    problem: str


class PythonStacksProbe:
    """Samples one Python process's stacks on a thread of its own: orac's reader for 3.11+, else py-spy in chunks.

    Args:
        target_pid: the process (all its threads).
        rate_hz: samples per second.
        profile: the drill-down's eBPF profile of the same process: while it
            reads the Python frames at its own samples (root, CPython 3.11+),
            this probe takes its stacks from there and samples none itself.
    """

    name: ClassVar[str] = "python"

    def __init__(self, target_pid: int, rate_hz: int = DEFAULT_RATE_HZ, profile: ProfileProbe | None = None) -> None:
        if target_pid <= 0:
            raise ValueError(f"target_pid must be a process id, not {target_pid}")
        self.target_pid = target_pid
        self.rate_hz = rate_hz
        self._profile = profile
        # py-spy --native from the next chunk on (set by the drill-down's key)
        self.native = False
        self._native_chunk = False  # the chunk running now was started with --native
        self._version = ""
        self._note = ""
        self._start_ticks: int | None = None
        self._py_spy = ""
        # orac's own reader of the interpreter (3.11+), None where py-spy samples instead
        self._reader: CPythonProcess | None = None
        self._reader_lock = threading.Lock()
        self._task_stats: dict[int, int] = {}  # tid -> open /proc/PID/task/TID/stat
        # (tid, thread state address) per thread, read again at each sample(): new threads count from then
        self._threads: list[tuple[int, int]] = []
        self._code_read = 0.0
        self._live = _Live(time.monotonic_ns())
        self._chunks: list[_Chunk] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._exited = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._dump_child: subprocess.Popen[bytes] | None = None
        self._dump_started = 0.0
        self._waiting: tuple[WaitingThread, ...] = ()
        self._dump_names: dict[int, str] = {}
        self._named_tids: frozenset[int] = frozenset()  # the threads there were when the last dump started
        self._thread: threading.Thread | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        self._start_ticks = process_start_ticks(self.target_pid)
        if self._start_ticks is None:
            raise ProbeUnavailable(f"process {self.target_pid} is not running")
        try:
            version = python_version(self.target_pid)
        except PermissionError:
            raise ProbeUnavailable(
                f"cannot tell whether process {self.target_pid} is Python: its executable is not readable by this user",
                "run orac as root or as the process's user",
            ) from None
        if version is None:
            raise ProbeUnavailable(
                f"process {self.target_pid} is not Python: neither its executable nor a mapped library "
                "is named python3.N or libpython3.N",
                absent=True,
            )
        major, minor = (int(part) for part in version.split("."))
        unreadable = ""
        if (major, minor) >= READER_SINCE:
            try:
                self._reader = CPythonProcess(self.target_pid, (major, minor))
                self._threads = self._reader.threads()
            except (FramesUnreadable, OSError) as e:
                unreadable = f"cannot read the frames of Python process {self.target_pid}: {e}"
        py_spy = py_spy_path()
        if py_spy is None and self._reader is None:
            if unreadable:
                raise ProbeUnavailable(unreadable)
            raise ProbeUnavailable("py-spy is not installed: no Python frames", "pip install py-spy")
        self._version, self._py_spy = version, py_spy or ""
        # the perf map's hint only where orac cannot put Python frames in the native profile itself
        self._note = perf_map_note(self.target_pid, version) if self._reader is None else ""
        self._stopping.clear()
        self._exited.clear()
        # py-spy writes its output where we say; orac often runs as root, so in a directory of its own (0700).
        self._dir = tempfile.TemporaryDirectory(prefix="orac-pyspy-")
        self._live = _Live(time.monotonic_ns())
        self._thread = threading.Thread(target=self._run, name=f"orac-python-{self.target_pid}", daemon=True)
        self._thread.start()
        if self._reader is not None:
            self._dump()  # threading's names, read by the first sample

    def _run(self) -> None:
        assert self._dir is not None
        out = os.path.join(self._dir.name, "raw.txt")
        while not self._stopping.is_set():
            if process_start_ticks(self.target_pid) != self._start_ticks:
                self._exited.set()
                return
            if self._reader is not None and not (self.native and self._py_spy):
                self._read_frames()
                continue
            chunk = self._chunk(out)
            with self._lock:
                self._chunks.append(chunk)
            if chunk.problem and not chunk.samples:
                # py-spy could not read the process (gone, no permission): once a
                # chunk, not in a tight loop.
                self._stopping.wait(CHUNK_S)

    def _read_frames(self) -> None:
        """Sample with orac's reader at rate_hz for about a second, or until stopped or asked for native frames."""
        assert self._reader is not None
        period = 1 / self.rate_hz
        due = time.monotonic()
        end = due + 1.0
        while due < end and not self._stopping.is_set() and not (self.native and self._py_spy):
            if self._fed():
                # the profile reads the stacks in the kernel: nothing to wake up for at rate_hz
                time.sleep(FED_CHECK_S)
                due = time.monotonic()
                continue
            counts: dict[tuple[int, tuple[str, ...]], int] = {}
            errors = 0
            with self._reader_lock:
                for tid, tstate in self._threads:
                    if not self._running(tid):
                        continue
                    try:
                        frames = self._reader.stack(tstate)
                    except OSError:
                        errors += 1
                        continue
                    if frames:
                        counts[tid, frames] = counts.get((tid, frames), 0) + 1
            with self._lock:
                live = self._live
                for key, n in counts.items():
                    live.counts[key] += n
                live.samples += sum(counts.values())
                live.errors += errors
            due += period
            # behind (the box held this thread back): go on from now, not in a burst
            due = max(due, time.monotonic())
            # time.sleep, not the stop event's wait: at 99 Hz waking from it cost 1.06 % of a CPU
            # against 0.79 % (the development VM); stop() waits a period at most.
            time.sleep(max(0.0, due - time.monotonic()))

    def _fed(self) -> bool:
        """Whether the stacks come from the eBPF profile's samples now."""
        return self._profile is not None and not self.native and self._profile.reads_python

    def _running(self, tid: int) -> bool:
        """Whether the thread is running or runnable (state R): the threads py-spy's record counts."""
        fd = self._task_stats.get(tid)
        try:
            if fd is None:
                fd = self._task_stats[tid] = os.open(f"{PROC}/{self.target_pid}/task/{tid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            stat = os.pread(fd, 512, 0)
        except OSError:
            if fd is not None:
                os.close(self._task_stats.pop(tid))
            return False
        return stat[stat.rfind(b")") + 2: stat.rfind(b")") + 3] == b"R"

    def _waiting_threads(self) -> tuple[WaitingThread, ...]:
        """Where each thread not running now waits, with the line it is on; the code objects read again now and then."""
        assert self._reader is not None
        waiting = []
        with self._reader_lock:
            now = time.monotonic()
            if now - self._code_read >= CODE_CACHE_S:
                self._reader.forget_code()
                self._code_read = now
            try:
                threads = self._threads = self._reader.threads()
            except OSError:
                return ()
            for tid, tstate in threads:
                if self._running(tid):
                    continue
                try:
                    frames = self._reader.stack(tstate, lines=True)
                except OSError:
                    continue
                if frames:
                    waiting.append(WaitingThread(tid, frames))
            alive = {tid for tid, _ in threads}
            for tid in [t for t in self._task_stats if t not in alive]:
                os.close(self._task_stats.pop(tid))
        return tuple(sorted(waiting, key=lambda w: w.tid))

    def _chunk(self, out: str) -> _Chunk:
        begin = time.monotonic_ns()
        native = self._native_chunk = self.native
        try:
            child = self._child = subprocess.Popen(
                [
                    # --native unwinds the native stack too, which py-spy can do only with the threads stopped
                    self._py_spy, "record", "--format", "raw", "--native" if native else "--nonblocking",
                    "--threads", "--function",
                    "--rate", str(self.rate_hz), "--duration", str(CHUNK_S),
                    "--pid", str(self.target_pid), "--output", out,
                ],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            if self._stopping.is_set():
                # stop() came between the loop's check and this start: it did not see this child.
                child.terminate()
            said = child.communicate()[0].decode("utf-8", "replace")
        except OSError as e:
            return _Chunk([], {}, native, 0, 0, 0, f"py-spy could not run: {e}")
        finally:
            self._native_chunk = False
        sampled_ns = time.monotonic_ns() - begin
        try:
            with open(out, encoding="utf-8", errors="replace") as f:
                text = f.read()
            os.unlink(out)
        except OSError:
            text = ""
        stacks, names = parse_raw(text)
        summary = _SUMMARY.search(said)
        samples = sum(s.samples for s in stacks)
        errors = int(summary[2]) if summary else 0
        problem = ""
        if child.returncode != 0:
            lines = [line.strip() for line in said.splitlines() if line.strip()]
            problem = lines[-1] if lines else f"py-spy exited with status {child.returncode}"
        return _Chunk(stacks, names, native, samples, errors, sampled_ns, problem)

    def _dump(self) -> None:
        """Read the dump started at an earlier sample, if it ended, and start the next one when due."""
        assert self._dir is not None
        out = os.path.join(self._dir.name, "dump.json")
        child = self._dump_child
        if child is not None:
            if child.poll() is None:
                if time.monotonic() - self._dump_started < DUMP_TIMEOUT_S:
                    return  # still reading (a slow box): its result comes next tick
                # stuck (a process py-spy cannot read): what it waited at is no longer known
                child.kill()
                child.wait()
                self._waiting = ()
                self._dump_child = None
                return
            try:
                with open(out, encoding="utf-8", errors="replace") as f:
                    waiting, names = parse_dump(f.read())
            except OSError:
                waiting, names = [], {}
            if self._reader is None:
                self._waiting = tuple(waiting)
            self._dump_names = names
            self._dump_child = None
        if not self._py_spy or self._exited.is_set() or self.native or self._native_chunk:
            # py-spy --native stops the threads to sample them: a dump then would
            # see a running thread stopped, and call it waiting.
            if not self._exited.is_set():
                self._waiting = ()
            return
        tids = frozenset(tid for tid, _ in self._threads)
        if self._reader is not None and tids == self._named_tids and time.monotonic() - self._dump_started < NAMES_S:
            return  # orac's reader says where threads wait; the dump is only for names, new threads' first
        self._named_tids = tids
        try:
            self._dump_started = time.monotonic()
            with open(out, "wb") as f:
                self._dump_child = subprocess.Popen(
                    [self._py_spy, "dump", "--nonblocking", "--json", "--pid", str(self.target_pid)],
                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL,
                )
        except OSError:
            self._dump_child = None

    def sample(self) -> PythonStacksSample:
        self._dump()
        reading = self._reader is not None and not self.native and not self._native_chunk
        if reading and not self._exited.is_set():
            self._waiting = self._waiting_threads()
        taken = self._profile.take_python_stacks() if self._fed() and self._profile is not None else None
        now = time.monotonic_ns()
        with self._lock:
            chunks, self._chunks = self._chunks, []
            live, self._live = self._live, _Live(now)
        if taken is not None:
            fed: dict[tuple[int, tuple[str, ...]], int] = defaultdict(int)
            for tid, frames, n in taken[0]:
                fed[tid, frames] += n
            stacks_fed = [PythonStack(tid, n, frames) for (tid, frames), n in fed.items()]
            chunks.append(_Chunk(stacks_fed, {}, False, sum(fed.values()), 0, taken[1], ""))
        # the reader's own count: while fed, only what it took before the profile began
        if live.samples or live.errors or (reading and taken is None):
            counted = [PythonStack(tid, n, frames) for (tid, frames), n in live.counts.items()]
            failed = f"its frames could not be read ({live.errors} samples failed)" if live.errors and not live.samples else ""
            chunks.append(_Chunk(counted, {}, False, live.samples, live.errors, now - live.begin_ns, failed))
        merged: dict[tuple[int, tuple[str, ...]], int] = defaultdict(int)
        names: dict[int, str] = dict(self._dump_names)
        for chunk in chunks:
            for stack in chunk.stacks:
                merged[stack.tid, stack.frames] += stack.samples
            names.update(chunk.names)
        stacks = tuple(
            sorted(
                (PythonStack(tid, n, frames) for (tid, frames), n in merged.items()),
                key=lambda s: (-s.samples, s.tid, s.frames),
            )
        )
        problems = [c.problem for c in chunks if c.problem]
        return PythonStacksSample(
            target_pid=self.target_pid,
            python_version=self._version,
            stacks=stacks,
            thread_names=names,
            samples=sum(c.samples for c in chunks),
            errors=sum(c.errors for c in chunks),
            sampled_ns=sum(c.sampled_ns for c in chunks),
            rate_hz=self.rate_hz,
            exited=self._exited.is_set(),
            problem=problems[-1] if problems and not stacks else "",
            note=self._note,
            waiting=self._waiting,
            native=any(c.native for c in chunks),
            sampled_by="ebpf" if taken is not None else "orac" if reading else "py-spy",
        )

    def stop(self) -> None:
        self._stopping.set()
        for child in (self._child, self._dump_child):
            if child is not None and child.poll() is None:
                child.terminate()
        if self._dump_child is not None:
            self._dump_child.wait()
            self._dump_child = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._reader_lock:
            for fd in self._task_stats.values():
                os.close(fd)
            self._task_stats.clear()
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PythonStacksView:
    top_self: tuple[FunctionShare, ...]  # most self samples first
    top_total: tuple[FunctionShare, ...]  # the same functions, most total samples first
    stacks: tuple[HotStack, ...]  # most samples first, threads merged
    thread_names: dict[int, str]
    samples: int
    errors: int
    sampled_s: float
    rate_hz: int
    python_version: str
    target_pid: int
    exited: bool
    problem: str
    note: str
    waiting: tuple[WaitingThread, ...] = ()
    native: bool = False
    sampled_by: str = "py-spy"


def derive_python_stacks(prev: PythonStacksSample, curr: PythonStacksSample, dt_s: float) -> PythonStacksView:
    """Top Python functions (self: the innermost frame; total: anywhere on the stack, once) and hottest stacks.

    Percentages are of the samples of threads running Python code in the
    chunks that ended in the interval, as py-spy's own "%Own"/"%Total".
    """
    total = curr.samples
    self_n: dict[str, int] = defaultdict(int)
    total_n: dict[str, int] = defaultdict(int)
    per_stack: dict[tuple[str, ...], int] = defaultdict(int)
    for stack in curr.stacks:
        if stack.frames:
            self_n[stack.frames[-1]] += stack.samples
        for name in set(stack.frames):
            total_n[name] += stack.samples
        per_stack[stack.frames] += stack.samples

    def percent(n: int) -> float:
        return n / total * 100 if total else 0.0

    functions = [FunctionShare(name, self_n[name], n, percent(self_n[name]), percent(n)) for name, n in total_n.items()]
    return PythonStacksView(
        top_self=tuple(sorted(functions, key=lambda f: (-f.self_samples, -f.total_samples, f.name))),
        top_total=tuple(sorted(functions, key=lambda f: (-f.total_samples, -f.self_samples, f.name))),
        stacks=tuple(
            HotStack(frames, n, percent(n)) for frames, n in sorted(per_stack.items(), key=lambda i: (-i[1], i[0]))
        ),
        thread_names=curr.thread_names,
        samples=total,
        errors=curr.errors,
        sampled_s=curr.sampled_ns / 1e9,
        rate_hz=curr.rate_hz,
        python_version=curr.python_version,
        target_pid=curr.target_pid,
        exited=curr.exited,
        problem=curr.problem,
        note=curr.note,
        waiting=curr.waiting,
        native=curr.native,
        sampled_by=curr.sampled_by,
    )


# Started by a drill-down for one Python process, never on its own (no `make`).
PYTHON_STACKS: ProbeSpec[PythonStacksSample, PythonStacksView] = ProbeSpec(
    PythonStacksProbe.name, PythonStacksSample, PythonStacksView, derive_python_stacks
)
