"""Pilot tests of the live screen, fed with fixed frames."""

from __future__ import annotations

import gc
import time

from support import synthetic
from support.harness import make_app, screenshot_files, until_drawn

from probes.model.collector import FrameSequence
from tui.app import OracApp
from tui.header_bar import HeaderBar
from tui.process_pane import ProcessPane
from tui.process_screen import ProcessScreen, ProcessSummary
from tui.process_table import ProcessTable
from tui.screenshot import capture
from tui.system_panes import CpuPane

SIZE = (160, 48)


def pids(app: OracApp) -> list[int]:
    return [p.pid for p, _ in app.query_one(ProcessTable).rows]


async def test_default_sort_is_cpu_descending() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        assert pids(app)[:3] == [2002, 978, 1200]


async def test_the_heap_at_the_first_frame_is_left_out_of_collections_until_exit() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.pause()
        assert gc.get_freeze_count() > 0
    # back for the next app in this process: its widgets are garbage now
    assert gc.get_freeze_count() == 0


async def test_sort_keys_and_reverse() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("M")
        assert pids(app)[0] == 2002  # 1.5 GiB
        assert pids(app)[-1] == 2  # kernel thread, no RSS
        await pilot.press("N")
        assert pids(app) == sorted(pids(app))
        await pilot.press("N")
        assert pids(app) == sorted(pids(app), reverse=True)
        await pilot.press("T")
        assert pids(app)[0] == 977  # most CPU time so far
        await pilot.press("P")
        assert pids(app)[0] == 2002


async def test_clicking_a_header_sorts_and_again_reverses() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        await pilot.click(ProcessTable, offset=(2, 0))  # the PID header
        assert table.sort_key == "pid" and pids(app) == sorted(pids(app))
        await pilot.click(ProcessTable, offset=(2, 0))
        assert pids(app) == sorted(pids(app), reverse=True)


async def test_filter_is_incremental_and_escape_clears_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("slash", "p", "o", "s", "t")
        assert set(pids(app)) == {977, 978}
        assert "2 of 8" in str(app.query_one(ProcessPane).border_title)
        await pilot.press("backspace", "backspace", "backspace", "backspace", "backspace", "a", "l", "i", "c", "e")
        assert set(pids(app)) == {2001, 2002}  # matches the user too
        await pilot.press("enter")
        assert isinstance(app.focused, ProcessTable)
        assert set(pids(app)) == {2001, 2002}  # Enter keeps the filter
        await pilot.press("escape")
        assert len(pids(app)) == len(synthetic.PROCESSES)


async def test_tree_view_puts_children_under_parents() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("t")
        rows = app.query_one(ProcessTable).rows
        order = [p.pid for p, _ in rows]
        prefix = {p.pid: pre for p, pre in rows}
        assert order.index(412) < order.index(2001) < order.index(2002)
        assert order.index(977) < order.index(978)
        assert prefix[1] == "" and prefix[2] == ""
        assert prefix[2002].endswith("└─ ") and len(prefix[2002]) > len(prefix[2001])


async def test_pause_stops_the_source_and_says_so() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("p")
        assert app.source.paused
        assert "PAUSED" in app.query_one(HeaderBar).flags
        await pilot.press("p")
        assert not app.source.paused and not app.query_one(HeaderBar).flags


async def test_screenshot_writes_svg_png_and_text(tmp_path) -> None:
    app = make_app(screenshot_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("s")
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 3 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
    assert screenshot_files(tmp_path) == [".png", ".svg", ".txt"]
    png = next(tmp_path.glob("*.png")).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    text = next(tmp_path.glob("*.txt")).read_text()
    assert "python3 train.py --epochs 10" in text and "db-7" in text
    assert "<svg" in next(tmp_path.glob("*.svg")).read_text()


async def test_enter_opens_the_process_screen_and_escape_returns() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen)
        assert app.screen.pid == 2002
        summary = app.screen.query_one(ProcessSummary)
        # the history ring already holds the tick the table showed
        assert summary.cpu_history == [99.0]
        await pilot.press("escape")
        assert not isinstance(app.screen, ProcessScreen)


async def test_too_small_terminal_says_so() -> None:
    app = make_app()
    async with app.run_test(size=(70, 20)) as pilot:
        await until_drawn(pilot, app)
        assert app.screen.has_class("-too-small")
        assert app.query_one("#too-small").display
        assert not app.query_one("#main").display


async def test_unavailable_probe_shows_reason_and_remedy() -> None:
    frame_list = synthetic.frames(unavailable={"procs": ("cannot read /proc", "mount -t proc proc /proc")})
    frame_list = [
        type(f)(f.wall_ns, f.mono_ns, {"cpu": f.samples["cpu"]}, f.unavailable) for f in frame_list
    ]
    app = OracApp(FrameSequence(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        pane = app.query_one(ProcessPane)
        assert pane.unavailable == ("cannot read /proc", "mount -t proc proc /proc")
        assert "cannot read /proc" in str(pane.border_subtitle)


async def test_a_view_that_fails_to_derive_says_so_on_its_pane() -> None:
    # Process samples the process view cannot be made from: a bug in orac,
    # said on the pane while the other panes go on.
    frame_list = [type(f)(f.wall_ns, f.mono_ns, {**f.samples, "procs": 0}) for f in synthetic.frames()]
    app = OracApp(FrameSequence(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        pane = app.query_one(ProcessPane)
        assert pane.unavailable is not None
        assert pane.unavailable.reason.startswith("procs view failed: ")
        assert pane.unavailable.remedy == "please report this as a bug"
        assert app.query_one(CpuPane).view is not None


async def test_help_lists_every_binding() -> None:
    from textual.containers import VerticalScroll

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("question_mark")
        scroll = app.screen.query_one(VerticalScroll)
        rendered = ""
        while True:
            await pilot.pause()
            rendered += capture(app)[1]
            if scroll.scroll_y >= scroll.max_scroll_y:
                break
            scroll.scroll_page_down(animate=False)
        for word in ("Sort by CPU", "Filter on", "under their parents", "Send a signal", "Save the screen", "Stop sampling", "Command palette"):
            assert word in rendered


async def test_help_says_how_the_memory_figures_are_computed() -> None:
    from textual.containers import VerticalScroll

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        scroll = app.screen.query_one(VerticalScroll)
        # The figures are a long list: read the help a page at a time.
        seen = ""
        for _ in range(20):
            _, rendered = capture(app)
            seen += rendered
            if scroll.scroll_y >= scroll.max_scroll_y:
                break
            scroll.scroll_page_down(animate=False)
            await pilot.pause()
        for words in ("MemTotal - MemAvailable", "MemAvailable - MemFree", "Cached + SReclaimable", "Shmem", "SwapTotal - SwapFree"):
            assert words in seen, words


async def test_a_probe_can_add_a_sortable_column_and_take_it_away() -> None:
    from tui.line_table import Column

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        rates = {412: 5000.0, 1: 10.0}
        table.show_column(
            Column("sys", "FAKE/s", 7, lambda p: str(rates.get(p.pid, "-")), lambda p: rates.get(p.pid, -1.0), True, True)
        )
        assert [c.key for c in table.columns][-2:] == ["sys", "command"]
        table.action_sort("sys")
        assert pids(app)[:2] == [412, 1]
        _, text = capture(app)
        assert "FAKE/s" in text
        table.hide_column("sys")
        assert table.sort_key == "cpu" and pids(app)[0] == 2002
        await pilot.pause()
        assert "FAKE/s" not in capture(app)[1]


async def test_syscalls_column_and_pane_follow_the_syscalls_probe() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        assert "syscalls" in [c.key for c in table.columns]
        table.action_sort("syscalls")
        assert pids(app)[:4] == [977, 1200, 978, 2002]  # 51k/s, 13.1k/s, 12.8k/s, 1.2k/s
        _, text = capture(app)
        assert "Syscalls 78.1k/s" in text and "EAGAIN" in text


async def test_without_syscalls_the_pane_says_why_and_the_column_goes() -> None:
    frame_list = synthetic.frames(unavailable={"syscalls": ("no root", "run `sudo orac`")})
    frame_list = [
        type(f)(f.wall_ns, f.mono_ns, {k: v for k, v in f.samples.items() if k != "syscalls"}, f.unavailable)
        for f in frame_list
    ]
    app = OracApp(FrameSequence(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        assert "syscalls" not in [c.key for c in app.query_one(ProcessTable).columns]
        _, text = capture(app)
        assert "no root" in text and "sudo orac" in text


async def test_enter_on_a_syscalls_row_opens_that_process() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one("#sys-processes")
        table.focus()
        await pilot.press("down", "enter")  # second busiest: nginx, 1200
        assert isinstance(app.screen, ProcessScreen) and app.screen.pid == 1200


async def test_a_short_terminal_keeps_to_cpu_memory_and_processes() -> None:
    from tui.offcpu_pane import OffCpuPane
    from tui.syscalls_pane import SyscallsPane

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await until_drawn(pilot, app)
        assert not app.query_one(SyscallsPane).display and not app.query_one(OffCpuPane).display
        assert app.query_one(ProcessTable).size.height >= 10
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert app.query_one(SyscallsPane).display and app.query_one(OffCpuPane).display
