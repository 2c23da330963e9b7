"""Recording from the live UI (R) and replaying in the same UI."""

from __future__ import annotations

from support.harness import wait_for

from probes.model.collector import Collector
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe
from probes.store.reader import Recording
from tui.app import OracApp
from tui.process_table import ProcessTable
from tui.replay_bar import ReplayBar, SeekScreen
from tui.screenshot import capture

SIZE = (160, 48)


async def test_replay_shows_the_recorded_processes_and_moves_through_time(replay_app: OracApp) -> None:
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.frame is not None and "procs" in app.views)
        assert next(p.pid for p, _ in app.query_one(ProcessTable).rows) == 2002
        bar = app.query_one(ReplayBar)
        assert bar.position.index == 1 and bar.position.paused
        await pilot.press("right")
        await wait_for(pilot, lambda: bar.position.index == 2)
        await pilot.press("full_stop")  # +10 s
        await wait_for(pilot, lambda: bar.position.index == 12)
        await pilot.press("left")
        await wait_for(pilot, lambda: bar.position.index == 11)
        await pilot.press("plus", "plus")
        assert app.source.speed == 5
        await pilot.press("minus")
        assert app.source.speed == 2
        await pilot.press("g")
        assert isinstance(app.screen, SeekScreen)
        await pilot.press("n", "o", "p", "e", "enter")
        assert isinstance(app.screen, SeekScreen)  # a bad time keeps the box open
        assert "nope" in capture(app)[1]
        for _ in range(4):
            await pilot.press("backspace")
        await pilot.press("plus", "2", "0", "s", "enter")
        await wait_for(pilot, lambda: bar.position.index == 20)
        _, text = capture(app)
        assert "REPLAY" in text and "21/30" in text


async def test_replay_keys_do_nothing_live(tmp_path) -> None:
    from support.harness import make_app, until_drawn

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        assert not app.query(ReplayBar)
        assert app.check_action("replay_step", (1,)) is False


async def test_r_records_the_live_session_to_a_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = OracApp(Collector([SystemProbe(), ProcessProbe()], interval_s=0.2))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "procs" in app.views)
        await pilot.press("R")
        recorder = app.source.recorder
        assert recorder is not None
        await wait_for(pilot, lambda: recorder.frames >= 3)
        assert "REC" in capture(app)[1]
        await pilot.press("R")
        assert app.source.recorder is None
    files = list(tmp_path.glob("*.orac"))
    assert len(files) == 1
    with Recording(files[0]) as recording:
        assert len(recording) >= 3
        assert "procs" in recording.frame(0).samples
