"""`k` signals only processes running now, and only the very process the row showed."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import synthetic
from support.harness import LiveFrames, make_app, until_drawn

from probes.host.signals import NotThatProcess, send_signal, start_time_ns
from probes.model.frame import Frame
from tui.app import OracApp
from tui.process_table import ProcessTable
from tui.signal_screen import SignalScreen

SIZE = (160, 48)


@pytest.fixture
def sleepers():
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def frames_with(procs: list[subprocess.Popen[bytes]], started: dict[int, int] | None = None) -> list[Frame]:
    """The synthetic box and `procs`, the busiest rows, with their real start times unless `started` says otherwise."""
    rows = [
        (p.pid, 1, "root", "S", f"victim{i}", f"python3 victim{i}", "/", 999_000_000 - i, 10, 1, 0.0)
        for i, p in enumerate(procs)
    ]
    real = {p.pid: start_time_ns(p.pid) for p in procs} | (started or {})
    out = []
    for f in synthetic.frames([*synthetic.PROCESSES, *rows]):
        sample = f.samples["procs"]
        fixed = tuple(dataclasses.replace(s, start_time_ns=real[s.pid]) if s.pid in real else s for s in sample.processes)
        out.append(dataclasses.replace(f, samples={**f.samples, "procs": dataclasses.replace(sample, processes=fixed)}))
    return out


def still_running(proc: subprocess.Popen[bytes]) -> bool:
    time.sleep(0.2)
    return proc.poll() is None


async def test_signal_needs_confirmation_naming_the_process(sleepers) -> None:
    proc = sleepers[0]
    frame_list = frames_with([proc])
    app = OracApp(LiveFrames(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        assert app.query_one(ProcessTable).selected.pid == proc.pid  # busiest row first
        await pilot.press("k")
        assert isinstance(app.screen, SignalScreen)
        assert f"{proc.pid} (victim0)" in app.screen.process_labels[0]
        await pilot.press("escape")
        assert still_running(proc)  # cancelled
        await pilot.press("k")
        await pilot.press("enter")  # the first choice, SIGTERM
        await pilot.pause()
        assert proc.wait(timeout=5) == -signal.SIGTERM


async def test_a_reused_pid_is_never_signalled(sleepers) -> None:
    # The row's process started at another time: the pid is someone else's now.
    proc = sleepers[0]
    frame_list = frames_with([proc], started={proc.pid: start_time_ns(proc.pid) - 10**9})
    app = OracApp(LiveFrames(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        await pilot.press("k", "enter")
        await pilot.pause()
        assert still_running(proc)
        assert any("another process" in n.message for n in app._notifications)


async def test_space_tags_and_k_signals_every_tagged_process_after_one_confirmation(sleepers) -> None:
    frame_list = frames_with(sleepers)
    app = OracApp(LiveFrames(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        table = app.query_one(ProcessTable)
        await pilot.press("space", "space")  # the two busiest rows; the cursor moves on as it tags
        assert set(table.tagged) == {p.pid for p in sleepers}
        assert "2 tagged" in str(app.query_one("ProcessPane").border_title)
        await pilot.press("k")
        assert isinstance(app.screen, SignalScreen)
        assert [label.split()[0] for label in app.screen.process_labels] == [str(p.pid) for p in sleepers]
        await pilot.press("enter")
        await pilot.pause()
        assert [p.wait(timeout=5) for p in sleepers] == [-signal.SIGTERM, -signal.SIGTERM]
        assert not table.tagged


async def test_in_replay_k_is_not_offered_and_signals_nothing(sleepers, tmp_path: Path, monkeypatch) -> None:
    from probes.store.reader import Recording
    from probes.store.replay import ReplaySource
    from probes.store.writer import Recorder

    # A recording whose busiest row is a process running now, its start time and all.
    proc = sleepers[0]
    path = tmp_path / "r.orac"
    with Recorder(path, interval_s=1.0, probes=["cpu", "procs"], unavailable=synthetic.NO_GPU) as rec:
        for f in frames_with([proc]):
            rec.append(f)
    sent = []
    monkeypatch.setattr("tui.process_pane.send_signal", lambda *args: sent.append(args))
    recording = Recording(path)
    try:
        app = OracApp(ReplaySource(recording, paused=True))
        async with app.run_test(size=SIZE) as pilot:
            while "procs" not in app.views:
                await pilot.pause(0.02)
            await pilot.pause()
            assert app.query_one(ProcessTable).selected.pid == proc.pid
            assert "k" not in app.active_bindings
            await pilot.press("k")
            await pilot.pause()
            assert not isinstance(app.screen, SignalScreen)
            await pilot.press("enter")  # would send the first signal had k asked
            await pilot.pause()
        assert sent == [] and still_running(proc)
    finally:
        recording.close()


async def test_with_fixed_frames_k_does_nothing(sleepers) -> None:
    app = make_app(frames_with(sleepers))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("k")
        assert not isinstance(app.screen, SignalScreen)


def test_send_signal_checks_the_start_time(sleepers) -> None:
    proc = sleepers[0]
    started = start_time_ns(proc.pid)
    with pytest.raises(NotThatProcess, match="another process"):
        send_signal(proc.pid, started + 1, signal.SIGTERM)
    assert still_running(proc)
    send_signal(proc.pid, started, signal.SIGTERM)
    assert proc.wait(timeout=5) == -signal.SIGTERM
    with pytest.raises(NotThatProcess, match="exited"):
        send_signal(proc.pid, started, signal.SIGTERM)
