"""The "offcpu" probe: where processes wait, for how long and why, and run-queue latency, from eBPF.

The kernel side (offcpu.bpf.c) times every block from a thread's switch-out
to its next switch-in on the sched tracepoints and aggregates blocks of
`min_block_ns` or more per (process, state, user stack, kernel stack), and
run-queue latency as log2 histograms. Each `sample()` moves it on to a new
generation of map entries and takes out the old one, so a sample holds what
ended in the interval since the previous sample. Stacks are turned into
function names at sample time (the process may be gone later, and a
recording is replayed elsewhere). `derive_offcpu` turns a sample into rates,
rankings and percentiles.

For the drill-down's process (the focus), where it is CPython 3.11+, a
stack taken at switch-out also carries the thread's Python frames, read in
the kernel at that moment (probes/ebpf/python_frames.py): they take the
interpreter's place in the user stack, so a Python call blocked in recv
shows as "wait_for_data (app.py:12)" above libc's recv and the kernel's wait.
"""

from __future__ import annotations

import struct
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
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
    read_percpu_counters,
)
from probes.ebpf.probe import FocusingEbpfProbe, PerCpuCounters
from probes.ebpf.programs import (
    BpfProgram,
    LoadedProgram,
    build_program,
    wait_for_programs,
)
from probes.ebpf.python_frames import DEFINES as PYTHON_DEFINES
from probes.ebpf.python_frames import PythonStacks, with_python_frames
from probes.model.histograms import LatencyBucket, log2_quantile_bucket
from probes.symbols.kallsyms import prepared_kernel_symbols
from probes.symbols.symbolizer import Symbolizer

SOURCE = "offcpu.bpf.c"
HIST_SLOTS = 32
# In the order of offcpu.bpf.c's enum state_class.
STATES = ("R", "S", "D", "other")
# In the order of offcpu.bpf.c's enum lost_reason; "stack_missing" is user
# space's own (a stack id whose stack was not in its map).
KERNEL_LOST_REASONS = (
    "no_slot",
    "unmatched",
    "block_map_full",
    "rq_map_full",
    "comm_map_full",
    "kernel_stack_efault",
    "stack_map_full",
    "stack_other",
    "stack_expired",
    "thread_map_full",
    "python_stack_map_full",
    "python_read",
)
# "python_unnamed": user space's own, blocks whose Python frames it could not name (their native stack stays)
LOST_REASONS = (*KERNEL_LOST_REASONS, "stack_missing", "python_unnamed")

DEFAULT_MIN_BLOCK_NS = 1_000_000
# Blocking stacks kept per process in a sample (most time first): a process
# with thousands of threads in distinct waits must not make a frame huge.
STACKS_PER_PROCESS = 20
# Distinct stack ids symbolized per process per tick: ids that differ only
# in return addresses inside the same functions merge after naming, so a few
# more than are kept, most time first.
IDS_SYMBOLIZED_PER_PROCESS = 4 * STACKS_PER_PROCESS

# A stack epoch lasts this long (see offcpu.bpf.c, "Stack ids outlive a
# tick"): a block shorter than one epoch always keeps its stack. An epoch
# ends sooner, but not before EPOCH_MIN_S, once its map is half full: at
# 8192 stacks, churn of up to ~800 new stacks a second loses none.
EPOCH_S = 30.0
EPOCH_MIN_S = 5.0

# Per-CPU maps take entries x CPUs x value bytes of kernel memory; the entry
# counts shrink on big machines to stay near this budget per map.
PER_CPU_MAP_BUDGET_BYTES = 16 << 20
BLOCK_ENTRIES_RANGE = (2048, 16384)
RQ_ENTRIES_RANGE = (512, 4096)
# (thread, state) pairs of the focus process that end a block within one tick.
THREAD_ENTRIES = 2048
# 2^16 slots of 56 bytes (3.5 MiB), 4-way: see offcpu.bpf.c.
SLOT_BITS = 16
# Two hash maps of 8192 stacks of 64 frames, about 570 bytes an entry with
# its key and the map's own: 9 MiB, as the stack trace maps they replace.
# Deeper frames are rarely worth their bytes in a blocking stack (the wait
# is at the leaf end).
STACK_ENTRIES = 8192
STACK_DEPTH = 64
# Capture stacks on 1 in 64 switch-outs that are unlikely to start a long
# block: about 25 ns per context switch on average (offcpu.bpf.c, "Stacks").
STACK_SAMPLE_MASK = 63

# Stack ids below zero in a block key (offcpu.bpf.c): why there is no stack.
STACK_NOT_CAPTURED = -1000
STACK_EXPIRED = -1001
_EFAULT, _ENOMEM = 14, 12
# Every blocking kernel stack ends in the scheduler and the tracepoint that
# took it (schedule, __schedule, __traceiter_sched_switch): dropped, so that
# a stack ends where the thread waited (do_nanosleep, pipe_read).
_SCHEDULER_FRAMES = frozenset({"schedule", "__schedule"})
_TRACEPOINT_PREFIXES = ("__traceiter_", "__bpf_trace_", "perf_trace_")
MISSING_REASONS = {
    STACK_NOT_CAPTURED: "not captured",
    STACK_EXPIRED: "expired",
    -_ENOMEM: "lost: stack map full",
    -_EFAULT: "lost: not walkable",
}
# An id whose stack was not in its map (never expected: counted as "stack_missing").
STACK_GONE = "lost: stack missing"

# The structs of offcpu.bpf.c, native byte order. Keys end with their generation.
_BLOCK_KEY = struct.Struct("=qqQIBBHII")  # ustack, kstack, Python stack hash, tgid, state, stack_map, pad, pad2, gen
_BLOCK_VALUE = struct.Struct("=QQ")  # total_ns, count
_TGID_KEY = struct.Struct("=II")  # tgid, gen
_THREAD_KEY = struct.Struct("=IIB3xI")  # tgid, tid, state, pad, gen
_RQ_HIST = struct.Struct(f"={HIST_SLOTS}IQ")  # slots, total_ns
_WORD = struct.Struct("=Q")
_CONTROL_GEN, _CONTROL_STACKS, _CONTROL_FOCUS, _CONTROL_TARGET = 0, 1, 2, 3
_ACCEPT_PREVIOUS = 1
_STACK_ID = struct.Struct("=q")  # a stack map's key: the stack's id, a hash of its frames
_FRAMES = struct.Struct(f"={STACK_DEPTH}Q")

# prev_state bits as sched_switch reports them (offcpu.bpf.c, state_class).
_TASK_INTERRUPTIBLE = 0x1
_TASK_UNINTERRUPTIBLE = 0x2
_TASK_REPORT_BITS = 0xFF


def state_class(prev_state: int) -> str:
    """What sched_switch's prev_state says of why a thread left its CPU (offcpu.bpf.c's state_class).

    0, or only the preemption bit TASK_REPORT_MAX (0x100, "R+"), is a
    preempted, runnable thread: "R". TASK_INTERRUPTIBLE is "S",
    TASK_UNINTERRUPTIBLE "D", anything else (stopped, traced, parked, idle
    kernel threads, dead) "other".
    """
    if prev_state & _TASK_INTERRUPTIBLE:
        return "S"
    if prev_state & _TASK_UNINTERRUPTIBLE:
        return "D"
    if not prev_state & _TASK_REPORT_BITS:
        return "R"
    return "other"


@dataclass(frozen=True, slots=True)
class OffCpuTime:
    """One process's blocks of one state that ended in the interval (min_block_ns or longer)."""

    pid: int
    state: str  # STATES
    off_cpu_ns: int
    blocks: int


@dataclass(frozen=True, slots=True)
class BlockingStack:
    """Blocks of one process that left its CPU through the same stack, ended in the interval."""

    pid: int
    state: str
    off_cpu_ns: int
    blocks: int
    # Function names, outermost first; the kernel's last, ending where the thread blocked.
    user_frames: tuple[str, ...]
    kernel_frames: tuple[str, ...]
    # Why there are no frames (MISSING_REASONS' values), or None.
    missing: str | None = None
    # how many of the user frames, from the root, are Python's (read from the interpreter, not unwound)
    python_frames: int = 0

    @property
    def frames(self) -> tuple[str, ...]:
        return self.user_frames + self.kernel_frames

    def folded(self) -> tuple[str, ...]:
        """Its folded-stack frames, its state first ([D] ... ), as a drill-down's export writes them."""
        return (f"[{self.state}]", *(self.frames or (f"[{self.missing or 'no stack'}]",)))


@dataclass(frozen=True, slots=True)
class ThreadOffCpuTime:
    """One thread of the focus process: its blocks of one state that ended in the interval."""

    pid: int
    tid: int
    state: str
    off_cpu_ns: int
    blocks: int


@dataclass(frozen=True, slots=True)
class OffCpuSample:
    """Everything the probe saw end since the previous sample."""

    times: tuple[OffCpuTime, ...]
    # Per process, its STACKS_PER_PROCESS stacks with the most time.
    stacks: tuple[BlockingStack, ...]
    # Run-queue latency (runnable to running), log2 buckets: slot i counts
    # waits of [2**i, 2**(i+1)) ns; the last slot takes everything longer.
    rq_hist: tuple[int, ...]
    # pid -> its threads' run-queue latency, the same buckets (not for a
    # task's very first run, whose process the kernel side cannot tell)
    rq_hists: dict[int, tuple[int, ...]]
    comms: dict[int, str]
    # reason (LOST_REASONS) -> events in the interval; see offcpu.bpf.c
    lost: dict[str, int]
    # blocks shorter than min_block_ns: counted, not attributed
    short_blocks: int
    short_block_ns: int
    min_block_ns: int
    target_pid: int | None
    # the process whose threads are timed one by one (the drill-down's), if any
    focus_pid: int | None = None
    threads: tuple[ThreadOffCpuTime, ...] = ()
    # Blocks of min_block_ns or more, other than R, whose stacks were taken
    # (stack_lost), and those of them whose stacks were lost; None in
    # recordings made before orac counted them
    stack_blocks: int | None = None
    stack_lost_blocks: int | None = None
    # the sum of the waits rq_hist counts, and per pid of those rq_hists
    # counts: with the counts, their exact means (None in recordings made
    # before orac kept them)
    rq_wait_ns: int | None = None
    rq_wait_ns_by_pid: dict[int, int] | None = None
    # time.monotonic_ns() as blocks were switched to the next generation,
    # where this sample's interval ends: None in recordings made before orac
    # kept it
    mono_ns: int | None = None


def default_entries(cpus: int, value_bytes: int, entries_range: tuple[int, int]) -> int:
    low, high = entries_range
    return max(low, min(high, PER_CPU_MAP_BUDGET_BYTES // (cpus * value_bytes)))


def offcpu_program(
    targeted: bool = False,
    min_block_ns: int = DEFAULT_MIN_BLOCK_NS,
    cpus: int | None = None,
    stack_sample_mask: int = STACK_SAMPLE_MASK,
) -> BpfProgram:
    """The probe's BPF program and options; pure apart from reading the source file.

    `targeted`: of one process, whose tgid goes in the program's control array.
    """
    if min_block_ns < 0:
        raise ValueError(f"min_block_ns must be >= 0, not {min_block_ns}")
    if stack_sample_mask & (stack_sample_mask + 1):
        raise ValueError(f"stack_sample_mask must be 2^k - 1, not {stack_sample_mask}")
    cpus = cpus if cpus is not None else possible_cpus()
    return build_program(
        SOURCE,
        {
            "TARGETED": 1 if targeted else None,
            "MIN_BLOCK_NS": min_block_ns,
            "SLOT_BITS": SLOT_BITS,
            "BLOCK_ENTRIES": default_entries(cpus, _BLOCK_VALUE.size, BLOCK_ENTRIES_RANGE),
            "RQ_ENTRIES": default_entries(cpus, _RQ_HIST.size, RQ_ENTRIES_RANGE),
            "THREAD_ENTRIES": THREAD_ENTRIES,
            "STACK_ENTRIES": STACK_ENTRIES,
            "STACK_DEPTH": STACK_DEPTH,
            "STACK_SAMPLE_MASK": stack_sample_mask,
            "HIST_SLOTS": HIST_SLOTS,
            **PYTHON_DEFINES,
        },
    )


class BlockEntry(NamedTuple):
    """One entry of the blocks map, summed over every CPU's copy."""

    pid: int
    state: int  # an index into STATES
    ustack: int  # stack ids, or below zero why there is none (MISSING_REASONS)
    kstack: int
    stack_map: int  # which of the two stack maps the ids are in
    total_ns: int
    blocks: int
    python: int = 0  # the hash of its Python frames in the Python stack map of stack_map; 0: none


def parse_blocks(keys: bytes, values: bytes, n: int) -> list[BlockEntry]:
    """The blocks map's entries with blocks in the interval."""
    return [
        BlockEntry(pid, state, ustack, kstack, stack_map, total_ns, count, python)
        for (ustack, kstack, python, pid, state, stack_map, _, _, _), (total_ns, count) in percpu_entries(
            keys, values, n, _BLOCK_KEY, _BLOCK_VALUE
        )
        if count
    ]


def parse_thread_blocks(keys: bytes, values: bytes, n: int) -> list[ThreadOffCpuTime]:
    """One ThreadOffCpuTime per entry, summed over CPUs."""
    return [
        ThreadOffCpuTime(pid, tid, STATES[state], total_ns, count)
        for (pid, tid, state, _), (total_ns, count) in percpu_entries(keys, values, n, _THREAD_KEY, _BLOCK_VALUE)
        if count
    ]


def parse_rq_hists(keys: bytes, values: bytes, n: int) -> tuple[dict[int, tuple[int, ...]], dict[int, int]]:
    """pid -> run-queue histogram, and pid -> the sum of its waits, summed over CPUs."""
    hists: dict[int, tuple[int, ...]] = {}
    totals: dict[int, int] = {}
    for (pid, _), (*hist, total_ns) in percpu_entries(keys, values, n, _TGID_KEY, _RQ_HIST):
        if any(hist):
            hists[pid] = tuple(hist)
            totals[pid] = total_ns
    return hists, totals


def without_scheduler(kernel_frames: tuple[str, ...]) -> tuple[str, ...]:
    """A kernel stack (outermost first) without its scheduler and tracepoint frames at the leaf end."""
    end = len(kernel_frames)
    while end and (kernel_frames[end - 1] in _SCHEDULER_FRAMES or kernel_frames[end - 1].startswith(_TRACEPOINT_PREFIXES)):
        end -= 1
    return kernel_frames[:end]


def stack_lost(state: int, ustack: int, kstack: int) -> bool | None:
    """Whether a block key's stacks were taken and lost: None where none were taken.

    None for a preempted (R) block and one whose stacks were not captured
    (by design, offcpu.bpf.c's "Stacks"); True where a stack expired, found
    its map full or failed to walk (a kernel thread's missing user stack,
    -EFAULT, is no loss); else False.
    """
    if STATES[state] == "R" or (ustack == STACK_NOT_CAPTURED and kstack == STACK_NOT_CAPTURED):
        return None
    return kstack < 0 or (ustack < 0 and ustack != -_EFAULT)


def _missing(stack_id: int) -> str | None:
    return None if stack_id >= 0 else MISSING_REASONS.get(stack_id, f"lost: error {-stack_id}")


class OffCpuProbe(FocusingEbpfProbe):
    """Times every off-CPU block on the machine (or of one process) with eBPF.

    Args:
        target_pid: trace only this process. Every context switch still runs
            the programs up to that check.
        min_block_ns: blocks shorter than this are counted, not attributed to
            a process or stack: on a busy box most blocks are microseconds
            long, and the short ones are what tracing would cost the most.
        stacks_per_process: blocking stacks kept per process in a sample.
    """

    name: ClassVar[str] = "offcpu"
    uses_tracefs: ClassVar[bool] = True  # classic tracepoints
    kernel_lost_reasons: ClassVar[tuple[str, ...]] = KERNEL_LOST_REASONS

    def __init__(
        self,
        target_pid: int | None = None,
        min_block_ns: int = DEFAULT_MIN_BLOCK_NS,
        stacks_per_process: int = STACKS_PER_PROCESS,
    ) -> None:
        super().__init__(target_pid)
        self.min_block_ns = min_block_ns
        self.stacks_per_process = stacks_per_process

    def program(self) -> BpfProgram:
        return offcpu_program(self.target_pid is not None, self.min_block_ns)

    def generation_word(self, bpf: LoadedProgram) -> Callable[[int], None]:
        # One control array holds the generation, the stack epoch and the focus.
        self._control = bpf["control"]
        return lambda generation: self._write_control(_CONTROL_GEN, generation)

    def open_maps(self, bpf: LoadedProgram) -> None:
        self._blocks = MapDrain(bpf["blocks"])
        self._rq_hists = MapDrain(bpf["rq_hists"])
        self._comms = MapDrain(bpf["comms"])
        self._stack_maps = (bpf["stacks0"], bpf["stacks1"])
        self._rq_hist = PerCpuCounters(bpf["rq_hist"], HIST_SLOTS)
        self._rq_wait = PerCpuCounters(bpf["rq_wait_ns"], 1)
        self._short = PerCpuCounters(bpf["short_blocks"], 2)
        self._epoch = 0
        self._write_control(_CONTROL_STACKS, self._epoch << 1 | _ACCEPT_PREVIOUS)
        self._stored_table = bpf["stacks_stored"]
        # stacks_stored's count for each map when it was last emptied
        self._stored_at_empty = read_percpu_counters(self._stored_table, 2)
        self._epoch_started = time.monotonic()
        # (stack map, id) -> frames, and (pid, stack map, id) -> frames: a
        # stack id names the same stack until its map is emptied.
        self._kernel_names: dict[tuple[int, int], tuple[str, ...]] = {}
        self._user_names: dict[tuple[int, int, int], tuple[str, ...]] = {}
        self._symbolizer = Symbolizer(kernel=prepared_kernel_symbols())
        self._focus.open(bpf["thread_blocks"], lambda pid: self._write_control(_CONTROL_FOCUS, pid))
        self._loaded = bpf
        self._python = PythonStacks(self.focus_pid, bpf)

    def target_word(self, bpf: LoadedProgram) -> Callable[[int], None]:
        control = bpf["control"]
        return lambda tgid: control.update(ARRAY_INDEX.pack(_CONTROL_TARGET), _WORD.pack(tgid))

    def _write_control(self, index: int, value: int) -> None:
        self._control.update(ARRAY_INDEX.pack(index), _WORD.pack(value))

    def _epoch_due(self) -> bool:
        age_s = time.monotonic() - self._epoch_started
        if age_s >= EPOCH_S:
            return True
        stored = read_percpu_counters(self._stored_table, 2)[self._epoch & 1] - self._stored_at_empty[self._epoch & 1]
        return age_s >= EPOCH_MIN_S and stored >= STACK_ENTRIES // 2

    def sample(self) -> OffCpuSample:
        self.require_running()
        new_epoch = self._epoch_due()
        if new_epoch:
            # Records of the epoch before this one stop carrying their stack
            # ids into new blocks; once no program can still be using the
            # old word, that epoch's map is only referenced by entries the
            # generation change below hands to this sample.
            self._write_control(_CONTROL_STACKS, self._epoch << 1)
            wait_for_programs()
        mono_ns = time.monotonic_ns()
        done = self.next_generation()
        comms = parse_comms(*self._comms.take(done), _TGID_KEY)
        blocks = parse_blocks(*self._blocks.take(done))
        rq_hists, rq_wait_ns_by_pid = parse_rq_hists(*self._rq_hists.take(done))
        threads = parse_thread_blocks(*self._focus.take(done))
        lost = self.lost_in_interval()
        rq_hist = self._rq_hist.take()
        (rq_wait_ns,) = self._rq_wait.take()
        short_blocks, short_block_ns = self._short.take()

        times: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
        for block in blocks:
            entry = times[block.pid, STATES[block.state]]
            entry[0] += block.total_ns
            entry[1] += block.blocks
        stack_blocks = stack_lost_blocks = 0
        for block in blocks:
            outcome = stack_lost(block.state, block.ustack, block.kstack)
            if outcome is not None:
                stack_blocks += block.blocks
                stack_lost_blocks += block.blocks if outcome else 0
        stacks, missing, missing_blocks, python_unnamed = self._named_stacks(blocks)
        lost["stack_missing"] = missing
        lost["python_unnamed"] = python_unnamed
        stack_lost_blocks += missing_blocks
        if new_epoch:
            self._start_epoch()
        self._symbolizer.tick()
        self._follow_python()

        name_the_unnamed(comms, {pid for pid, _ in times} | set(rq_hists))
        return OffCpuSample(
            times=tuple(OffCpuTime(pid, state, ns, count) for (pid, state), (ns, count) in times.items()),
            stacks=stacks,
            rq_hist=tuple(rq_hist),
            rq_hists=rq_hists,
            comms=comms,
            lost=lost,
            short_blocks=short_blocks,
            short_block_ns=short_block_ns,
            min_block_ns=self.min_block_ns,
            target_pid=self.target_pid,
            focus_pid=self.focus_pid,
            threads=tuple(t for t in threads if t.pid == self.focus_pid),
            stack_blocks=stack_blocks,
            stack_lost_blocks=stack_lost_blocks,
            rq_wait_ns=rq_wait_ns,
            rq_wait_ns_by_pid=rq_wait_ns_by_pid,
            mono_ns=mono_ns,
        )

    def _start_epoch(self) -> None:
        """Empty the map of the epoch before last and let new stacks go there."""
        stale = (self._epoch + 1) & 1
        self._stack_maps[stale].clear()
        # Nothing writes it until the control word below names its epoch.
        self._stored_at_empty[stale] = read_percpu_counters(self._stored_table, 2)[stale]
        self._python.empty(stale)
        self._kernel_names = {k: v for k, v in self._kernel_names.items() if k[0] != stale}
        self._user_names = {k: v for k, v in self._user_names.items() if k[1] != stale}
        self._epoch += 1
        self._write_control(_CONTROL_STACKS, self._epoch << 1 | _ACCEPT_PREVIOUS)
        self._epoch_started = time.monotonic()

    def _follow_python(self) -> None:
        """Read the focus process's Python frames: a new focus gets its own reader, the same one its new threads."""
        if self._python.pid == self.focus_pid:
            self._python.follow_threads()
            return
        self._python.close()
        self._python = PythonStacks(self.focus_pid, self._loaded)

    def stop(self) -> None:
        if self.running:
            self._python.close()
        super().stop()

    def _frames(self, stack_map: int, stack_id: int) -> tuple[int, ...] | None:
        raw = self._stack_maps[stack_map].lookup(_STACK_ID.pack(stack_id))
        return None if raw is None else _FRAMES.unpack_from(raw)

    def _kernel_stack(self, stack_map: int, stack_id: int) -> tuple[str, ...] | None:
        key = (stack_map, stack_id)
        names = self._kernel_names.get(key)
        if names is None:
            addrs = self._frames(stack_map, stack_id)
            if addrs is None:
                return None
            names = self._kernel_names[key] = without_scheduler(self._symbolizer.stack(0, kernel_addrs=addrs))
        return names

    def _user_stack(self, pid: int, stack_map: int, stack_id: int) -> tuple[str, ...] | None:
        key = (pid, stack_map, stack_id)
        names = self._user_names.get(key)
        if names is None:
            addrs = self._frames(stack_map, stack_id)
            if addrs is None:
                return None
            names = self._user_names[key] = self._symbolizer.stack(pid, user_addrs=addrs)
        return names

    def _names(
        self, pid: int, stack_map: int, ustack: int, kstack: int
    ) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
        """(user frames, kernel frames, why there are none) of one block key, without its Python frames."""
        # A user stack fails (-EFAULT) only for kernel threads, which have
        # none: their stacks are their kernel frames alone.
        user = self._user_stack(pid, stack_map, ustack) if ustack >= 0 else ()
        kernel = self._kernel_stack(stack_map, kstack) if kstack >= 0 else ()
        if user is None or kernel is None:
            return (), (), STACK_GONE
        if not user and not kernel:
            return (), (), _missing(kstack) or _missing(ustack)
        return user, kernel, None

    def _python_frames(self, pid: int, stack_map: int, python: int) -> tuple[str, ...] | None:
        """The Python frames of a block key's hash; None where it has none, () where they cannot be named."""
        if not python:
            return None
        # a hash taken for a process that was the focus before this one names nothing here
        return self._python.name(stack_map, python) if pid == self._python.pid else ()

    def _named_stacks(self, blocks: list[BlockEntry]) -> tuple[tuple[BlockingStack, ...], int, int, int]:
        """Each process's top stacks by time, named; stack ids without a stack, their blocks, and blocks of Python frames not named."""
        by_pid: dict[int, list[tuple[int, int, int, int, int, int, int]]] = defaultdict(list)
        for pid, state, ustack, kstack, stack_map, total_ns, count, python in blocks:
            by_pid[pid].append((total_ns, count, state, ustack, kstack, stack_map, python))
        missing = missing_blocks = python_unnamed = 0
        out: list[BlockingStack] = []
        for pid, entries in by_pid.items():
            entries.sort(reverse=True)
            merged: dict[tuple[str, tuple[str, ...], tuple[str, ...], str | None, int], list[int]] = defaultdict(
                lambda: [0, 0]
            )
            for total_ns, count, state, ustack, kstack, stack_map, python in entries[:IDS_SYMBOLIZED_PER_PROCESS]:
                user, kernel, why = self._names(pid, stack_map, ustack, kstack)
                if why == STACK_GONE:
                    missing += 1
                    missing_blocks += count
                frames = self._python_frames(pid, stack_map, python) if why is None else None
                if frames:
                    user = with_python_frames(user, frames)
                elif frames is not None:
                    python_unnamed += count
                entry = merged[STATES[state], user, kernel, why, len(frames or ())]
                entry[0] += total_ns
                entry[1] += count
            ranked = sorted(merged.items(), key=lambda item: (-item[1][0], item[0][0]))
            out.extend(
                BlockingStack(pid, state, total_ns, count, user, kernel, why, in_python)
                for (state, user, kernel, why, in_python), (total_ns, count) in ranked[: self.stacks_per_process]
            )
        return tuple(out), missing, missing_blocks, python_unnamed


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackRate:
    """One blocking stack of a process, over the interval."""

    state: str
    off_cpu_s_per_s: float  # thread-seconds off CPU per second
    blocks_per_s: float
    user_frames: tuple[str, ...]  # outermost first
    kernel_frames: tuple[str, ...]  # outermost first, ending where the thread blocked
    missing: str | None  # why there are no frames
    python_frames: int = 0  # how many of the user frames, from the root, are Python's

    @property
    def frames(self) -> tuple[str, ...]:
        return self.user_frames + self.kernel_frames


@dataclass(frozen=True, slots=True)
class ProcessOffCpu:
    pid: int
    comm: str
    # Thread-seconds off CPU per second in blocks of min_block_ns or more
    # that ended in the interval: 2.0 is two threads waiting all the time.
    off_cpu_s_per_s: float
    # the same, by state: "S", "D", "R", "other" (all four present)
    state_s_per_s: Mapping[str, float]
    blocks_per_s: float
    stacks: tuple[StackRate, ...]  # most time first
    # share of its S, D and other time that its listed stacks account for; None without such time
    stack_coverage_percent: float | None
    rq_hist: tuple[int, ...]  # its threads' run-queue waits in the interval
    # the log2 buckets holding their median and 99th percentile
    rq_p50_bucket: LatencyBucket | None
    rq_p99_bucket: LatencyBucket | None
    rq_mean_ns: float | None  # exact: their sum / their count; None without waits or a recorded sum


@dataclass(frozen=True, slots=True)
class ThreadOffCpu:
    """One thread of the focus process, over the interval."""

    tid: int
    off_cpu_s_per_s: float  # seconds off CPU per second, in blocks of min_block_ns or more
    state_s_per_s: Mapping[str, float]  # the same by state, all four present
    blocks_per_s: float


@dataclass(frozen=True, slots=True)
class OffCpuView:
    processes: tuple[ProcessOffCpu, ...]  # most off-CPU time first
    off_cpu_s_per_s: float  # all processes together
    rq_hist: tuple[int, ...]  # the system's run-queue waits in the interval
    rq_waits_per_s: float
    rq_p50_bucket: LatencyBucket | None
    rq_p99_bucket: LatencyBucket | None
    rq_mean_ns: float | None  # exact: the waits' sum / their count
    short_blocks_per_s: float  # blocks under min_block_ns
    short_off_cpu_s_per_s: float
    lost: Mapping[str, int]  # events lost in the interval, by reason
    # of the blocks whose stacks were taken, the share that lost them
    # (stack_blocks, stack_lost_blocks); None where none were taken, or not counted
    stacks_lost_percent: float | None
    min_block_ns: int
    target_pid: int | None
    focus_pid: int | None = None
    threads: tuple[ThreadOffCpu, ...] = ()  # the focus process's, most off-CPU time first

    def off_cpu_by_pid(self) -> dict[int, float]:
        """pid -> thread-seconds off CPU per second (for the process table's column)."""
        return {p.pid: p.off_cpu_s_per_s for p in self.processes}


def _stack_rate(stack: BlockingStack, dt_s: float) -> StackRate:
    return StackRate(
        state=stack.state,
        off_cpu_s_per_s=stack.off_cpu_ns / 1e9 / dt_s,
        blocks_per_s=stack.blocks / dt_s,
        user_frames=stack.user_frames,
        kernel_frames=stack.kernel_frames,
        missing=stack.missing,
        python_frames=stack.python_frames,
    )


def _mean(total_ns: int | None, count: int) -> float | None:
    return total_ns / count if total_ns is not None and count else None


def derive_offcpu(prev: OffCpuSample, curr: OffCpuSample, dt_s: float) -> OffCpuView:
    """Rates, rankings and run-queue percentiles of one interval.

    The probe empties its maps every tick, so `curr` alone covers the
    interval; `prev` is taken for the signature all derive functions share.
    Run-queue percentiles are the log2 buckets that hold them
    (log2_quantile_bucket), their means exact (the waits' sum / count).
    """
    state_ns: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    blocks: dict[int, int] = defaultdict(int)
    for t in curr.times:
        state_ns[t.pid][t.state] += t.off_cpu_ns
        blocks[t.pid] += t.blocks
    stacks: dict[int, list[BlockingStack]] = defaultdict(list)
    for stack in curr.stacks:
        stacks[stack.pid].append(stack)

    empty = (0,) * len(curr.rq_hist)
    rq_sums = curr.rq_wait_ns_by_pid if curr.rq_wait_ns_by_pid is not None else {}
    processes = []
    for pid in state_ns.keys() | curr.rq_hists.keys():
        by_state = state_ns[pid]
        total_ns = sum(by_state.values())
        waiting_ns = total_ns - by_state["R"]
        own = sorted(stacks.get(pid, ()), key=lambda s: (-s.off_cpu_ns, s.state))
        known_ns = sum(s.off_cpu_ns for s in own if s.state != "R" and s.missing is None)
        hist = curr.rq_hists.get(pid, empty)
        processes.append(
            ProcessOffCpu(
                pid=pid,
                comm=curr.comms.get(pid, "?"),
                off_cpu_s_per_s=total_ns / 1e9 / dt_s,
                state_s_per_s={state: ns / 1e9 / dt_s for state, ns in by_state.items()},
                blocks_per_s=blocks[pid] / dt_s,
                stacks=tuple(_stack_rate(s, dt_s) for s in own),
                stack_coverage_percent=100 * known_ns / waiting_ns if waiting_ns else None,
                rq_hist=hist,
                rq_p50_bucket=log2_quantile_bucket(hist, 0.50),
                rq_p99_bucket=log2_quantile_bucket(hist, 0.99),
                rq_mean_ns=_mean(rq_sums.get(pid), sum(hist)),
            )
        )
    processes.sort(key=lambda p: (-p.off_cpu_s_per_s, -(p.rq_p99_bucket.low_ns if p.rq_p99_bucket else -1), p.pid))
    return OffCpuView(
        processes=tuple(processes),
        off_cpu_s_per_s=sum(p.off_cpu_s_per_s for p in processes),
        rq_hist=curr.rq_hist,
        rq_waits_per_s=sum(curr.rq_hist) / dt_s,
        rq_p50_bucket=log2_quantile_bucket(curr.rq_hist, 0.50),
        rq_p99_bucket=log2_quantile_bucket(curr.rq_hist, 0.99),
        rq_mean_ns=_mean(curr.rq_wait_ns, sum(curr.rq_hist)),
        short_blocks_per_s=curr.short_blocks / dt_s,
        short_off_cpu_s_per_s=curr.short_block_ns / 1e9 / dt_s,
        lost=dict(curr.lost),
        stacks_lost_percent=(
            100 * (curr.stack_lost_blocks or 0) / curr.stack_blocks if curr.stack_blocks else None
        ),
        min_block_ns=curr.min_block_ns,
        target_pid=curr.target_pid,
        focus_pid=curr.focus_pid,
        threads=_thread_rates(curr.threads, dt_s),
    )


def _thread_rates(times: tuple[ThreadOffCpuTime, ...], dt_s: float) -> tuple[ThreadOffCpu, ...]:
    state_ns: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    blocks: dict[int, int] = defaultdict(int)
    for t in times:
        state_ns[t.tid][t.state] += t.off_cpu_ns
        blocks[t.tid] += t.blocks
    threads = (
        ThreadOffCpu(
            tid,
            sum(by_state.values()) / 1e9 / dt_s,
            {state: ns / 1e9 / dt_s for state, ns in by_state.items()},
            blocks[tid] / dt_s,
        )
        for tid, by_state in state_ns.items()
    )
    return tuple(sorted(threads, key=lambda t: (-t.off_cpu_s_per_s, t.tid)))


OFFCPU: ProbeSpec[OffCpuSample, OffCpuView] = ProbeSpec(OffCpuProbe.name, OffCpuSample, OffCpuView, derive_offcpu, OffCpuProbe)
