"""The "orac" probe: orac's own CPU and RSS against pidstat's, and its eBPF programs' run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.ebpf import start, unavailable

from probes.ebpf.bpf import prog_run_time
from probes.host.procfs import NS_PER_TICK
from probes.model.sampling import Sampler
from probes.sources.own_cost import OwnCostProbe, OwnCostSample, ProgramRunTime, derive_own_cost, parse_cpu_ns
from probes.sources.syscalls import SyscallProbe

REPO = Path(__file__).resolve().parent.parent
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def test_cpu_is_utime_plus_stime() -> None:
    stat = b"42 (a (b) c) S 1 42 42 0 -1 4194304 10 0 0 0 250 50 0 0 20 0 3 0 100 0 0"
    assert parse_cpu_ns(stat) == 300 * NS_PER_TICK


def test_derive_shares_of_a_cpu_over_the_interval() -> None:
    prev = OwnCostSample(1_000_000_000, 50 << 20, 10_000_000_000, (ProgramRunTime(7, "sys_enter", 1_000, 10),), True)
    curr = OwnCostSample(
        1_250_000_000, 52 << 20, 12_000_000_000,
        (ProgramRunTime(7, "sys_enter", 21_001_000, 99), ProgramRunTime(8, "sys_exit", 19_000_000, 90)), True,
    )
    view = derive_own_cost(prev, curr, 2.0)
    assert view.cpu_percent == pytest.approx(12.5)
    assert view.rss_bytes == 52 << 20
    # 21 ms of the program seen before, and all 19 ms of the one new in the interval, over 2 s
    assert view.bpf_cpu_percent == pytest.approx(2.0)
    assert view.bpf_programs == 2


def test_no_bpf_figure_unless_the_kernel_counted_both_ends() -> None:
    prev = OwnCostSample(0, 1, 0, (), False)
    curr = OwnCostSample(0, 1, 1_000_000_000, (ProgramRunTime(7, "sys_enter", 5_000, 1),), True)
    assert derive_own_cost(prev, curr, 1.0).bpf_cpu_percent is None


SPINNER = textwrap.dedent(
    """
    import sys, threading, time
    from probes.sources.own_cost import OwnCostProbe, derive_own_cost

    def spin():
        while True:
            pass

    threading.Thread(target=spin, daemon=True).start()
    probe = OwnCostProbe()
    probe.start()
    time.sleep(1)
    first = probe.sample()
    print("ready", flush=True)
    time.sleep(float(sys.argv[1]))
    second = probe.sample()
    print(derive_own_cost(first, second, 0).cpu_percent, flush=True)
    """
)


def test_own_cpu_percent_agrees_with_pidstat() -> None:
    pidstat = shutil.which("pidstat")
    if pidstat is None:
        pytest.skip("pidstat is missing (apt-get install sysstat)")
    seconds = 4
    child = subprocess.Popen(
        [sys.executable, "-c", SPINNER, str(seconds)], cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        # Over the same seconds, while the child spins all along: a steady rate, so
        # where each window starts within a few ms does not matter.
        report = subprocess.run(
            [pidstat, "-u", "-p", str(child.pid), str(seconds - 1), "1"],
            capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
        ).stdout
        own = float(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    average = next(line for line in report.splitlines() if line.startswith("Average:"))
    header = next(line for line in report.splitlines() if "%CPU" in line)
    pidstat_cpu = float(average.split()[header.split().index("%CPU")])
    assert own == pytest.approx(pidstat_cpu, abs=10, rel=0.15), report


def _sysctl() -> str:
    return Path(STATS_SYSCTL).read_text().strip()


def test_the_sampler_hands_its_running_probes_to_a_watching_probe() -> None:
    own = OwnCostProbe()
    sampler = Sampler([own])
    sampler.start()
    try:
        assert own._watched is sampler.running
    finally:
        sampler.stop()


@pytest.mark.root
def test_bpf_run_time_of_the_syscalls_probe_and_stats_given_back() -> None:
    if not os.path.exists(STATS_SYSCTL):
        unavailable(f"{STATS_SYSCTL} is missing")
    before = _sysctl()
    syscalls = start(SyscallProbe())
    try:
        own = OwnCostProbe()
        own.start()
        own.watch([syscalls])
        # The first sample turns the stats on; the interval after it is counted.
        own.sample()
        first = own.sample()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            os.getppid()
        second = own.sample()
        view = derive_own_cost(first, second, 1.0)
        assert {p.name for p in second.programs} >= {"sys_enter", "sys_exit"}
        assert second.bpf_stats and view.bpf_cpu_percent is not None and view.bpf_cpu_percent > 0
        own.stop()
        assert _sysctl() == before
        if before == "0":
            # Off again: the programs, still attached, stop counting their run time.
            ids = [p.id for p in second.programs]
            counted = [prog_run_time(i).run_time_ns for i in ids]
            for _ in range(100_000):
                os.getppid()
            assert [prog_run_time(i).run_time_ns for i in ids] == counted
    finally:
        syscalls.stop()
    assert _sysctl() == before
