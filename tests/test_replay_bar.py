"""The replay bar and the go-to box say everything they are for."""

from __future__ import annotations

from support.harness import wait_for

from tui.replay_bar import ReplayBar, SeekScreen, clock
from tui.screenshot import capture

SIZE = (160, 48)


async def test_the_speed_shows_at_once_and_while_paused(replay_app) -> None:
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "procs" in app.views)
        bar = app.query_one(ReplayBar)
        await pilot.press("plus")
        assert "paused 2x" in bar.render().plain
        await pilot.press("plus")
        assert "paused 5x" in bar.render().plain
        await pilot.press("space")
        assert "REPLAY" in bar.render().plain and " 5x " in bar.render().plain
        await pilot.press("minus")
        assert " 2x " in bar.render().plain


async def test_the_go_to_box_shows_the_whole_span_of_the_recording(replay_app) -> None:
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "procs" in app.views)
        await pilot.press("g")
        assert isinstance(app.screen, SeekScreen)
        await pilot.pause()
        first, last = app.source.recording.time_range
        text = capture(app)[1]
        assert clock(first) in text and clock(last) in text
