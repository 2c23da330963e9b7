"""The drill-down's per-thread breakdown: the threads probe, the eBPF probes' focus, the pane.

Pure parts everywhere; the threads probe on a real helper process (no root
needed); the per-thread syscall and off-CPU counts with real eBPF as root
(skipped elsewhere, a failure with ORAC_REQUIRE_EBPF=1).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import WORKLOADS
from support.ebpf import compile_helper, start
from support.synthetic_threads import PID, drill_frames

from probes.contract import ProbeUnavailable
from probes.model.collector import Collector
from probes.model.frame import Frame
from probes.model.joins import join_threads
from probes.model.views import derive_frame
from probes.sources.offcpu import OffCpuProbe, derive_offcpu, parse_thread_blocks
from probes.sources.syscalls import SyscallProbe, derive_syscalls, parse_threads
from probes.sources.threads import (
    ThreadSample,
    ThreadsProbe,
    ThreadsSample,
    derive_threads,
    parse_schedstat,
    parse_thread_stat,
)
from tui.threads_pane import ThreadsPane

HELPER_SOURCE = WORKLOADS / "thread_workload.c"
MS = 1_000_000
S = 1_000_000_000

STAT = (
    b"2011 (pt (data) 0) S 2002 2002 412 34816 2002 1077936192 1500 0 3 0 250 40 0 0 20 0 12 0 "
    b"3456789 1234567890 5000 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 -1 3 0 0 0 0 0"
)


# ---- the threads probe ----------------------------------------------------------


def test_parse_thread_stat_reads_past_a_name_with_parentheses() -> None:
    name, state, last_cpu, start_ns, ticks_ns = parse_thread_stat(STAT)
    ticks = os.sysconf("SC_CLK_TCK")
    assert (name, state, last_cpu) == ("pt (data) 0", "S", 3)
    assert start_ns == 3456789 * (S // ticks)
    assert ticks_ns == (250 + 40) * (S // ticks)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [(b"179390395 16927266 620\n", (179390395, 16927266)), (b"", None), (None, None), (b"12\n", None)],
)
def test_parse_schedstat(text: bytes | None, parsed: tuple[int, int] | None) -> None:
    assert parse_schedstat(text) == parsed


def thread(tid: int, on_cpu_ms: int, delay_ms: int | None = 0, start_s: int = 1, name: str = "t") -> ThreadSample:
    return ThreadSample(tid, name, "R", 0, start_s * S, on_cpu_ms * MS, None if delay_ms is None else delay_ms * MS)


def test_derive_threads_gives_cpu_and_run_queue_percent_of_the_interval() -> None:
    prev = ThreadsSample(10, (thread(10, 1000, 50), thread(11, 200, 0), thread(12, 500, 0, start_s=1)))
    curr = ThreadsSample(
        10,
        (
            thread(10, 1500, 150),  # 500 ms on CPU, 100 ms waiting, in 2 s
            thread(11, 200, 0),  # idle
            thread(12, 40, 10, start_s=7),  # tid 12 reused by a new thread: all its time is new
            thread(13, 300, None),  # born in the interval, no schedstat
        ),
    )
    view = derive_threads(prev, curr, 2.0)
    by_tid = {t.tid: t for t in view.threads}
    assert by_tid[10].cpu_percent == pytest.approx(25.0) and by_tid[10].run_delay_percent == pytest.approx(5.0)
    assert by_tid[11].cpu_percent == 0.0
    assert by_tid[12].cpu_percent == pytest.approx(2.0) and by_tid[12].run_delay_percent == pytest.approx(0.5)
    assert by_tid[13].cpu_percent == pytest.approx(15.0) and by_tid[13].run_delay_percent is None
    assert [t.tid for t in view.threads] == [10, 13, 12, 11]  # busiest first


def test_another_process_threads_are_no_baseline() -> None:
    view = derive_threads(ThreadsSample(10, (thread(10, 0),)), ThreadsSample(20, (thread(20, 9000),)), 1.0)
    assert view.pid == 20 and view.threads == ()


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_helper(HELPER_SOURCE, tmp_path_factory.mktemp("helpers"), "-O1", "-pthread")


class Workload:
    """thread_workload running: its pid, and its threads' ids by name."""

    def __init__(self, helper: Path, calls: int, sleeps: int, sleep_ms: int, spin_ms: int) -> None:
        self.proc = subprocess.Popen(
            [str(helper), str(calls), str(sleeps), str(sleep_ms), str(spin_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid
        self.tids = {}
        for _ in range(3):
            name, tid = self.proc.stdout.readline().split()
            self.tids[name] = int(tid)

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait_done(self) -> None:
        assert self.proc.stdout.readline().strip() == "done"

    def end(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def workload(helper: Path) -> Iterator[Workload]:
    w = Workload(helper, calls=20_000, sleeps=5, sleep_ms=40, spin_ms=600)
    yield w
    w.end()


def test_threads_probe_names_each_thread_and_sees_the_spinner_busy(workload: Workload) -> None:
    probe = ThreadsProbe(workload.pid)
    probe.start()
    first = probe.sample()
    names = {t.tid: t.name for t in first.threads}
    assert names == {workload.pid: "thread_workload", **{tid: name for name, tid in workload.tids.items()}}
    workload.go()
    started = time.monotonic()
    time.sleep(0.3)  # the spinner is half way through
    second = probe.sample()
    view = derive_threads(first, second, time.monotonic() - started)
    by_name = {t.name: t for t in view.threads}
    # the caller and sleeper are done by now; the main thread waits for them in pthread_join
    spinner, main = by_name["spinner"], by_name["thread_workload"]
    # Spinning, it is always on a CPU or waiting for one, however busy the box.
    assert spinner.run_delay_percent is not None
    assert spinner.cpu_percent + spinner.run_delay_percent > 80, view.threads
    assert spinner.cpu_percent > 5 * main.cpu_percent, view.threads
    workload.wait_done()
    workload.end()
    gone = probe.sample()
    assert gone.exited and gone.threads == ()


def test_threads_probe_of_a_gone_process_says_so() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProbeUnavailable, match=f"process {proc.pid} has exited"):
        ThreadsProbe(proc.pid).start()


# ---- the eBPF probes' per-thread maps -------------------------------------------------


def test_parse_per_thread_syscalls_sums_every_cpus_copy() -> None:
    keys = struct.pack("=III", 7, 71, 3) + struct.pack("=III", 7, 72, 3)
    values = struct.pack("=QQQ", 10, 1, 1000) + struct.pack("=QQQ", 5, 0, 500)  # tid 71 on two CPUs
    values += struct.pack("=QQQ", 0, 0, 0) * 2  # tid 72: nothing (deleted under a program)
    threads = parse_threads(keys, values, 2)
    assert [(t.pid, t.tid, t.calls, t.errors, t.latency_total_ns) for t in threads] == [(7, 71, 15, 1, 1500)]


def test_parse_per_thread_blocks_names_the_state() -> None:
    keys = struct.pack("=IIB3xI", 7, 71, 1, 3) + struct.pack("=IIB3xI", 7, 71, 2, 3)
    values = struct.pack("=QQ", 40 * MS, 2) + struct.pack("=QQ", 10 * MS, 1)
    values += struct.pack("=QQ", 7 * MS, 1) + struct.pack("=QQ", 0, 0)
    threads = parse_thread_blocks(keys, values, 2)
    assert [(t.tid, t.state, t.off_cpu_ns, t.blocks) for t in threads] == [(71, "S", 50 * MS, 3), (71, "D", 7 * MS, 1)]


def test_derive_rates_the_focus_threads() -> None:
    frame_prev, frame = drill_frames()
    views = derive_frame(frame_prev, frame)
    syscalls, offcpu = views["syscalls"], views["offcpu"]
    assert syscalls.focus_pid == PID and offcpu.focus_pid == PID
    assert [(t.tid, t.calls_per_s, t.errors_per_s, t.mean_latency_ns) for t in syscalls.threads] == [
        (2011, 9000.0, 300.0, 20_000.0), (2012, 1200.0, 0.0, 600_000.0), (2002, 12.0, 0.0, 80.0 * MS),
    ]
    pt_data_1 = next(t for t in offcpu.threads if t.tid == 2012)
    assert pt_data_1.off_cpu_s_per_s == pytest.approx(0.95)
    assert pt_data_1.state_s_per_s == {"R": 0.0, "S": pytest.approx(0.25), "D": pytest.approx(0.7), "other": 0.0}
    assert [t.tid for t in offcpu.threads] == [2002, 2012, 2011, 2013]  # most off-CPU time first
    assert derive_syscalls(frame_prev.samples["syscalls"], frame_prev.samples["syscalls"], 1.0).threads[0].tid == 2011
    assert derive_offcpu(frame.samples["offcpu"], frame.samples["offcpu"], 2.0).threads[0].off_cpu_s_per_s == pytest.approx(0.49)


# ---- the join ----------------------------------------------------------------------


def test_join_puts_each_threads_numbers_on_one_row() -> None:
    views = derive_frame(*drill_frames())
    rows = {r.tid: r for r in join_threads(views["threads"], views["offcpu"], views["syscalls"], None)}
    assert set(rows) == {2002, 2010, 2011, 2012, 2013}
    main = rows[2010]
    assert (main.name, main.state, main.last_cpu) == ("pt_main_thread", "R", 2)
    assert main.cpu_percent == pytest.approx(93.0) and main.run_delay_percent == pytest.approx(4.5)
    # measured by tracers that saw all of 2002's threads: none, so zero
    assert (main.off_cpu_s_per_s, main.syscalls_per_s, main.syscall_mean_ns) == (0.0, 0.0, None)
    data_1 = rows[2012]
    assert data_1.off_cpu_d_s_per_s == pytest.approx(0.7) and data_1.syscalls_per_s == 1200.0
    # exited within the interval: its eBPF numbers stay, /proc has none
    gone = rows[2013]
    assert (gone.name, gone.state, gone.cpu_percent) == ("(exited)", "", None)
    assert gone.off_cpu_s_per_s == pytest.approx(0.04)


def test_join_without_focus_leaves_ebpf_numbers_unmeasured() -> None:
    views = derive_frame(*drill_frames(focus=False))
    rows = join_threads(views["threads"], views["offcpu"], views["syscalls"], None)
    assert {r.tid for r in rows} == {2002, 2010, 2011, 2012}
    assert all(r.off_cpu_s_per_s is None and r.syscalls_per_s is None for r in rows)


def test_join_names_an_exited_thread_from_the_profile() -> None:
    from probes.sources.profile import ProfileView

    views = derive_frame(*drill_frames())
    profile = ProfileView((), (), (), {2013: "pt_data_2"}, 0, 0.0, {}, 99, PID, False)
    rows = {r.tid: r for r in join_threads(views["threads"], views["offcpu"], views["syscalls"], profile)}
    assert rows[2013].name == "pt_data_2"


# ---- the collector's focus ----------------------------------------------------------------


class FocusProbe:
    slow_start = False

    def __init__(self, name: str, slow: bool = False) -> None:
        self.name = name
        self.slow_start = slow
        self.focus_pid: int | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def sample(self) -> int:
        return 0

    def focus(self, pid: int | None) -> None:
        self.focus_pid = pid


def test_collector_focus_reaches_running_probes_and_those_that_start_later() -> None:
    # Names no probe spec has: a spec's derive would take these samples for
    # its own, fail on the second tick, and end the collector thread (which
    # stops every probe, the late one with them).
    running = FocusProbe("focus-running")
    collector = Collector([running], interval_s=0.2)
    frames: list[Frame] = []
    collector.start(lambda frame, views: frames.append(frame))
    try:
        deadline = time.monotonic() + 5
        while running not in collector.running:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        collector.focus(42)
        assert running.focus_pid == 42
        late = FocusProbe("focus-late", slow=True)
        collector.add_probes([late])
        while late not in collector.running:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert late.focus_pid == 42
        # and the collector still ticks, the late probe in its frames
        while not any(late.name in f.samples for f in frames[-3:]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        collector.focus(None)
        assert running.focus_pid is None and late.focus_pid is None
    finally:
        collector.stop()


# ---- the pane ------------------------------------------------------------------------------


async def open_threads_tab(app, pilot) -> ThreadsPane:
    from support.harness import until_drawn

    from tui.process_screen import ProcessScreen
    from tui.process_table import ProcessTable

    await until_drawn(pilot, app, app.source._frames)
    app.post_message(ProcessTable.Selected(PID))
    await until(pilot, lambda: isinstance(app.screen, ProcessScreen) and app.screen.query(ThreadsPane))
    await pilot.pause()
    await pilot.press("4")
    pane = app.screen.query_one(ThreadsPane)
    # fed, and on screen (the tab shown)
    await until(pilot, lambda: pane.view is not None and pane.query_one("#threads").rows and pane.region.height > 0)
    await pilot.pause()
    return pane


async def until(pilot, predicate, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


async def test_threads_tab_shows_every_thread_with_its_ebpf_numbers() -> None:
    from support.harness import make_app

    from tui.screenshot import capture

    app = make_app(drill_frames())
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_threads_tab(app, pilot)
        text = capture(app)[1]
        assert "Threads 4, 1 running" in text
        row = next(line for line in text.splitlines() if "pt_data_1" in line)
        # tid, state, last CPU, CPU%, RQ%, OFFCPU, OFF-D, SYSC/s, ERR/s, AVG-LAT
        assert row.split()[1:12] == ["2012", "D", "3", "1.0", "0.0", "0.95", "0.70", "1.2k", "0", "600us", "pt_data_1"]
        assert pane.border_subtitle == ""


async def test_threads_tab_without_focus_says_why_the_ebpf_columns_are_empty() -> None:
    from support.harness import make_app

    from tui.screenshot import capture

    frames = drill_frames(focus=False)
    frames = [dataclasses.replace(f, unavailable={**f.unavailable, "syscalls": ("no root", "sudo orac")}) for f in frames]
    frames = [dataclasses.replace(f, samples={k: v for k, v in f.samples.items() if k != "syscalls"}) for f in frames]
    app = make_app(frames)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await open_threads_tab(app, pilot)
        text = capture(app)[1]
        row = next(line for line in text.splitlines() if "pt_main_thread" in line)
        assert row.split()[1:12] == ["2010", "R", "2", "93.0", "4.5", "-", "-", "-", "-", "-", "pt_main_thread"]
        assert pane.border_subtitle == (
            "off-CPU: not counted per thread for this process in what is shown; syscalls: no root"
        )


# ---- real eBPF, as root ---------------------------------------------------------------------------


def test_focus_counts_each_thread_of_one_process(workload: Workload, helper: Path) -> None:
    syscalls = start(SyscallProbe())
    offcpu = start(OffCpuProbe())
    bystander = Workload(helper, calls=50_000, sleeps=3, sleep_ms=20, spin_ms=0)
    try:
        syscalls.focus(workload.pid)
        offcpu.focus(workload.pid)
        syscalls.sample()
        offcpu.sample()
        workload.go()
        bystander.go()
        workload.wait_done()
        bystander.wait_done()
        time.sleep(0.05)
        calls: dict[int, int] = defaultdict(int)
        off_ns: dict[tuple[int, str], int] = defaultdict(int)
        tids_seen = set()
        for sample in (syscalls.sample(),):
            assert sample.focus_pid == workload.pid
            for t in sample.threads:
                calls[t.tid] += t.calls
                tids_seen.add(t.tid)
        for sample in (offcpu.sample(),):
            assert sample.focus_pid == workload.pid
            for t in sample.threads:
                off_ns[t.tid, t.state] += t.off_cpu_ns
                tids_seen.add(t.tid)
        tids = workload.tids
        # only the focus process's threads; the bystander's are not counted
        assert tids_seen <= {workload.pid, *tids.values()}, (tids_seen, workload.tids)
        # the caller's getppid calls, and a few futex and exit calls around them
        assert 20_000 <= calls[tids["caller"]] <= 20_050, calls
        assert calls[tids["spinner"]] <= 20, calls
        # five 40 ms sleeps, each a block in S
        slept_ms = off_ns[tids["sleeper"], "S"] / MS
        assert 5 * 40 <= slept_ms <= 5 * 40 * 1.3, off_ns
        assert off_ns[tids["spinner"], "S"] < 20 * MS, off_ns

        syscalls.focus(None)
        offcpu.focus(None)
        syscalls.sample()
        offcpu.sample()
        time.sleep(0.05)
        assert syscalls.sample().threads == () and offcpu.sample().threads == ()
    finally:
        bystander.end()
        syscalls.stop()
        offcpu.stop()


def test_a_process_probe_counts_its_threads_without_being_asked(workload: Workload) -> None:
    syscalls = start(SyscallProbe(target_pid=workload.pid))
    try:
        syscalls.sample()
        workload.go()
        workload.wait_done()
        sample = syscalls.sample()
        caller = next(t for t in sample.threads if t.tid == workload.tids["caller"])
        assert 20_000 <= caller.calls <= 20_050
    finally:
        syscalls.stop()
