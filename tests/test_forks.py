"""Fork rate from /proc/stat's `processes`: parsing on fixtures, and a real fork loop at a known rate."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support import WORKLOADS, cannot_run

from probes.host.forks import forks_per_s, parse_forks
from probes.sources.system import SystemProbe, SystemSample, derive_system

PROC_FIXTURES = Path(__file__).parent / "fixtures" / "proc"
HELPER_SOURCE = WORKLOADS / "fork_loop.c"


def test_parse_forks_fixture() -> None:
    assert parse_forks((PROC_FIXTURES / "t0" / "stat").read_text()) == 12345
    assert parse_forks((PROC_FIXTURES / "t1" / "stat").read_text()) == 12399


@pytest.mark.parametrize("text", ["cpu  1 2 3 4\nctxt 5\n", "processes\n", "processes x\n", ""])
def test_parse_forks_missing_or_malformed_is_none(text: str) -> None:
    assert parse_forks(text) is None


def test_parse_forks_ignores_procs_running_and_blocked() -> None:
    assert parse_forks("procs_running 2\nprocesses 7\nprocs_blocked 1\n") == 7


@pytest.mark.parametrize(
    ("prev", "curr", "dt_s", "expected"),
    [
        (12345, 12399, 2.0, 27.0),
        (100, 100, 1.0, 0.0),
        (None, 100, 1.0, None),
        (100, None, 1.0, None),
        (500, 100, 1.0, None),  # backwards: a recording across a reboot
        (100, 200, 0.0, None),
    ],
)
def test_forks_per_s(prev: int | None, curr: int | None, dt_s: float, expected: float | None) -> None:
    assert forks_per_s(prev, curr, dt_s) == expected


# --- real: a fork loop at a known rate -----------------------------------------

FORKS = 3000
RATE_PER_S = 3000.0
TOLERANCE = 0.10
BACKGROUND_WINDOW_S = 0.5


SYSTEM_PROBE = SystemProbe()


def forks_now() -> SystemSample:
    return SYSTEM_PROBE.sample()


def rate_between(a: SystemSample, b: SystemSample) -> float:
    """forks/s as the CPU pane shows it: the "cpu" probe's view over the two samples."""
    assert a.mono_ns is not None and b.mono_ns is not None
    rate = derive_system(a, b, (b.mono_ns - a.mono_ns) / 1e9).forks_per_s
    assert rate is not None
    return rate


def background_rate() -> float:
    """Everything else on the box that forks meanwhile (the counter is machine-wide)."""
    before = forks_now()
    time.sleep(BACKGROUND_WINDOW_S)
    return rate_between(before, forks_now())


def test_fork_loop_at_a_known_rate(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        cannot_run("gcc is needed to build the fork loop (apt-get install gcc)")
    binary = tmp_path / "fork_loop"
    subprocess.run([gcc, "-O2", "-o", str(binary), str(HELPER_SOURCE)], check=True)
    loop = subprocess.Popen([str(binary), str(FORKS), str(RATE_PER_S)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        background_before = background_rate()
        # the loop's own process was forked already; it waits for this byte
        start = forks_now()
        out, _ = loop.communicate(b"x", timeout=30)
        end = forks_now()
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    assert loop.returncode == 0
    background = (background_before + background_rate()) / 2
    # the rate the loop kept: its FORKS over the time it took, in its own words
    kept_per_s = FORKS / (int(out) / 1e9)
    assert kept_per_s == pytest.approx(RATE_PER_S, rel=TOLERANCE)
    # forks/s over the window, less the box's other forks, measured just before and after
    assert rate_between(start, end) - background == pytest.approx(kept_per_s, rel=TOLERANCE)


def test_cpu_probe_keeps_the_counter_and_derives_the_rate() -> None:
    t0 = SystemProbe(proc=str(PROC_FIXTURES / "t0")).sample()
    t1 = SystemProbe(proc=str(PROC_FIXTURES / "t1")).sample()
    assert (t0.forks, t1.forks) == (12345, 12399)
    assert derive_system(t0, t1, 2.0).forks_per_s == 27.0
    # a recording made before the probe kept the counter: no rate, not zero
    assert derive_system(replace(t0, forks=None), t1, 2.0).forks_per_s is None
