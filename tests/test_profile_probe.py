"""The on-CPU profile probe, its derived view and folded stacks, and perf events through the loader.

Pure parts (program options, parsing, derive, folded lines, the loader's
message handling, exit detection) are tested everywhere. The real eBPF tests
run a helper that spins in `burn_cpu` (tests/support/workloads/profile_target.c) under
the probe; like tests/test_syscalls_probe.py they need root and bcc and skip
where eBPF cannot run, except with ORAC_REQUIRE_EBPF=1, where that is a
failure.
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import WORKLOADS, cannot_run
from support.ebpf import compile_helper, start
from support.pythons import CPYTHONS, PYENV, started

from probes.contract import ProbeUnavailable
from probes.ebpf import loader as ebpf_loader
from probes.ebpf.bpf import bpf
from probes.ebpf.prepared import PROGRAMS
from probes.sources.profile import (
    DEFAULT_FREQUENCY_HZ,
    LOST_REASONS,
    FoldedStacks,
    ProfileProbe,
    ProfileSample,
    ProfileStack,
    ProfileView,
    derive_profile,
    missing_stack_frame,
    parse_counts,
    process_start_ticks,
    profile_program,
)
from probes.sources.python_stacks import parse_raw, py_spy_path

HELPER_SOURCE = WORKLOADS / "profile_target.c"

BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_TYPE_PERF_EVENT = 7

NO_LOSS = dict.fromkeys(LOST_REASONS, 0)


def stack(tid: int, samples: int, user: tuple[str, ...], kernel: tuple[str, ...] = ()) -> ProfileStack:
    return ProfileStack(tid, samples, user, kernel)


def sample_of(stacks: list[ProfileStack], samples: int | None = None, exited: bool = False) -> ProfileSample:
    return ProfileSample(
        stacks=tuple(stacks),
        thread_names={101: "main", 102: "worker"},
        samples=sum(s.samples for s in stacks) if samples is None else samples,
        lost=dict(NO_LOSS),
        frequency_hz=100,
        target_pid=101,
        exited=exited,
    )


# ---- program text and options ------------------------------------------------


def test_program_samples_the_target_on_a_cpu_clock_on_every_cpu() -> None:
    program = profile_program(frequency_hz=49)
    assert program.source_name == "profile.bpf.c"
    # the process goes in the `target` map: one compile serves every drill-down
    assert ProfileProbe(4321, 49).program() == ProfileProbe(1234, 49).program() == program
    assert "int profile_sample(struct bpf_perf_event_data *ctx)" in program.text
    (event,) = program.perf_events
    assert (event.fn_name, event.type, event.config) == (
        "profile_sample",
        ebpf_loader.PERF_TYPE_SOFTWARE,
        ebpf_loader.PERF_COUNT_SW_CPU_CLOCK,
    )
    assert (event.sample_freq, event.sample_period, event.cpu) == (49, 0, -1)
    assert "// profile_sample attached to perf event type 1 config 0, 49 Hz on every online CPU" in program.listing()
    assert profile_program().perf_events[0].sample_freq == DEFAULT_FREQUENCY_HZ == 99


def test_probe_refuses_what_cannot_be_profiled() -> None:
    with pytest.raises(ValueError):
        ProfileProbe(0)
    with pytest.raises(ValueError):
        ProfileProbe(1, frequency_hz=0)
    probe = ProfileProbe(1)
    assert (probe.name, probe.slow_start, probe.frequency_hz) == ("profile", True, 99)
    with pytest.raises(ProbeUnavailable, match="not running"):
        probe.sample()


# ---- parsing and names -----------------------------------------------------------


def test_parse_counts_reads_keys_values_and_thread_names() -> None:
    keys = struct.pack("=QIiiI", 0, 7, 3, -14, 1) + struct.pack("=QIiiI", 99, 8, -17, 5, 1)
    values = struct.pack("=Q16s", 12, b"burner-0") + struct.pack("=Q16s", 0, b"idle")
    # the second has no samples (never expected, but costs nothing): left out
    assert parse_counts(keys, values, 2) == [(7, 3, -14, 12, "burner-0", 0)]


def test_a_stack_that_was_not_taken_is_one_frame_saying_why() -> None:
    assert missing_stack_frame("user", -17) == "[user stack lost: collision]"
    assert missing_stack_frame("kernel", -12) == "[kernel stack lost: map full]"
    assert missing_stack_frame("user", -2) == "[user stack lost: missing]"
    assert missing_stack_frame("user", -22) == "[user stack lost: error 22]"


def test_exit_is_noticed_for_gone_and_zombie_processes() -> None:
    assert process_start_ticks(os.getpid()) is not None
    child = subprocess.Popen(["true"])
    # Exited, not yet reaped: a zombie still has its /proc entry.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert Path(f"/proc/{child.pid}/stat").exists()
    assert process_start_ticks(child.pid) is None
    child.wait()
    assert process_start_ticks(child.pid) is None


# ---- derive ------------------------------------------------------------------


def test_derive_ranks_functions_by_self_and_total_and_stacks_by_samples() -> None:
    curr = sample_of(
        [
            stack(101, 50, ("main", "compute", "burn")),
            stack(102, 20, ("start_thread", "worker", "burn")),
            stack(101, 10, ("main", "compute"), ("entry_SYSCALL_64", "do_syscall_64", "__x64_sys_getppid")),
            # recursion: `fib` is on the stack three times, counted once for its total
            stack(102, 15, ("start_thread", "worker", "fib", "fib", "fib")),
            # the same frames as the first, of another thread: merged in the hottest stacks
            stack(102, 5, ("main", "compute", "burn")),
        ],
        samples=110,  # 10 samples lost without a stack (count map full) still count in the whole
    )
    view = derive_profile(curr, curr, 2.0)

    assert view.samples == 110
    by_name = {f.name: f for f in view.top_self}
    assert [f.name for f in view.top_self[:3]] == ["burn", "fib", "__x64_sys_getppid"]
    burn = by_name["burn"]
    assert (burn.self_samples, burn.total_samples) == (75, 75)
    assert burn.self_percent == pytest.approx(75 / 110 * 100)
    assert by_name["fib"].total_samples == 15 and by_name["fib"].self_samples == 15
    main = by_name["main"]
    assert (main.self_samples, main.total_samples) == (0, 65)
    assert main.total_percent == pytest.approx(65 / 110 * 100)
    assert by_name["compute"].total_samples == 65 and by_name["compute"].self_samples == 0
    assert by_name["do_syscall_64"].total_samples == 10
    # by total: burn (75), then compute and main (65, ties by name), start_thread and worker (35)
    assert [f.name for f in view.top_total[:5]] == ["burn", "compute", "main", "start_thread", "worker"]

    assert [(s.frames, s.samples) for s in view.stacks[:2]] == [
        (("main", "compute", "burn"), 55),
        (("start_thread", "worker", "burn"), 20),
    ]
    assert view.stacks[0].percent == pytest.approx(55 / 110 * 100)

    assert view.on_cpu_percent == pytest.approx(110 / 200 * 100)
    assert (view.target_pid, view.frequency_hz, view.exited) == (101, 100, False)


def test_derive_says_how_often_the_user_stack_was_cut_short() -> None:
    curr = sample_of(
        [
            # walked to the thread's start: whole
            stack(101, 40, ("start_thread", "worker", "burn")),
            # ended at a frame with no name: cut short, whatever the frames under it
            stack(101, 30, ("[unknown]", "[unknown]", "_PyEval_EvalFrameDefault")),
            stack(101, 20, ("python3.11+0x5a85ed", "PyObject_Free")),
            stack(102, 6, ("[anon]", "jit_loop")),
            # named, but not where a thread begins: a libc function without frame pointers
            stack(102, 4, ("read",)),
            # not counted either way: no user stack (a kernel thread's moment), or one not taken
            stack(102, 7, (), ("worker_thread", "schedule")),
            stack(102, 3, (missing_stack_frame("user", -17),), ("schedule",)),
        ]
    )
    view = derive_profile(curr, curr, 1.0)
    assert view.cut_short_percent == pytest.approx(60 / 100 * 100)
    whole = sample_of([stack(101, 5, ("__libc_start_call_main", "main")), stack(102, 5, ("start_thread", "worker"))])
    assert derive_profile(whole, whole, 1.0).cut_short_percent == 0.0


def test_code_without_symbols_counts_by_file_in_the_functions_and_by_address_in_the_stacks() -> None:
    curr = sample_of(
        [
            stack(101, 30, ("[unknown]", "compress", "libz.so.1.2.13+0x5f77")),
            stack(101, 20, ("[unknown]", "compress", "libz.so.1.2.13+0x5f7f")),
            stack(101, 10, ("[unknown]", "compress", "adler32_z")),
        ]
    )
    view = derive_profile(curr, curr, 1.0)
    top = view.top_self[0]
    assert (top.name, top.self_samples) == ("libz.so.1.2.13 (no symbol)", 50)
    assert [f.name for f in view.top_self[1:]][:1] == ["adler32_z"]
    assert {s.frames[-1] for s in view.stacks} == {"libz.so.1.2.13+0x5f77", "libz.so.1.2.13+0x5f7f", "adler32_z"}


def test_derive_of_an_empty_interval_after_exit() -> None:
    view = derive_profile(sample_of([]), sample_of([], exited=True), 1.0)
    assert view.exited
    assert view.top_self == () and view.stacks == ()
    assert view.samples == 0 and view.on_cpu_percent == 0.0


# ---- folded stacks ---------------------------------------------------------------

FOLDED_LINE = re.compile(r"^[^; ][^;]*(;[^;]+)* [1-9][0-9]*$")


def test_folded_lines_sum_every_tick_added_most_samples_first() -> None:
    folded = FoldedStacks()
    first = sample_of([stack(101, 3, ("main", "burn")), stack(102, 2, ("main", "burn")), stack(101, 1, ("main",))])
    folded.add(first)
    # a view holds the same stacks: a UI may add whichever it keeps
    second = sample_of([stack(101, 4, ("start_thread", "odd;name"), ("do_syscall_64",))])
    folded.add(derive_profile(first, second, 1.0))
    assert folded.lines() == [
        "main;burn 5",
        "start_thread;odd:name;do_syscall_64 4",  # a ";" in a name would split the frame
        "main 1",
    ]
    assert all(FOLDED_LINE.match(line) for line in folded.lines())
    assert folded.samples == 10
    # nothing added: nothing written (an exited process's later samples are empty)
    folded.add(sample_of([], exited=True))
    assert folded.samples == 10


# ---- the loader's messages ------------------------------------------------------------


def test_descriptors_over_several_messages_are_all_received() -> None:
    # The child sends at most MAX_FDS descriptors a message: a perf event per
    # CPU on a big machine takes more than one. Here two messages of one pipe each.
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pipes = [os.pipe(), os.pipe()]
    description = json.dumps(
        {
            "attachments": [{"kind": "perf_event", "name": f"1:0/cpu{cpu}"} for cpu in range(3)],
            "maps": [{"name": "m", "type": 1, "key_size": 4, "value_size": 4, "max_entries": 1}],
        }
    ).encode()
    with child:
        socket.send_fds(child, [description], list(pipes[0]))
        socket.send_fds(child, [ebpf_loader.MORE_FDS], list(pipes[1]))
    for r, w in pipes:
        os.close(r)
        os.close(w)
    with parent:
        parent.setblocking(False)
        message, fds, flags = ebpf_loader._receive_all(parent)
    loaded = ebpf_loader._parse(message, fds, flags, "")
    try:
        assert [a.name for a in loaded.attachments] == ["1:0/cpu0", "1:0/cpu1", "1:0/cpu2"]
        assert [m.name for m in loaded.maps] == ["m"]
        assert len(set(loaded.fds())) == 4
        assert not any(os.get_inheritable(fd) for fd in loaded.fds())
    finally:
        loaded.close()


# ---- real eBPF -----------------------------------------------------------------------------






@pytest.fixture(scope="module")
def target_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The helper, compiled once per test run so that its stacks unwind by frame pointers."""
    return compile_helper(HELPER_SOURCE, tmp_path_factory.mktemp("profile"), "-O0", "-fno-omit-frame-pointer", "-g", "-pthread")


@contextmanager
def burning(binary: Path, threads: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """The helper, once its threads burn; it ends when its stdin closes."""
    helper = subprocess.Popen([str(binary), str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert helper.stdout is not None and helper.stdout.readline() == b"ready\n"
        yield helper
    finally:
        end(helper)


def end(helper: subprocess.Popen[bytes]) -> None:
    """Make the helper exit, and reap it."""
    assert helper.stdin is not None and helper.stdout is not None
    helper.stdin.close()
    helper.stdout.close()
    assert helper.wait(timeout=30) == 0


def cpu_ns(pid: int) -> int:
    """The process's time on CPU so far, every thread, in ns (schedstat: exact, not in clock ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, IndexError):
            pass  # a thread exiting meanwhile
    return total


def combined(samples: list[ProfileSample]) -> ProfileSample:
    """Several ticks as one sample: derive merges the stacks."""
    return ProfileSample(
        stacks=tuple(s for sample in samples for s in sample.stacks),
        thread_names={tid: name for sample in samples for tid, name in sample.thread_names.items()},
        samples=sum(sample.samples for sample in samples),
        lost={reason: sum(sample.lost[reason] for sample in samples) for reason in LOST_REASONS},
        frequency_hz=samples[0].frequency_hz,
        target_pid=samples[0].target_pid,
        exited=samples[-1].exited,
    )


@dataclass
class BusyTrace:
    """The probe on one busy process while another busy process runs beside it."""

    target_pid: int
    target_tids: set[int]
    other_pid: int
    other_tids: set[int]
    samples: list[ProfileSample] = field(default_factory=list)
    target_cpu_s: float = 0.0
    other_cpu_s: float = 0.0
    wall_s: float = 0.0
    tick_cpu_s: list[float] = field(default_factory=list)


TICKS = 5
TICK_S = 0.5


@pytest.fixture(scope="module")
def busy_trace(target_binary: Path) -> BusyTrace:
    with burning(target_binary) as target, burning(target_binary) as other:
        probe = start(ProfileProbe(target.pid))
        try:
            trace = BusyTrace(
                target.pid,
                {int(t) for t in os.listdir(f"/proc/{target.pid}/task")},
                other.pid,
                {int(t) for t in os.listdir(f"/proc/{other.pid}/task")},
            )
            # What came before the first sample (while the program attached) is not measured.
            cpu_before, other_before, wall_before = cpu_ns(target.pid), cpu_ns(other.pid), time.monotonic()
            probe.sample()
            for _ in range(TICKS):
                time.sleep(TICK_S)
                cpu_now, other_now, wall_now = cpu_ns(target.pid), cpu_ns(other.pid), time.monotonic()
                started = time.process_time()
                trace.samples.append(probe.sample())
                trace.tick_cpu_s.append(time.process_time() - started)
            trace.target_cpu_s = (cpu_now - cpu_before) / 1e9
            trace.other_cpu_s = (other_now - other_before) / 1e9
            trace.wall_s = wall_now - wall_before
        finally:
            probe.stop()
    return trace


@pytest.mark.root
def test_burn_cpu_is_at_the_top_of_self_percent(busy_trace: BusyTrace) -> None:
    whole = combined(busy_trace.samples)
    view = derive_profile(whole, whole, busy_trace.wall_s)
    top = view.top_self[0]
    # burn_cpu runs in every sample: they all interrupted it, whichever frame is the leaf.
    assert top.name == "burn_cpu" and top.total_percent >= 95, view.top_self[:5]
    # Tolerance of self %: at least half the samples, and twice the next
    # function's. On a quiet machine it is ~100% (the helper's time check
    # between calls is a few us per few ms). The CPU clock samples from a
    # timer interrupt, which waits while interrupts are disabled: with other
    # processes switching in and out of the target's CPU at a high rate,
    # samples due during a context switch land where the target re-enables
    # interrupts, irqentry_exit_to_user_mode (26% of the samples with a pipe
    # ping-pong benchmark on both CPUs of the development VM).
    assert top.self_percent >= 50 and top.self_samples >= 2 * view.top_self[1].self_samples, view.top_self[:5]
    # Its caller is on every stack: frame pointers unwound the stack.
    burner = next(f for f in view.top_total if f.name == "burner")
    assert burner.total_percent >= 95 and burner.self_percent < 5
    assert any(s.frames[-2:] == ("burner", "burn_cpu") for s in view.stacks)
    # built with frame pointers: every stack walked to the thread's start
    assert view.cut_short_percent < 5, [s.frames for s in view.stacks[:5]]
    assert all(sample.lost == NO_LOSS for sample in busy_trace.samples), [s.lost for s in busy_trace.samples]
    ticks_ms = sorted(cpu_s * 1000 for cpu_s in busy_trace.tick_cpu_s)
    # Shown with -s: orac's own CPU per tick (maps read and cleared, stacks
    # symbolized). The tick that first meets the helper reads its symbol
    # table, and the first to meet a kernel stack reads kallsyms: the max.
    print(
        f"profile probe, CPU per tick in orac's process: median {ticks_ms[len(ticks_ms) // 2]:.2f} ms, "
        f"max {ticks_ms[-1]:.1f} ms, for {whole.samples / len(ticks_ms):.0f} samples a tick"
    )


@pytest.mark.root
def test_only_the_target_is_sampled(busy_trace: BusyTrace) -> None:
    tids = {s.tid for sample in busy_trace.samples for s in sample.stacks}
    assert tids and tids <= busy_trace.target_tids
    assert not tids & busy_trace.other_tids
    assert all(sample.target_pid == busy_trace.target_pid for sample in busy_trace.samples)
    # One sample per 1/99 s of the target's CPU time, against the CPU time
    # the kernel accounted to it (a busy thread gets less than a whole CPU on
    # a loaded machine). Tolerance: -15% / +50%, plus two samples for where
    # the timers stood at the ends. Within a few % on a quiet machine; above
    # it on a busy one, as samples due while another process switches out
    # land on the target (see the self % test: 20-35% more than the CPU time
    # measured with a pipe ping-pong benchmark on both CPUs).
    total = sum(sample.samples for sample in busy_trace.samples)
    expected = DEFAULT_FREQUENCY_HZ * busy_trace.target_cpu_s
    with_other = DEFAULT_FREQUENCY_HZ * (busy_trace.target_cpu_s + busy_trace.other_cpu_s)
    print(
        f"samples: {total} in {busy_trace.wall_s:.2f} s for {busy_trace.target_cpu_s:.2f} s of the target's CPU "
        f"(expected {expected:.0f} at {DEFAULT_FREQUENCY_HZ} Hz; {with_other:.0f} with the other process's "
        f"{busy_trace.other_cpu_s:.2f} s)"
    )
    assert 0.85 * expected - 2 <= total <= 1.50 * expected + 2
    # and far nearer the target's share than the two processes' together
    assert total - expected < (with_other - expected) / 2


def prog_ids() -> set[int]:
    """Every BPF program id the kernel has now (BPF_PROG_GET_NEXT_ID)."""

    class Attr(ctypes.Structure):
        _fields_ = [("start_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]

    ids: set[int] = set()
    attr = Attr()
    while True:
        try:
            bpf(BPF_PROG_GET_NEXT_ID, attr)
        except FileNotFoundError:
            return ids
        ids.add(attr.next_id)
        attr.start_id = attr.next_id


@pytest.mark.root
def test_code_without_frame_pointers_is_said_to_lose_its_callers() -> None:
    # Debian's own binaries are built without frame pointers: every user stack
    # the kernel walks ends early (frame-pointer builds are the busy_trace test's).
    view = profile_of(subprocess.Popen(["sha256sum", "/dev/zero"]), 1.0)
    assert view.samples > 50 and view.cut_short_percent > 90, [s.frames for s in view.stacks[:5]]


def profile_of(target: subprocess.Popen[str] | subprocess.Popen[bytes], seconds: float) -> ProfileView:
    """The profile of `seconds` of a running process, which is killed after."""
    try:
        probe = start(ProfileProbe(target.pid))
        try:
            probe.sample()
            time.sleep(seconds)
            sample = probe.sample()
        finally:
            probe.stop()
    finally:
        target.kill()
        target.wait()
    return derive_profile(sample, sample, seconds)


def python_profile(python: str, workload: str, seconds: float) -> ProfileView:
    return profile_of(started(python, workload), seconds)


@pytest.mark.root
@pytest.mark.parametrize("python", CPYTHONS)
def test_a_python_process_s_profile_names_its_python_functions_where_the_interpreter_was(
    python: str, tmp_path: Path
) -> None:
    # Without them the interpreter's frames (no frame pointers, stripped) told
    # hot_f from hot_g not at all: _PyEval_EvalFrameDefault, PyObject_Free, [unknown].
    # py-spy samples the same process over the same seconds, at the same rate.
    py_spy = py_spy_path()
    if py_spy is None:
        cannot_run("py-spy is not installed (scripts/setup installs it)")
    seconds = 4
    target = started(python, "python_70_30.py")
    spy_output = tmp_path / "py-spy.txt"
    try:
        probe = start(ProfileProbe(target.pid))
        try:
            probe.sample()
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(target.pid), "--duration", str(seconds), "--rate", str(probe.frequency_hz),
                 "--format", "raw", "--function", "--nonblocking", "--output", str(spy_output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            time.sleep(seconds)
            sample = probe.sample()
        finally:
            probe.stop()
        _, spy_errors = spy.communicate(timeout=30)
    finally:
        target.kill()
        target.wait()
    view = derive_profile(sample, sample, seconds)
    totals = {f.name: f.total_percent for f in view.top_total}
    hot_f = sum(v for name, v in totals.items() if name.startswith("hot_f ("))
    hot_g = sum(v for name, v in totals.items() if name.startswith("hot_g ("))
    assert spy.returncode == 0, spy_errors
    spy_stacks, _ = parse_raw(spy_output.read_text())
    spy_samples = sum(s.samples for s in spy_stacks)
    spy_f, spy_g = (
        100 * sum(s.samples for s in spy_stacks if any(f.startswith(name) for f in s.frames)) / spy_samples
        for name in ("hot_f (", "hot_g (")
    )
    figures = (f"orac hot_f {hot_f:.1f} %, hot_g {hot_g:.1f} % of {view.samples}; py-spy {spy_f:.1f} %, {spy_g:.1f} %"
               f" of {spy_samples}; stacks {[s.frames for s in view.stacks[:3]]}")
    assert view.python_note == "", view.python_note
    assert view.samples > 300 and spy_samples > 300, figures
    assert abs(hot_f - 70) <= 5 and abs(hot_g - 30) <= 5, figures
    assert abs(spy_f - 70) <= 5 and abs(spy_g - 30) <= 5, figures
    assert abs(hot_f - spy_f) <= 5, figures
    # the Python frames begin at the module: the callers are known, nothing cut short
    assert view.cut_short_percent < 5, figures
    assert all(s.frames[0].startswith("<module> (python_70_30.py:") for s in view.stacks if s.percent > 5), figures
    assert not any("_PyEval_EvalFrameDefault" in frame for s in view.stacks for frame in s.frames), figures


@pytest.mark.root
def test_a_c_extension_s_loop_shows_under_its_python_caller_without_stopping_the_process() -> None:
    view = python_profile(CPYTHONS[0], "python_zlib_loop.py", 2.0)
    caller = [s for s in view.stacks if any(f.startswith("compress_forever (python_zlib_loop.py:") for f in s.frames)]
    in_zlib = sum(s.percent for s in caller if s.frames[-1].startswith(("libz.so", "deflate", "adler32")))
    assert in_zlib > 60, [(s.percent, s.frames) for s in view.stacks[:5]]


def test_python_frames_go_where_the_interpreter_s_frames_were() -> None:
    from probes.ebpf.python_frames import with_python_frames

    python = ("<module> (a.py:1)", "hot (a.py:5)")
    native = ("_start", "Py_RunMain", "_PyEval_EvalFrameDefault", "list_dealloc", "PyObject_Free")
    assert with_python_frames(native, python) == (*python, "list_dealloc", "PyObject_Free")
    # cut short (no frame pointers): no eval frame; the unknown callers go
    assert with_python_frames(("[unknown]", "[unknown]", "PyObject_Free"), python) == (*python, "PyObject_Free")
    assert with_python_frames(("_PyEval_EvalFrameDefault",), python) == python


def prog_type_and_maps(prog_id: int) -> tuple[int, set[int]] | None:
    """A program's type and the ids of the maps it uses, or None once it is gone."""
    # the kernel's structs as probes.ebpf.bpf declares them, not a second copy
    from probes.ebpf.bpf import _GetIdAttr, _InfoAttr, _ProgInfo

    try:
        fd = bpf(BPF_PROG_GET_FD_BY_ID, _GetIdAttr(id=prog_id))
    except FileNotFoundError:
        return None
    try:
        map_ids = array.array("I", [0] * 64)
        info = _ProgInfo(nr_map_ids=len(map_ids), map_ids=map_ids.buffer_info()[0])
        bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)))
        return info.type, set(map_ids[: min(info.nr_map_ids, len(map_ids))])
    finally:
        os.close(fd)


def online_cpus() -> int:
    text = Path("/sys/devices/system/cpu/online").read_text().strip()
    return sum(int(b or a) - int(a) + 1 for a, _, b in (part.partition("-") for part in text.split(",")))


@pytest.mark.root
def test_stop_detaches_and_the_kernel_frees_the_program(target_binary: Path) -> None:
    with burning(target_binary) as target:
        before = prog_ids()
        probe = start(ProfileProbe(target.pid))
        try:
            program = probe._bpf
            assert program is not None
            # one perf event per online CPU, each holding the program
            assert [a.kind for a in program.attachments] == ["perf_event"] * online_cpus()
            assert not any(os.get_inheritable(a.fd) for a in program.attachments)
            our_maps = {m.info.id for m in program.maps.values()}
            running = prog_ids()
            # Ours: a perf event program using our maps (other processes may
            # load programs meanwhile, so ids, not counts, are compared; an
            # earlier test may have left it prepared, loaded before `before`).
            ours = set()
            for prog_id in running:
                info = prog_type_and_maps(prog_id)
                if info is not None and info[0] == BPF_PROG_TYPE_PERF_EVENT and info[1] and info[1] <= our_maps:
                    ours.add(prog_id)
            assert len(ours) == 1, (running - before, our_maps)
            probe.sample()
        finally:
            probe.stop()
        probe.stop()  # twice is harmless
        # Detached, and kept loaded for the next drill-down; the kernel frees
        # it once the kept copy is closed too (at times just after the close returns).
        assert program.attachments == ()
        kept = PROGRAMS.take(probe.program())
        assert kept is program
        kept.close()
        deadline = time.monotonic() + 5
        while ours & prog_ids():
            assert time.monotonic() < deadline, f"still loaded: {ours & prog_ids()}"
            time.sleep(0.05)
        after = prog_ids()
        print(f"BPF programs loaded: {len(before)} before, {len(running)} running, {len(after)} after")


@pytest.mark.root
def test_target_exiting_mid_trace_is_reported_and_its_last_samples_kept(target_binary: Path) -> None:
    with burning(target_binary, threads=2) as target:
        probe = start(ProfileProbe(target.pid))
        folded = FoldedStacks()
        try:
            probe.sample()
            time.sleep(0.3)
            alive = probe.sample()
            assert not alive.exited and alive.samples > 0
            folded.add(alive)
            time.sleep(0.5)
            # It exits with no sample taken since: the next one holds its last half second.
            end(target)
            last = probe.sample()
            assert last.exited
            assert last.samples > 0
            assert {"burner-0", "burner-1"} <= set(last.thread_names.values())
            assert derive_profile(alive, last, 1.0).top_self[0].name == "burn_cpu"
            folded.add(last)
            assert probe._bpf is None  # detached: a new process given the pid is not profiled
            for _ in range(2):
                later = probe.sample()
                assert later.exited and later.stacks == () and later.samples == 0
                folded.add(later)
            # what the drill-down writes still has it all
            lines = folded.lines()
            assert all(FOLDED_LINE.match(line) for line in lines)
            assert "burner;burn_cpu " in lines[0]
            assert folded.samples == alive.samples + last.samples
        finally:
            probe.stop()


@pytest.mark.root
def test_the_python_tab_takes_its_stacks_from_the_profile_s_samples() -> None:
    from probes.sources.python_stacks import PythonStacksProbe, derive_python_stacks

    target = started(CPYTHONS[0], "python_70_30.py")
    try:
        profile = start(ProfileProbe(target.pid))
        python = PythonStacksProbe(target.pid, profile=profile)
        python.start()
        try:
            profile.sample()
            python.sample()
            time.sleep(3.0)
            profile.sample()
            sample = python.sample()
        finally:
            python.stop()
            profile.stop()
    finally:
        target.kill()
        target.wait()
    view = derive_python_stacks(sample, sample, 3.0)
    totals = {f.name.split(" (")[0]: f.total_percent for f in view.top_total}
    assert view.sampled_by == "ebpf" and view.samples > 200, (view.sampled_by, view.samples)
    assert abs(totals.get("hot_f", 0) - 70) <= 7 and abs(totals.get("hot_g", 0) - 30) <= 7, totals


@pytest.mark.root
def test_a_python_older_than_3_11_keeps_its_native_profile_and_says_why_in_one_line() -> None:
    older = PYENV / "3.10.13" / "bin" / "python3"
    if not older.exists():
        cannot_run(f"{older} is not installed (pyenv)")
    view = python_profile(str(older), "python_70_30.py", 1.0)
    assert view.python_note == "Python 3.10: orac reads the frames of 3.11 and newer", view.python_note
    assert view.samples > 50 and not any("(python_70_30.py:" in f for s in view.stacks for f in s.frames)
    # the interpreter's own frames, as before orac read Python frames
    assert any("_PyEval_EvalFrameDefault" in f for s in view.stacks for f in s.frames), [s.frames for s in view.stacks[:3]]
