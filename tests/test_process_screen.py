"""The process screen: what it says of one process, read once, and what it may not read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import synthetic
from support.harness import LiveFrames, until_drawn

from probes.host.process_details import ProcessDetails, read_details
from tui.app import OracApp
from tui.process_screen import ProcessScreen, ProcessSummary
from tui.screenshot import capture

SIZE = (160, 48)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def frames_of(pid: int, state: str) -> list:
    row = (pid, 1, "root", state, "sleeper", "python3 sleeper", "/", 999_000_000, 10, 1, 0.0)
    return synthetic.frames([*synthetic.PROCESSES, row])


async def open_screen(pilot, app: OracApp, frame_list: list) -> ProcessSummary:
    await until_drawn(pilot, app, frame_list)
    await pilot.press("enter")  # the busiest row: the sleeper
    assert isinstance(app.screen, ProcessScreen)
    summary = app.screen.query_one(ProcessSummary)
    for _ in range(200):
        if summary.details is not None:
            break
        await pilot.pause(0.02)
    await pilot.pause()
    return summary


async def test_the_state_letter_and_its_word_come_from_one_reading(sleeper) -> None:
    # The tick said D; the process sleeps now. A second reading gave "D (sleeping)".
    frame_list = frames_of(sleeper.pid, "D")
    app = OracApp(LiveFrames(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, app, frame_list)
        text = capture(app)[1]
        assert "D (uninterruptible sleep: disk or lock)" in text
        assert "sleeping" not in text


async def test_what_the_kernel_keeps_from_orac_says_permission_denied(sleeper, monkeypatch) -> None:
    denied = ProcessDetails(sleeper.pid, "python3 sleeper", exe=None, cwd=None, num_threads=1, num_fds=None, started=0.0)
    monkeypatch.setattr("tui.process_screen.read_details", lambda pid: denied)
    frame_list = frames_of(sleeper.pid, "S")
    app = OracApp(LiveFrames(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, app, frame_list)
        text = capture(app)[1]
        for label in ("exe", "cwd", "open fds"):
            assert any(label in line and "permission denied" in line for line in text.splitlines()), label


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_another_users_exe_and_cwd_are_denied_not_missing_or_guessed(sleeper) -> None:
    # As nobody, root's sleeper's exe and cwd are the kernel's to refuse; its
    # command line (python's real path) must not stand in for its exe.
    code = (
        "import os, sys; os.setgid(65534); os.setuid(65534);"
        "from probes.host.process_details import read_details; d = read_details(int(sys.argv[1]));"
        "print(d.exe is None, d.cwd is None, d.num_fds is None)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(sleeper.pid)], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.split() == ["True", "True", "True"]
    mine = read_details(os.getpid())
    assert mine.exe == os.readlink("/proc/self/exe") and mine.cwd
    assert read_details(2).exe == ""  # kthreadd: a kernel thread has none
