"""Spike bookmarks: a real spike is marked near its start, a quiet minute is not, and replay jumps to them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.harness import wait_for

from probes.model.bookmarks import TOP_MIN_CPU_PERCENT
from probes.registry import all_probes, select_probes
from probes.store.bookmark_scan import scan_bookmarks
from probes.store.headless import record
from probes.store.reader import Recording
from probes.store.replay import ReplaySource
from tui.app import OracApp

SPIN = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"


def recorded(path: Path, seconds: float, interval_s: float, during: float | None = None) -> tuple[Path, float | None, int | None]:
    """Record cpu and procs for `seconds`; with `during`, a process spins a core from that many seconds in.

    Returns the file, when the spinner started (wall seconds) and its pid.
    """
    started: list[tuple[float, int]] = []
    spinners: list[subprocess.Popen[bytes]] = []

    def spin() -> None:
        assert during is not None
        time.sleep(during)
        busy = subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)], stdin=subprocess.DEVNULL)
        started.append((time.time(), busy.pid))
        spinners.append(busy)

    thread = threading.Thread(target=spin) if during is not None else None
    probes = select_probes(["cpu", "procs", "kmsg"], all_probes())
    try:
        if thread is not None:
            thread.start()
        record(path, probes, interval_s, seconds)
    finally:
        if thread is not None:
            thread.join()
        for busy in spinners:
            busy.kill()
            busy.wait()
    return (path, *started[0]) if started else (path, None, None)


def test_a_spike_is_marked_near_its_start(tmp_path: Path) -> None:
    interval_s = 0.5
    path, started_s, pid = recorded(tmp_path / "spike.orac", 5.0, interval_s, during=2.0)
    assert started_s is not None
    tops = [m for m in scan_bookmarks(path) if m.kind == "top" and f"(pid {pid})" in m.text]
    if not tops:
        with Recording(path) as recording:
            busy = busiest_other_process(recording, also=pid)
        if busy is not None:
            pytest.skip(f"another process held the top of the CPU table: {busy}")
    assert len(tops) == 1, scan_bookmarks(path)
    # The first frame whose interval it spent mostly spinning marks it: at
    # most one interval after the start, or half more when it began just
    # before a frame (TOP_MIN_CPU_PERCENT is half a core).
    assert TOP_MIN_CPU_PERCENT == 50.0
    delay_s = tops[0].wall_ns / 1e9 - started_s
    assert 0 <= delay_s <= 1.5 * interval_s + 0.2, delay_s


def test_a_quiet_minute_is_not_marked(tmp_path: Path) -> None:
    path, _, _ = recorded(tmp_path / "quiet.orac", 60.0, 1.0)
    with Recording(path) as recording:
        assert len(recording) >= 55
        busy = busiest_other_process(recording)
        first, second = recording.frame(0), recording.frame(1)
    if busy is not None:
        pytest.skip(f"the box was not quiet: {busy}")
    from probes.model.verdict import State, verdict
    from probes.model.views import derive_frame

    # a kernel error of the minutes before (another test's OOM kill) keeps the kernel cell up as the minute begins
    troubled = [c.summary for c in verdict(derive_frame(first, second), wall_ns=second.wall_ns) if c.state > State.OK]
    if troubled:
        pytest.skip(f"the box was not quiet as the minute began: {troubled}")
    assert scan_bookmarks(path) == []


def busiest_other_process(recording: Recording, also: int | None = None) -> str | None:
    """A process other than this test's (and `also`) that used half a core in some interval of the recording, if any."""
    from probes.model.views import derive_frame
    from probes.sources.processes import PROCESSES

    prev = None
    for _, frame in recording.iter_frames():
        processes = derive_frame(prev, frame).get(PROCESSES) if prev is not None else None
        prev = frame
        for p in processes.processes if processes is not None else ():
            if p.pid not in (os.getpid(), also) and (p.cpu_percent or 0) >= TOP_MIN_CPU_PERCENT:
                return f"{p.name} (pid {p.pid}) used {p.cpu_percent:.0f} % of a core"
    return None


async def test_replay_goes_to_the_next_and_previous_bookmark(tmp_path: Path) -> None:
    path, _, pid = recorded(tmp_path / "spike.orac", 4.0, 0.5, during=1.5)
    marks = scan_bookmarks(path)
    if not any(f"(pid {pid})" in m.text for m in marks):
        with Recording(path) as recording:
            busy = busiest_other_process(recording, also=pid)
        if busy is not None:
            pytest.skip(f"another process held the top of the CPU table: {busy}")
    recording = Recording(path)
    app = OracApp(ReplaySource(recording, paused=True))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.bookmarks is not None)
        assert app.bookmarks == marks
        spike = next(m for m in marks if f"(pid {pid})" in m.text)
        while app.replay.position().wall_ns < spike.wall_ns:
            before = app.replay.position().wall_ns
            await pilot.press("right_square_bracket")
            following = next(m for m in marks if m.wall_ns > before)
            await wait_for(pilot, lambda at=following.wall_ns: app.replay.position().wall_ns == at)
        assert app.replay.position().wall_ns == spike.wall_ns
        earlier = [m for m in marks if m.wall_ns < spike.wall_ns]
        await pilot.press("left_square_bracket")
        await pilot.pause(0.3)
        assert app.replay.position().wall_ns == (earlier[-1].wall_ns if earlier else spike.wall_ns)
        await pilot.press("b")
        await pilot.pause()
        from tui.choice_screen import ChoiceScreen

        assert isinstance(app.screen, ChoiceScreen)
        assert any(f"(pid {pid})" in label for _, label in app.screen.options)
        await pilot.press("escape")
