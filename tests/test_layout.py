"""The layout across terminal sizes: what steps aside when short, and comes back when not."""

from __future__ import annotations

import pytest

from tui.gpu_pane import GpuPane
from tui.offcpu_pane import OffCpuPane
from tui.process_screen import ProcessScreen
from tui.syscalls_pane import SyscallsPane

from ui import make_app, until_drawn


def shown(app) -> dict[str, bool]:
    main = app.screen_stack[0]
    return {
        name: main.query_one(pane).display and main.query_one(pane).size.height > 0
        for name, pane in (("gpu", GpuPane), ("syscalls", SyscallsPane), ("offcpu", OffCpuPane))
    }


@pytest.mark.parametrize("final", [(160, 48), (200, 60)])
async def test_panes_come_back_after_resizes_behind_the_process_screen(final: tuple[int, int]) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        assert all(shown(app).values())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not any(shown(app).values())
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen)
        await pilot.resize_terminal(120, 40)  # tall enough again, while the main screen is hidden
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert all(shown(app).values())
        await pilot.resize_terminal(*final)
        await pilot.pause()
        assert all(shown(app).values())


async def test_too_small_behind_the_process_screen_is_undone_on_return() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("enter")
        await pilot.resize_terminal(70, 20)
        await pilot.pause()
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.query_one("#main").display and not app.query_one("#too-small").display
        assert all(shown(app).values())
