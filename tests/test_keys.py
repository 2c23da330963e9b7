"""Keys as people type them: in bursts, and the habits they bring from htop."""

from __future__ import annotations

from textual.widgets import Input

from tui.process_table import ProcessTable

from ui import burst, make_app, until_drawn

SIZE = (160, 48)


def pids(app) -> list[int]:
    return [p.pid for p, _ in app.query_one(ProcessTable).rows]


async def settle(pilot) -> None:
    for _ in range(5):
        await pilot.pause(0.02)


async def test_keys_typed_in_one_burst_after_slash_all_go_to_the_filter() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        # `q` would quit, `s` take a screenshot, `t` toggle the tree, `p` pause
        burst(app, "/", "p", "o", "s", "t", "q", "s")
        await settle(pilot)
        assert app.is_running
        assert app.query_one(Input).value == "postqs"
        assert isinstance(app.focused, Input)
        assert not app.query_one(ProcessTable).tree_mode and not app.source.paused


async def test_after_enter_in_the_same_burst_keys_are_hotkeys_again() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        burst(app, "/", "p", "o", "s", "enter", "N")
        await settle(pilot)
        assert isinstance(app.focused, ProcessTable)
        assert app.query_one(ProcessTable).filter_text == "pos"
        assert pids(app) == [977, 978]  # filtered, then sorted by PID


async def test_after_escape_in_the_same_burst_keys_are_hotkeys_again() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        burst(app, "/", "p", "o", "escape", "t")
        await settle(pilot)
        table = app.query_one(ProcessTable)
        assert isinstance(app.focused, ProcessTable)
        assert table.filter_text == "" and table.tree_mode


async def test_a_slash_typed_in_the_filter_is_part_of_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        burst(app, "/", "/", "s", "b", "i", "n", "/", "i")
        await settle(pilot)
        assert app.query_one(Input).value == "/sbin/i"
        assert pids(app) == [1]  # /sbin/init


async def test_the_syscalls_tables_sort_from_the_keyboard() -> None:
    from tui.line_table import LineTable
    from tui.sort_screen import SortScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one("#sys-processes", LineTable)
        table.focus()
        await pilot.pause()
        by_calls = [p.pid for p, _ in table.rows]
        assert by_calls == [977, 1200, 978, 2002]
        await pilot.press("I")
        assert [p.pid for p, _ in table.rows] == by_calls[::-1]
        await pilot.press("f6")
        assert isinstance(app.screen, SortScreen)
        await pilot.press("down", "enter")  # CALLS/s -> ERR/s, the next column
        assert table.sort_key == "errors" and [p.pid for p, _ in table.rows][0] == 1200
        top = app.query_one("#sys-top", LineTable)
        top.focus()
        await pilot.press("f6", "home", "enter")  # SYSCALL, by name
        assert [r.name for r, _ in top.rows][:2] == ["epoll_wait", "fsync"]
