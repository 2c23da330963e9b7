"""Derived views (rates, percentages) from two raw samples, and ProcessHistory.

The expectations are computed by hand from tests/fixtures/proc (t0 -> t1 is
one second). CPU and process times there are in clock ticks; at USER_HZ=100
one tick is 10 ms, so over 1 s "N ticks" of one process is N % of one core.
The helpers below convert with the real USER_HZ so the tests hold anywhere.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from dataclasses import astuple, replace
from pathlib import Path

import pytest

from probes.host.procfs import CLOCK_TICKS_PER_S, PAGE_SIZE_BYTES
from probes.model.frame import Frame
from probes.model.history import ProcessHistory
from probes.model.views import derive_frame
from probes.sources.processes import (
    ProcessesSample,
    ProcessesView,
    ProcessProbe,
    ProcessView,
    ProcSample,
    derive_processes,
)
from probes.sources.system import (
    CpuUsage,
    Pressure,
    SystemProbe,
    SystemView,
    derive_system,
)

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
T0 = FIXTURES / "t0"
T1 = FIXTURES / "t1"
KIB = 1024
DT_S = 1.0


def core_percent(ticks: int, dt_s: float = DT_S) -> float:
    """CPU % of one core for `ticks` clock ticks of CPU time over dt_s."""
    return ticks / CLOCK_TICKS_PER_S / dt_s * 100


@pytest.fixture(scope="module")
def system_view() -> SystemView:
    return derive_system(SystemProbe(proc=str(T0)).sample(), SystemProbe(proc=str(T1)).sample(), DT_S)


@pytest.fixture(scope="module")
def processes_view() -> ProcessesView:
    return derive_processes(ProcessProbe(proc=str(T0)).sample(), ProcessProbe(proc=str(T1)).sample(), DT_S)


def by_pid(view: ProcessesView) -> dict[int, ProcessView]:
    return {p.pid: p for p in view.processes}


# --- derive_system ---------------------------------------------------------


def test_per_cpu_usage(system_view: SystemView) -> None:
    # cpu0 deltas (ticks): user 30 nice 10 system 15 idle 30 iowait 5 irq 2
    # softirq 3 steal 5 = 100 ticks (guest +20 is inside user, ignored).
    #   user   = (30+10)/100 = 40 %      system = 15 %     iowait = 5 %
    #   steal  = 5 %                     irq    = (2+3)/100 = 5 %
    #   busy   = user + system + steal + irq = 40+15+5+5 = 65 % (iowait is idle)
    # cpu1 deltas: user 5 system 5 idle 80 iowait 10, rest 0 = 100 ticks.
    #   busy = 5 + 5 = 10 %, iowait 10 %
    # fields: busy, user, system, iowait, steal, irq, cpu_id
    assert [astuple(c) for c in system_view.cpus] == [
        pytest.approx((65.0, 40.0, 15.0, 5.0, 5.0, 5.0, 0)),
        pytest.approx((10.0, 5.0, 5.0, 10.0, 0.0, 0.0, 1)),
    ]
    assert system_view.cpus[0] == CpuUsage(
        busy_percent=pytest.approx(65.0), user_percent=pytest.approx(40.0),
        system_percent=pytest.approx(15.0), iowait_percent=pytest.approx(5.0),
        steal_percent=pytest.approx(5.0), irq_percent=pytest.approx(5.0), cpu_id=0,
    )


def test_total_cpu_usage(system_view: SystemView) -> None:
    # "cpu" line deltas: the sum of both CPUs = 200 ticks.
    #   user (35+10)/200 = 22.5   system 20/200 = 10   iowait 15/200 = 7.5
    #   steal 5/200 = 2.5         irq (2+3)/200 = 2.5
    #   busy 22.5 + 10 + 2.5 + 2.5 = 37.5
    t = system_view.cpu_total
    assert (t.busy_percent, t.user_percent, t.system_percent, t.iowait_percent, t.steal_percent,
            t.irq_percent) == pytest.approx((37.5, 22.5, 10.0, 7.5, 2.5, 2.5))


def test_rates(system_view: SystemView) -> None:
    # ctxt 1_000_000 -> 1_012_345, intr 500_000 -> 503_000,
    # pgfault 2_000_000 -> 2_004_500, pgmajfault 300 -> 312, over 1 s
    assert system_view.context_switches_per_s == pytest.approx(12_345.0)
    assert system_view.interrupts_per_s == pytest.approx(3_000.0)
    assert system_view.page_faults_per_s == pytest.approx(4_500.0)
    assert system_view.major_page_faults_per_s == pytest.approx(12.0)


def test_rates_scale_with_the_interval() -> None:
    view = derive_system(SystemProbe(proc=str(T0)).sample(), SystemProbe(proc=str(T1)).sample(), 0.5)
    # the same counter deltas over half a second: twice the rate
    assert view.context_switches_per_s == pytest.approx(24_690.0)
    assert view.page_faults_per_s == pytest.approx(9_000.0)
    # percentages are shares of CPU time, not of wall time: unchanged
    assert view.cpu_total.busy_percent == pytest.approx(37.5)


def test_memory(system_view: SystemView) -> None:
    # t1 meminfo (kB): total 8_000_000, available 5_000_000, free 1_900_000,
    # buffers 100_000, cached 2_500_000 + SReclaimable 200_000 = 2_700_000,
    # shmem 40_000. used = total - available, as procps free and top (4.x)
    # count it: 8_000_000 - 5_000_000 = 3_000_000.
    assert system_view.memory_total_bytes == 8_000_000 * KIB
    assert system_view.memory_used_bytes == 3_000_000 * KIB
    assert system_view.memory_free_bytes == 1_900_000 * KIB
    assert system_view.memory_cached_bytes == 2_700_000 * KIB
    assert system_view.memory_shmem_bytes == 40_000 * KIB
    assert system_view.memory_buffers_bytes == 100_000 * KIB
    assert system_view.memory_available_bytes == 5_000_000 * KIB
    # swap 1_000_000 total - 900_000 free
    assert system_view.swap_used_bytes == 100_000 * KIB


def test_current_values_come_from_the_newer_sample(system_view: SystemView) -> None:
    assert system_view.uptime_s == 10001.0
    assert system_view.load_avg == (0.61, 0.60, 0.59)
    assert system_view.pressure["cpu"] == Pressure(1.5, 5_020_000, None, None)


def test_missing_fault_counters_stay_none() -> None:
    prev = SystemProbe(proc=str(T0)).sample()
    curr = SystemProbe(proc=str(T1)).sample()
    view = derive_system(replace(prev, page_faults=None, major_page_faults=None), curr, 1.0)
    assert view.page_faults_per_s is None
    assert view.major_page_faults_per_s is None


# --- derive_processes ------------------------------------------------------


def test_process_cpu_percent(processes_view: ProcessesView) -> None:
    procs = by_pid(processes_view)
    # utime+stime deltas in ticks over 1 s:
    #   1   systemd   (502+301) - (500+300)     = 3   ->   3 %
    #   2   kthreadd  identical                 = 0   ->   0 %
    #   100 weird     (1020+205) - (1000+200)   = 25  ->  25 %
    #   150 oldv1     (10+11) - (10+10)         = 1   ->   1 %
    #   200 nginx     (40010+9000)-(40000+9000) = 10  ->  10 %
    #   600 worker    (5120+1030)-(5000+1000)   = 150 -> 150 % (8 threads, >1 core)
    expected_ticks = {1: 3, 2: 0, 100: 25, 150: 1, 200: 10, 600: 150}
    for pid, ticks in expected_ticks.items():
        assert procs[pid].cpu_percent == pytest.approx(core_percent(ticks)), pid


def test_process_new_in_t1_counts_all_its_cpu_time(processes_view: ProcessesView) -> None:
    # pid 300 exists only in t1 with utime 40 + stime 8 = 48 ticks: it started
    # within the interval, so all 48 ticks were spent in it -> 48 %.
    p = by_pid(processes_view)[300]
    assert p.cpu_percent == pytest.approx(core_percent(48))
    assert (p.ppid, p.name, p.command) == (100, "python3", "python3 -c pass")


def test_pid_reuse_is_a_new_process(processes_view: ProcessesView) -> None:
    # pid 400: t0 "oldproc" started at tick 5000 with 800 ticks of CPU;
    # t1 "newproc" started at tick 1000050 with 20+10 = 30 ticks.
    # Comparing against oldproc would give max(0, 30-800) = 0; the right
    # answer is all of newproc's 30 ticks -> 30 %.
    p = by_pid(processes_view)[400]
    assert p.name == "newproc"
    assert p.cpu_percent == pytest.approx(core_percent(30))


def test_exited_process_is_gone(processes_view: ProcessesView) -> None:
    assert 500 not in by_pid(processes_view)
    assert len(processes_view.processes) == 8


def test_process_view_fields(processes_view: ProcessesView) -> None:
    procs = by_pid(processes_view)
    weird = procs[100]
    assert weird.rss_bytes == 2816 * PAGE_SIZE_BYTES
    assert weird.cpu_time_s == pytest.approx((1020 + 205) / CLOCK_TICKS_PER_S)
    assert weird.command == "./weird --flag"
    assert weird.cgroup == "session-2.scope"
    assert (weird.state, weird.num_threads) == ("R", 2)
    # a kernel thread has no cmdline; ps and top show its name in brackets
    assert procs[2].command == "[kthreadd]"
    assert procs[200].cgroup == "docker-3f2a9c1b8e7d"
    assert procs[1].cgroup == "init.scope"
    assert procs[2].cgroup == "/"
    # threads of all t1 processes: 1+1+2+1+4+1+1+8
    assert processes_view.num_threads == 19
    assert processes_view.unreadable == 0


def test_unreadable_count_comes_from_current_sample() -> None:
    prev = ProcessesSample((), unreadable=7)
    curr = ProcessesSample((), unreadable=3)
    assert derive_processes(prev, curr, 1.0).unreadable == 3


def make_proc(pid: int, utime_ns: int, stime_ns: int = 0, start_ns: int = 0, name: str = "p") -> ProcSample:
    return ProcSample(pid=pid, ppid=1, state="R", name=name, cmdline="", user="u", cgroup="/",
                      cpu_user_ns=utime_ns, cpu_system_ns=stime_ns, rss_bytes=0, num_threads=1,
                      start_time_ns=start_ns)


def test_process_cpu_percent_uses_dt_and_never_goes_negative() -> None:
    prev = ProcessesSample((make_proc(10, 1_000_000_000), make_proc(11, 5_000_000_000)), 0)
    # pid 10: +250 ms over 0.5 s = 50 %; pid 11's counter went backwards
    # (cannot happen for one process; must not show a negative %)
    curr = ProcessesSample((make_proc(10, 1_200_000_000, 50_000_000), make_proc(11, 4_000_000_000)), 0)
    procs = by_pid(derive_processes(prev, curr, 0.5))
    assert procs[10].cpu_percent == pytest.approx(50.0)
    assert procs[11].cpu_percent == 0.0


# --- derive_frame ----------------------------------------------------------


def undated(sample):
    """A fixture sample without its read time: it covers its frames' interval."""
    return replace(sample, mono_ns=None)


@pytest.fixture(scope="module")
def frames() -> tuple[Frame, Frame]:
    f0 = Frame(wall_ns=1_700_000_000_000_000_000, mono_ns=5_000_000_000, samples={
        "cpu": undated(SystemProbe(proc=str(T0)).sample()), "procs": undated(ProcessProbe(proc=str(T0)).sample())})
    f1 = Frame(wall_ns=1_700_000_001_000_000_000, mono_ns=6_000_000_000, samples={
        "cpu": undated(SystemProbe(proc=str(T1)).sample()), "procs": undated(ProcessProbe(proc=str(T1)).sample())})
    return f0, f1


def test_derive_frame(frames: tuple[Frame, Frame]) -> None:
    views = derive_frame(*frames)
    assert set(views) == {"cpu", "procs"}
    assert views["cpu"].context_switches_per_s == pytest.approx(12_345.0)
    assert by_pid(views["procs"])[100].cpu_percent == pytest.approx(core_percent(25))


def test_derive_frame_uses_monotonic_not_wall_clock(frames: tuple[Frame, Frame]) -> None:
    f0, f1 = frames
    # The wall clock jumped back an hour; the monotonic clock says 2 s passed.
    f1 = Frame(wall_ns=f0.wall_ns - 3600 * 10**9, mono_ns=f0.mono_ns + 2_000_000_000, samples=f1.samples)
    views = derive_frame(f0, f1)
    assert views["cpu"].context_switches_per_s == pytest.approx(12_345.0 / 2)
    assert by_pid(views["procs"])[100].cpu_percent == pytest.approx(core_percent(25, dt_s=2.0))


def test_rates_divide_by_the_time_between_the_probes_own_reads() -> None:
    # The frames are 1 s apart, but the process table was read 0.6 s into the
    # first tick (a slow first sample) and at once in the second: its
    # counters cover 0.4 s. pid 10 ran 0.4 s of it: one whole core.
    prev = ProcessesSample((make_proc(10, 1_000_000_000),), 0, mono_ns=5_600_000_000)
    curr = ProcessesSample((make_proc(10, 1_400_000_000),), 0, mono_ns=6_000_000_000)
    f0 = Frame(wall_ns=0, mono_ns=5_000_000_000, samples={"procs": prev, "cpu": undated(SystemProbe(proc=str(T0)).sample())})
    f1 = Frame(wall_ns=10**9, mono_ns=6_000_000_000, samples={"procs": curr, "cpu": undated(SystemProbe(proc=str(T1)).sample())})
    views = derive_frame(f0, f1)
    assert by_pid(views["procs"])[10].cpu_percent == pytest.approx(100.0)
    # Samples that do not say when they were read (recorded before orac kept
    # that) cover the interval between their frames, as they always did.
    assert views["cpu"].context_switches_per_s == pytest.approx(12_345.0)


def test_a_recording_made_before_samples_were_dated_replays_at_its_frames_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probes.store import codec
    from probes.store.reader import Recording
    from probes.store.writer import Recorder

    # Sampled now, so dated microseconds apart, but recorded as an older orac
    # recorded them: without the field, in frames one second apart.
    samples = [{"cpu": SystemProbe(proc=str(t)).sample(), "procs": ProcessProbe(proc=str(t)).sample()} for t in (T0, T1)]
    frames = [Frame(wall_ns=(1000 + i) * 10**9, mono_ns=(5 + i) * 10**9, samples=s) for i, s in enumerate(samples)]
    fields = codec.init_fields
    with monkeypatch.context() as m:
        m.setattr(codec, "init_fields", lambda cls: tuple(f for f in fields(cls) if f != "mono_ns"))
        with Recorder(tmp_path / "old.orac", interval_s=1.0, redact=False) as recorder:
            for frame in frames:
                assert recorder.append(frame)
    with Recording(tmp_path / "old.orac") as recording:
        replayed = [recording.frame(i) for i in range(len(recording))]
    assert replayed[1].samples["procs"].mono_ns is None
    views = derive_frame(*replayed)
    assert views["cpu"].context_switches_per_s == pytest.approx(12_345.0)
    assert by_pid(views["procs"])[100].cpu_percent == pytest.approx(core_percent(25))


def test_every_rate_probe_says_when_it_read_its_counters() -> None:
    from probes.sources.offcpu import OffCpuSample
    from probes.sources.profile import ProfileSample
    from probes.sources.syscalls import SyscallsSample
    from probes.sources.system import SystemSample
    from probes.sources.threads import ThreadsSample

    for cls in (SystemSample, ProcessesSample, SyscallsSample, OffCpuSample, ProfileSample, ThreadsSample):
        field = {f.name: f for f in dataclasses.fields(cls)}.get("mono_ns")
        # with a default, so that recordings made without it still load
        assert field is not None and field.default is None, cls
    for probe in (SystemProbe(), ProcessProbe()):
        before = time.monotonic_ns()
        sample = probe.sample()
        assert before <= sample.mono_ns <= time.monotonic_ns()


def test_derive_frame_a_failing_derive_is_said_and_spares_the_others(frames: tuple[Frame, Frame]) -> None:
    f0, f1 = (replace(f, samples={**f.samples, "syscalls": 0}) for f in frames)
    views = derive_frame(f0, f1)
    assert set(views) == {"cpu", "procs"}
    reason, remedy = views.failed["syscalls"]
    assert reason.startswith("syscalls view failed: AttributeError(") and remedy == "please report this as a bug"


def test_derive_frame_first_frame_is_empty(frames: tuple[Frame, Frame]) -> None:
    assert derive_frame(None, frames[0]) == {}


@pytest.mark.parametrize("dt_ns", [0, -1, -1_000_000_000])
def test_derive_frame_non_positive_interval_is_empty(frames: tuple[Frame, Frame], dt_ns: int) -> None:
    f0, f1 = frames
    later = Frame(wall_ns=f1.wall_ns, mono_ns=f0.mono_ns + dt_ns, samples=f1.samples)
    assert derive_frame(f0, later) == {}


def test_derive_frame_only_probes_in_both_frames(frames: tuple[Frame, Frame]) -> None:
    f0, f1 = frames
    only_cpu = Frame(wall_ns=f0.wall_ns, mono_ns=f0.mono_ns, samples={"cpu": f0.samples["cpu"]})
    with_unknown = Frame(wall_ns=f1.wall_ns, mono_ns=f1.mono_ns,
                         samples={**f1.samples, "gpu-from-the-future": object()})
    assert set(derive_frame(only_cpu, with_unknown)) == {"cpu"}


# --- a real workload -------------------------------------------------------

SPIN = (
    "import sys, time\n"
    "end = time.monotonic() + 1.5\n"
    "print('spinning', flush=True)\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


def run_ns(pid: int) -> int | None:
    """Time the scheduler ran `pid`'s main thread, in ns (needs CONFIG_SCHED_INFO)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_real_busy_loop_is_about_one_core() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "spinning\n"  # the loop is running now
        probe = ProcessProbe()
        # schedstat readings bracket each probe sample, as an independent,
        # ns-precise account of the CPU time the child got
        before0 = run_ns(child.pid)
        f0 = Frame(wall_ns=time.time_ns(), mono_ns=time.monotonic_ns(), samples={"procs": probe.sample()})
        after0 = run_ns(child.pid)
        time.sleep(0.5)
        before1 = run_ns(child.pid)
        f1 = Frame(wall_ns=time.time_ns(), mono_ns=time.monotonic_ns(), samples={"procs": probe.sample()})
        after1 = run_ns(child.pid)
        still_running = child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert still_running, "the busy loop ended before the second sample"
    cpu = by_pid(derive_frame(f0, f1)["procs"])[child.pid].cpu_percent
    # One thread spinning is ~100 % of one core. Tolerance: CPU time comes in
    # clock ticks (10 ms at USER_HZ=100), so each of the two readings can be
    # off by up to one tick: +-20 ms over 500 ms = +-4 %, hence <= 105. The
    # lower bound leaves room for a shared VM (steal, the test runner and the
    # probe competing on few CPUs) while still failing if the % were computed
    # against the wrong interval, in ticks instead of ns, or per all CPUs.
    # It assumes the box has about one CPU free for the child: with every CPU
    # saturated by other work the child really gets less, and this fails.
    assert 60.0 <= cpu <= 105.0, cpu

    if None in (before0, after0, before1, after1):
        return
    # Load-independent check: the CPU time orac saw must match what the
    # scheduler accounted between the two samples. The stat reads happened
    # somewhere inside each bracket, and /proc/PID/stat truncates to whole
    # ticks (one tick per reading, two in all).
    dt_s = (f1.mono_ns - f0.mono_ns) / 1e9
    orac_ns = cpu / 100 * dt_s * 1e9
    tick_ns = 1e9 / CLOCK_TICKS_PER_S
    low = before1 - after0 - 2 * tick_ns
    high = after1 - before0 + 2 * tick_ns
    assert low <= orac_ns <= high, (orac_ns, low, high)


# --- ProcessHistory --------------------------------------------------------


def pview(pid: int, cpu: float, rss: int) -> ProcessView:
    return ProcessView(pid=pid, ppid=1, user="u", state="R", cpu_percent=cpu, rss_bytes=rss, num_threads=1,
                       cpu_time_s=0.0, cgroup="/", name="p", command="p", start_time_ns=pid)


PAGE = 4096  # RSS is whole pages


def test_history_series_for_a_pid() -> None:
    h = ProcessHistory(ticks=10)
    h.add([pview(1, 10.0, 1000 * PAGE), pview(2, 50.0, 2000 * PAGE)])
    h.add([pview(1, 12.5, 1100 * PAGE), pview(2, 60.0, 2100 * PAGE)])
    h.add([pview(2, 70.0, 2200 * PAGE), pview(1, 15.25, 1200 * PAGE)])  # order within a tick does not matter
    cpu, rss = h.series(1)
    assert cpu == pytest.approx([10.0, 12.5, 15.25])
    assert rss == [1000 * PAGE, 1100 * PAGE, 1200 * PAGE]
    assert h.series(2) == (pytest.approx([50.0, 60.0, 70.0]), [2000 * PAGE, 2100 * PAGE, 2200 * PAGE])


def test_history_keeps_only_the_last_n_ticks() -> None:
    h = ProcessHistory(ticks=3)
    for i in range(5):
        h.add([pview(7, float(i), 100 * i * PAGE)])
    cpu, rss = h.series(7)
    assert cpu == pytest.approx([2.0, 3.0, 4.0])  # oldest first, ticks 0 and 1 dropped
    assert rss == [200 * PAGE, 300 * PAGE, 400 * PAGE]


def test_history_pid_missing_in_some_ticks() -> None:
    h = ProcessHistory(ticks=10)
    h.add([pview(1, 1.0, 10 * PAGE)])
    h.add([pview(2, 2.0, 20 * PAGE)])
    h.add([])
    h.add([pview(1, 3.0, 30 * PAGE), pview(2, 4.0, 40 * PAGE)])
    assert h.series(1) == (pytest.approx([1.0, 3.0]), [10 * PAGE, 30 * PAGE])
    assert h.series(2) == (pytest.approx([2.0, 4.0]), [20 * PAGE, 40 * PAGE])
    assert h.series(99) == ([], [])


def test_history_large_values_survive() -> None:
    # RSS of tens of GiB and pids above 2**22 (pid_max can be 4194304)
    h = ProcessHistory(ticks=2)
    h.add([pview(4_194_303, 400.0, 64 * 2**30 + PAGE)])
    assert h.series(4_194_303) == ([400.0], [64 * 2**30 + PAGE])


def test_history_ticks_with_the_same_processes_share_their_pids() -> None:
    h = ProcessHistory(ticks=3)
    h.add([pview(1, 1.0, PAGE), pview(2, 2.0, PAGE)])
    h.add([pview(1, 5.0, PAGE), pview(2, 6.0, 2 * PAGE)])
    h.add([pview(1, 7.0, PAGE), pview(3, 8.0, PAGE)])
    ticks = list(h._ticks)
    assert ticks[0][0] is ticks[1][0] and ticks[2][0] is not ticks[1][0]
    assert h.series(2) == (pytest.approx([2.0, 6.0]), [PAGE, 2 * PAGE])


def test_process_unreadable_last_tick_has_no_rate_yet() -> None:
    # Started at 50 s, sampled at 100 s and 101 s, but missing from the first
    # sample (its files were unreadable then): its CPU time was not all spent
    # in this interval, so no rate is shown rather than a made-up one.
    old = ProcSample(1, 0, "S", "a", "a", "root", "/", 0, 0, 0, 1, 10 * 10**9)
    late = ProcSample(2, 0, "S", "b", "b", "root", "/", 30 * 10**9, 0, 0, 1, 50 * 10**9)
    born = ProcSample(3, 0, "S", "c", "c", "root", "/", 2 * 10**8, 0, 0, 1, 100_500 * 10**6)
    prev = ProcessesSample((old,), 0, sampled_since_boot_ns=100 * 10**9)
    curr = ProcessesSample((old, late, born), 0, sampled_since_boot_ns=101 * 10**9)
    views = {p.pid: p for p in derive_processes(prev, curr, 1.0).processes}
    assert views[2].cpu_percent is None
    assert views[3].cpu_percent == pytest.approx(20.0)
