"""Keys as people type them: in bursts, and the habits they bring from htop."""

from __future__ import annotations

from support.harness import burst, make_app, until_drawn
from textual.widgets import Input

from tui.process_table import ProcessTable

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
    from tui.choice_screen import ChoiceScreen
    from tui.line_table import LineTable

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
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("down", "enter")  # CALLS/s -> ERR/s, the next column
        assert table.sort_key == "errors" and next(p.pid for p, _ in table.rows) == 1200
        top = app.query_one("#sys-top", LineTable)
        top.focus()
        await pilot.press("f6", "home", "enter")  # SYSCALL, by name
        assert [r.name for r, _ in top.rows][:2] == ["epoll_wait", "fsync"]


# htop's keys


async def test_function_keys_do_what_they_do_in_htop() -> None:
    from tui.help_screen import HelpScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("f5")
        assert table.tree_mode
        await pilot.press("f5", "f4", "p", "o", "s", "enter")
        assert not table.tree_mode and set(pids(app)) == {977, 978}
        await pilot.press("escape")
        await pilot.press("f10")
        await pilot.pause()
        assert not app.is_running


async def test_f3_searches_without_filtering_and_again_finds_the_next_match() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        burst(app, "f3", "p", "o", "s", "t")
        await settle(pilot)
        assert len(table.rows) == 8  # nothing filtered out
        assert table.selected.pid == 978  # the first match, by CPU: postgres: checkpointer
        await pilot.press("f3")
        assert table.selected.pid == 977
        await pilot.press("enter", "k")  # back on the table, on the match; k is not typed
        assert isinstance(app.focused, ProcessTable) and table.selected.pid == 977
        assert app.query_one("#search", Input).value == "post"


async def test_u_shows_one_users_processes() -> None:
    from tui.choice_screen import ChoiceScreen

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("u")
        assert isinstance(app.screen, ChoiceScreen)
        # all users, alice, postgres, root, www-data
        await pilot.press("down", "enter")
        assert set(pids(app)) == {2001, 2002}
        assert "Processes 2 of 8, user alice" in str(app.query_one("ProcessPane").border_title)
        await pilot.press("u", "home", "enter")
        assert len(pids(app)) == 8


async def test_minus_and_plus_fold_a_branch_of_the_tree() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        await pilot.press("t")
        while table.selected.pid != 412:  # sshd, with bash and python3 under it
            await pilot.press("down")
        await pilot.press("minus")
        assert 2001 not in pids(app) and 2002 not in pids(app)
        assert dict((p.pid, pre) for p, pre in table.rows)[412].endswith("+ ")
        await pilot.press("plus")
        assert {2001, 2002} <= set(pids(app))


async def test_capital_f_follows_the_process_through_a_new_sort() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        await pilot.press("down", "F", "N")
        assert table.selected.pid == 978 and table.cursor == pids(app).index(978)
        assert "following 978" in str(app.query_one("ProcessPane").border_title)
        await pilot.press("F", "P")
        assert table.cursor == 0


async def test_the_command_palette_lists_orac_actions_once() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert titles.count("Screenshot") == 1
        for title in ("Sort processes by CPU%", "Sort processes by RSS", "Filter processes", "Tree / list of processes",
                      "Show / hide the GPU pane", "Show / hide the off-CPU pane", "Theme", "Pause / resume"):
            assert title in titles, title
        gpu = next(c for c in app.get_system_commands(app.screen) if c.title == "Show / hide the GPU pane")
        gpu.callback()
        await pilot.pause()
        from tui.gpu_pane import GpuPane

        assert not app.query_one(GpuPane).display


async def test_the_command_palette_sorts_the_processes() -> None:
    from textual.command import CommandPalette

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"sort processes by pid")
        for _ in range(50):
            await pilot.pause(0.05)
            if app.screen.query("CommandList Option"):
                break
        await pilot.press("enter")
        await pilot.pause()
        assert pids(app) == sorted(pids(app))
