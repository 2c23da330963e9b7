"""The "profile" probe: an on-CPU profile of one process, from eBPF perf event sampling.

The kernel side (profile.bpf.c) samples the user and kernel stacks of the
target process's threads on a CPU clock perf event, `frequency_hz` times a
second on every CPU, and counts samples per (thread, user stack, kernel
stack) in the kernel. Each `sample()` moves it on to a new generation and
takes out the old one's counts and stacks, so a sample holds the samples
*of the interval* since the previous one, each in exactly one sample.
Stacks are turned into function names at sample time (the process may be
gone later, and a recording is replayed elsewhere); thread names come from
the kernel with the samples, so the drill-down's threads table still names
a thread that exited within the tick.

Python frames: for a CPython 3.11+ target the kernel side also reads the
sampled thread's chain of interpreter frames, at the same moment as its
native stack (probes/ebpf/python_frames.py), and each stack then shows its
Python frames ("hot_f (app.py:12)", the line of the def, as the Python tab)
where the interpreter's frames were.

The CPU clock is a timer interrupt, not an NMI (a VM often has no PMU for
one): a sample due while interrupts are disabled is taken when they are
enabled again. With other processes switching on and off the target's CPU at
a high rate, some of its samples land in the kernel's interrupt return path
(irqentry_exit_to_user_mode) and a few more are counted than its CPU time.

`derive_profile` turns a sample into top functions (self and total %) and
the hottest stacks; `FoldedStacks` sums samples over the
time a drill-down is open and writes them as folded stacks for
flamegraph.pl and speedscope.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.ebpf.bpf import BpfMap
from probes.ebpf.loader import PERF_COUNT_SW_CPU_CLOCK, PERF_TYPE_SOFTWARE, PerfEvent
from probes.ebpf.maps import MapDrain
from probes.ebpf.probe import EbpfProbe
from probes.ebpf.programs import BpfProgram, LoadedProgram, build_program
from probes.ebpf.python_frames import DEFINES as PYTHON_DEFINES
from probes.ebpf.python_frames import PythonStacks, with_python_frames
from probes.host.procfs import PROC, read_bytes, read_text
from probes.symbols.elf import UNKNOWN
from probes.symbols.kallsyms import prepared_kernel_symbols
from probes.symbols.symbolizer import Symbolizer, cut_short, folded

SOURCE = "profile.bpf.c"
FUNCTION = "profile_sample"
# 99 rather than 100 Hz, like bcc's profile and perf's habit: sampling in
# lockstep with work driven by a 100 Hz timer would see only one phase of it.
DEFAULT_FREQUENCY_HZ = 99
# What --profile-hz accepts; the kernel may allow less (kernel.perf_event_max_sample_rate).
MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ = 1, 10_000
MAX_SAMPLE_RATE_FILE = "/proc/sys/kernel/perf_event_max_sample_rate"

# In the order of profile.bpf.c's enum lost_reason; "stack_missing" is user
# space's own (a stack id whose stack was not in its map: never expected).
KERNEL_LOST_REASONS = (
    "count_map_full",
    "user_stack_collision",
    "kernel_stack_collision",
    "stack_map_full",
    "stack_other",
    "python_stack_map_full",
    "python_read",
)
# "python_unnamed": user space's own, a sample's Python frames whose code objects it could not read
LOST_REASONS = (*KERNEL_LOST_REASONS, "stack_missing", "python_unnamed")

# Keys are distinct (thread, user stack, kernel stack) triples of one tick:
# at most the tick's samples, 99 per busy CPU-second at the default rate.
# 16384 keys take about 1.5 MiB of kernel memory.
COUNT_ENTRIES = 16384
# Two stack maps (one per generation parity, see profile.bpf.c) of 8192
# stacks of 127 frames, perf's default depth limit (kernel.perf_event_max_stack):
# 2 x 8.5 MiB. Deep stacks matter here: a frame cut off at the root end is
# missing from every total %. A map only ever holds one tick's stacks, so
# its hash buckets rarely collide; collisions are counted in `lost`.
STACK_ENTRIES = 8192
STACK_DEPTH = 127
# Python stacks kept for the Python tab between its takes, at most (one is taken every tick).
_PYTHON_TAKEN_MAX = 100_000

# bpf_get_stackid's errors, as the kernel side stores them in a stack id (-errno).
_EFAULT, _EEXIST, _ENOMEM, _ENOENT = 14, 17, 12, 2
_STACK_ERRORS = {
    _EEXIST: "collision",
    _ENOMEM: "map full",
    # user space's own: an id whose stack was not in its map (never expected)
    _ENOENT: "missing",
}

# The structs of profile.bpf.c, native byte order. The count key ends with its generation.
_COUNT_KEY = struct.Struct("=QIiiI")  # Python stack hash, tid, ustack, kstack, gen
_COUNT_VALUE = struct.Struct("=Q16s")  # samples, comm
_STACK_ID = struct.Struct("=i")
_FRAMES = struct.Struct(f"={STACK_DEPTH}Q")


@dataclass(frozen=True, slots=True)
class ProfileStack:
    """How often one thread was sampled in one stack during the interval."""

    tid: int
    samples: int
    # Function names, outermost first; the kernel's last, ending where the
    # thread was. A stack that could not be taken is one "[... lost: ...]" frame.
    user_frames: tuple[str, ...]
    kernel_frames: tuple[str, ...]
    # how many of the user frames, from the root, are Python's (read from the interpreter, not unwound)
    python_frames: int = 0

    @property
    def frames(self) -> tuple[str, ...]:
        """The whole stack, root first: user frames, then kernel frames."""
        return self.user_frames + self.kernel_frames


@dataclass(frozen=True, slots=True)
class ProfileSample:
    """Everything the probe sampled of its process since the previous sample."""

    stacks: tuple[ProfileStack, ...]  # most samples first
    # tid -> thread name (comm), as the kernel had it at the thread's sample
    thread_names: dict[int, str]
    # samples of the process in the interval, those lost without a stack included
    samples: int
    # reason (LOST_REASONS) -> stacks or samples lost in the interval; see profile.bpf.c
    lost: dict[str, int]
    frequency_hz: int
    target_pid: int
    # The process has exited: this sample holds its last samples, and every
    # later one is empty (the probe stops tracing; a new process given the
    # same pid is not this one).
    exited: bool
    # time.monotonic_ns() as new samples were switched to the next
    # generation, where this sample's interval ends: None in recordings made
    # before orac kept it
    mono_ns: int | None = None
    # why a Python process's stacks have no Python frames ("" where they have, or it is not Python)
    python_note: str = ""


def profile_program(frequency_hz: int = DEFAULT_FREQUENCY_HZ) -> BpfProgram:
    """The probe's BPF program, its options and its perf event; pure apart from reading the source file.

    The process is not among them: it goes in the program's `target` map.
    """
    return build_program(
        SOURCE,
        {
            "COUNT_ENTRIES": COUNT_ENTRIES,
            "STACK_ENTRIES": STACK_ENTRIES,
            "STACK_DEPTH": STACK_DEPTH,
            **PYTHON_DEFINES,
        },
        perf_events=(PerfEvent(FUNCTION, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, sample_freq=frequency_hz),),
    )


class CountEntry(NamedTuple):
    """One (thread, user stack, kernel stack) entry of the counts map."""

    tid: int
    ustack: int  # stack ids, or -errno why there is none
    kstack: int
    samples: int
    comm: str  # the thread's name
    python: int = 0  # the hash of its Python frames in py_stacks; 0: none


def parse_counts(keys: bytes, values: bytes, n: int) -> list[CountEntry]:
    """The counts map's entries with samples."""
    out = []
    for i in range(n):
        python, tid, ustack, kstack, _ = _COUNT_KEY.unpack_from(keys, i * _COUNT_KEY.size)
        samples, comm = _COUNT_VALUE.unpack_from(values, i * _COUNT_VALUE.size)
        if samples:
            name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
            out.append(CountEntry(tid, ustack, kstack, samples, name, python))
    return out


_STACK_LOST = " stack lost: "


def missing_stack_frame(kind: str, stack_id: int) -> str:
    """The one frame that stands for a stack that was not taken: `kind` "user" or "kernel", the id's -errno."""
    reason = _STACK_ERRORS.get(-stack_id, f"error {-stack_id}")
    return f"[{kind}{_STACK_LOST}{reason}]"


def process_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), or None once it has exited.

    A zombie (exited, not yet reaped by its parent) has exited, unless only
    its main thread has and other threads still run.
    """
    stat = read_bytes(f"{PROC}/{pid}/stat")
    if stat is None:
        return None
    # After the command name: the state (field 3 of proc(5)), ..., the start time (field 22).
    fields = stat.rpartition(b")")[2].split()
    if len(fields) < 20:
        return None
    if fields[0] in (b"Z", b"X"):
        try:
            if os.listdir(f"{PROC}/{pid}/task") == [str(pid)]:
                return None
        except OSError:
            return None
    return int(fields[19])


class ProfileProbe(EbpfProbe):
    """Samples one process's on-CPU stacks with eBPF.

    Args:
        target_pid: the process (all its threads). Others' samples end in
            the kernel after a compare.
        frequency_hz: samples per second on each CPU; a thread busy all
            the time gets this many samples per second.
    """

    name: ClassVar[str] = "profile"
    kernel_lost_reasons: ClassVar[tuple[str, ...]] = KERNEL_LOST_REASONS
    target_pid: int

    def __init__(self, target_pid: int, frequency_hz: int = DEFAULT_FREQUENCY_HZ) -> None:
        if target_pid <= 0:
            raise ValueError(f"target_pid must be a process id, not {target_pid}")
        if frequency_hz <= 0:
            raise ValueError(f"frequency_hz must be positive, not {frequency_hz}")
        super().__init__(target_pid)
        self.frequency_hz = frequency_hz
        self._exited = False
        self._start_ticks: int | None = None
        self._symbolizer = Symbolizer(kernel=prepared_kernel_symbols())
        self._python: PythonStacks | None = None
        # (tid, Python frames, samples) of the ticks since take_python_stacks, and the time they cover
        self._python_taken: list[tuple[int, tuple[str, ...], int]] = []
        self._python_taken_ns = 0
        self._last_mono_ns: int | None = None

    def program(self) -> BpfProgram:
        return profile_program(self.frequency_hz)

    def check(self) -> None:
        limit = (read_text(MAX_SAMPLE_RATE_FILE) or "").strip()
        if limit.isdigit() and self.frequency_hz > int(limit):
            raise ProbeUnavailable(
                f"sampling at {self.frequency_hz} Hz is above the kernel's limit of {limit} Hz "
                "(kernel.perf_event_max_sample_rate)",
                f"choose {limit} Hz or less",
            )
        self._start_ticks = process_start_ticks(self.target_pid)
        if self._start_ticks is None:
            raise ProbeUnavailable(f"process {self.target_pid} is not running")

    def open_maps(self, bpf: LoadedProgram) -> None:
        self._counts = MapDrain(bpf["counts"])
        self._stack_tables = (bpf["stacks0"], bpf["stacks1"])
        self._python = PythonStacks(self.target_pid, bpf)
        self._exited = False


    def sample(self) -> ProfileSample:
        if not self.running and self._exited:
            return self._sample((), {}, 0, dict.fromkeys(LOST_REASONS, 0), time.monotonic_ns())
        self.require_running()
        # Asked before the maps are read: once the process is gone, this read
        # takes its last samples.
        exited = process_start_ticks(self.target_pid) != self._start_ticks

        # New samples go to the next generation and the other stack map; once
        # programs still counting into this one are done, nobody writes its
        # counts or its stack map.
        mono_ns = time.monotonic_ns()
        rows = parse_counts(*self._counts.take(self.next_generation()))
        # Every count taken is of the previous generation: older ones were taken before.
        stack_table = self._stack_tables[(self.generation - 1) & 1]
        addresses = self._take_stacks(stack_table, {i for row in rows for i in (row.ustack, row.kstack) if i >= 0})
        python_side = self._python
        hashes = {row.python for row in rows if row.python}
        python = python_side.take((self.generation - 1) & 1, hashes) if python_side is not None else {}

        lost = self.lost_in_interval()
        lost["stack_missing"] = 0
        lost["python_unnamed"] = 0

        user_names: dict[int, tuple[str, ...]] = {}
        kernel_names: dict[int, tuple[str, ...]] = {}
        merged: dict[tuple[int, tuple[str, ...], tuple[str, ...], int], int] = defaultdict(int)
        thread_names: dict[int, str] = {}
        for tid, ustack, kstack, samples, comm, py in rows:
            user = self._frames("user", ustack, addresses, user_names, lost)
            kernel = self._frames("kernel", kstack, addresses, kernel_names, lost)
            in_python = 0
            if py:
                frames = python.get(py)
                if frames:
                    user, in_python = with_python_frames(user, frames), len(frames)
                else:
                    lost["python_unnamed"] += samples
            if not user and not kernel:
                # Neither stack could be walked (a thread exiting, say): the
                # sample still counts, under a frame of its own.
                user = (UNKNOWN,)
            merged[tid, user, kernel, in_python] += samples
            thread_names.setdefault(tid, comm)
        stacks = tuple(
            sorted(
                (ProfileStack(tid, samples, user, kernel, py) for (tid, user, kernel, py), samples in merged.items()),
                key=lambda s: (-s.samples, s.tid, s.frames),
            )
        )
        total = sum(row.samples for row in rows) + lost["count_map_full"]

        if python_side is not None and python_side.reading:
            if len(self._python_taken) > _PYTHON_TAKEN_MAX:
                # nobody takes them (no Python tab): keep the newest only
                self._python_taken, self._python_taken_ns = [], 0
            self._python_taken += [(st.tid, st.user_frames[: st.python_frames], st.samples) for st in stacks if st.python_frames]
            if self._last_mono_ns is not None:
                self._python_taken_ns += mono_ns - self._last_mono_ns
        self._last_mono_ns = mono_ns

        self._symbolizer.tick()
        if not exited and python_side is not None:
            python_side.follow_threads()
        if exited:
            # Nothing left to sample, and a new process given the pid must not
            # be profiled as this one: detach now.
            self._exited = True
            self.stop()
            self._symbolizer.user.forget(self.target_pid)
        return self._sample(stacks, thread_names, total, lost, mono_ns)

    @property
    def reads_python(self) -> bool:
        """Whether the running profile reads its target's Python frames (a CPython 3.11+ process)."""
        python = self._python
        return self.running and python is not None and python.reading

    def take_python_stacks(self) -> tuple[list[tuple[int, tuple[str, ...], int]], int] | None:
        """(tid, Python frames outermost first, samples) per stack since the last call, and the ns they cover.

        For the Python tab, which then reads no stacks of its own: these were
        read at the profile's samples, in the kernel. None where the profile
        does not read Python frames (not running, not a CPython 3.11+ process).
        """
        if not self.reads_python:
            return None
        taken = self._python_taken, self._python_taken_ns
        self._python_taken, self._python_taken_ns = [], 0
        return taken

    def stop(self) -> None:
        if self._python is not None:
            self._python.close()
        super().stop()

    def _sample(
        self,
        stacks: tuple[ProfileStack, ...],
        thread_names: dict[int, str],
        samples: int,
        lost: dict[str, int],
        mono_ns: int,
    ) -> ProfileSample:
        return ProfileSample(
            stacks=stacks,
            thread_names=thread_names,
            samples=samples,
            lost=lost,
            frequency_hz=self.frequency_hz,
            target_pid=self.target_pid,
            exited=self._exited,
            mono_ns=mono_ns,
            python_note=self._python.note if self._python is not None else "",
        )

    @staticmethod
    def _take_stacks(table: BpfMap, ids: set[int]) -> dict[int, tuple[int, ...]]:
        """The addresses of each stack id, leaf first; empties the map."""
        addresses = {}
        for stack_id in ids:
            key = _STACK_ID.pack(stack_id)
            value = table.lookup(key)
            if value is not None:
                addresses[stack_id] = _FRAMES.unpack(value)
                table.delete(key)
        # Stacks no count names (their sample found the count map full) would
        # fill the map for this parity's next generation. Usually there are
        # none: one system call finds the map empty.
        table.clear()
        return addresses

    def _frames(
        self,
        kind: str,
        stack_id: int,
        addresses: Mapping[int, tuple[int, ...]],
        names: dict[int, tuple[str, ...]],
        lost: dict[str, int],
    ) -> tuple[str, ...]:
        """One stack's names, root first; symbolized once per tick however many threads share it."""
        if stack_id == -_EFAULT:
            return ()  # nothing to walk: no loss (see profile.bpf.c)
        if stack_id < 0:
            return (missing_stack_frame(kind, stack_id),)
        known = names.get(stack_id)
        if known is not None:
            return known
        addrs = addresses.get(stack_id)
        if addrs is None:
            lost["stack_missing"] += 1
            frames: tuple[str, ...] = (missing_stack_frame(kind, -_ENOENT),)
        elif kind == "user":
            frames = self._symbolizer.stack(self.target_pid, (), addrs)
        else:
            frames = self._symbolizer.stack(self.target_pid, addrs, ())
        names[stack_id] = frames
        return frames


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionShare:
    """One function's share of the samples."""

    name: str
    # samples in which it was the leaf frame: running its own code
    self_samples: int
    # samples with it anywhere on the stack (once per stack, recursion or not)
    total_samples: int
    self_percent: float  # of all the interval's samples
    total_percent: float


@dataclass(frozen=True, slots=True)
class HotStack:
    """One stack of any of the process's threads, with its samples."""

    frames: tuple[str, ...]  # root first
    samples: int
    percent: float  # of all the interval's samples


@dataclass(frozen=True, slots=True)
class ProfileView:
    top_self: tuple[FunctionShare, ...]  # most self samples first
    top_total: tuple[FunctionShare, ...]  # the same functions, most total samples first
    stacks: tuple[HotStack, ...]  # most samples first, threads merged
    # tid -> name of the threads sampled, as the kernel had them (some may have exited since)
    thread_names: Mapping[int, str]
    samples: int
    # the whole process, in percent of one CPU
    on_cpu_percent: float
    lost: Mapping[str, int]  # stacks or samples lost in the interval, by reason
    frequency_hz: int
    target_pid: int
    exited: bool
    # samples whose user stack does not begin where threads begin (probes.symbols.symbolizer.cut_short):
    # their callers are lost; in percent of the samples with a user stack
    cut_short_percent: float = 0.0
    python_note: str = ""


_NO_SYMBOL = re.compile(r"(?P<module>[^\[\s;]+)\+0x[0-9a-f]+")


def function_of(frame: str) -> str:
    """The name a frame counts under in the functions table.

    Code with no symbol shows as its file and address (libz.so.1.2.13+0x5f77),
    one address a frame: counted by address, a stripped library's hot loop
    would be ten rows of a few percent. Its addresses count together, as
    "libz.so.1.2.13 (no symbol)"; the stacks keep each address (what
    addr2line takes).
    """
    match = _NO_SYMBOL.fullmatch(frame)
    return f"{match['module']} (no symbol)" if match else frame


def _percent(part: int, whole: int) -> float:
    return part / whole * 100 if whole else 0.0


def derive_profile(prev: ProfileSample, curr: ProfileSample, dt_s: float) -> ProfileView:
    """Top functions and hottest stacks of one interval.

    The probe empties its maps every tick, so `curr` alone covers the
    interval; `prev` is taken for the signature all derive functions share.
    Percentages of samples are of all the interval's samples, those lost
    without a stack included, so they never overstate.
    """
    total = curr.samples
    self_samples: dict[str, int] = defaultdict(int)
    total_samples: dict[str, int] = defaultdict(int)
    per_stack: dict[tuple[str, ...], int] = defaultdict(int)
    with_user = short = 0
    for stack in curr.stacks:
        frames = stack.frames
        self_samples[function_of(frames[-1])] += stack.samples
        for name in {function_of(frame) for frame in frames}:
            total_samples[name] += stack.samples
        per_stack[frames] += stack.samples
        root = stack.user_frames[0] if stack.user_frames else ""
        if root and _STACK_LOST not in root:
            with_user += stack.samples
            # Python frames come from the interpreter's own chain, whole to its first frame
            short += stack.samples if not stack.python_frames and cut_short(stack.user_frames) else 0

    functions = [
        FunctionShare(name, self_samples[name], n, _percent(self_samples[name], total), _percent(n, total))
        for name, n in total_samples.items()
    ]
    possible = curr.frequency_hz * dt_s
    return ProfileView(
        top_self=tuple(sorted(functions, key=lambda f: (-f.self_samples, -f.total_samples, f.name))),
        top_total=tuple(sorted(functions, key=lambda f: (-f.total_samples, -f.self_samples, f.name))),
        stacks=tuple(
            HotStack(frames, n, _percent(n, total))
            for frames, n in sorted(per_stack.items(), key=lambda item: (-item[1], item[0]))
        ),
        thread_names=curr.thread_names,
        samples=total,
        on_cpu_percent=total / possible * 100 if possible > 0 else 0.0,
        lost=dict(curr.lost),
        frequency_hz=curr.frequency_hz,
        target_pid=curr.target_pid,
        exited=curr.exited,
        cut_short_percent=_percent(short, with_user),
        python_note=curr.python_note,
    )


# ---- folded stacks ------------------------------------------------------------


def folded_lines(samples_by_stack: Mapping[tuple[str, ...], int]) -> list[str]:
    """"frame;frame;frame count" lines, root first, most samples first, as flamegraph.pl and speedscope read."""
    ordered = sorted(samples_by_stack.items(), key=lambda item: (-item[1], item[0]))
    return [f"{folded(frames)} {n}" for frames, n in ordered if n > 0]


class FoldedStacks:
    """Samples per stack summed over every sample (or view) added: a drill-down's whole profile.

    Add each tick's sample or its view, not both: either holds the tick's stacks.
    """

    def __init__(self) -> None:
        self._samples: dict[tuple[str, ...], int] = defaultdict(int)

    def add(self, data: ProfileSample | ProfileView) -> None:
        stacks: Iterable[ProfileStack | HotStack] = data.stacks
        for stack in stacks:
            self._samples[stack.frames] += stack.samples

    @property
    def samples(self) -> int:
        return sum(self._samples.values())

    def lines(self) -> list[str]:
        return folded_lines(self._samples)


# Started by a drill-down for one process, never on its own (no `make`).
PROFILE: ProbeSpec[ProfileSample, ProfileView] = ProbeSpec(ProfileProbe.name, ProfileSample, ProfileView, derive_profile)
