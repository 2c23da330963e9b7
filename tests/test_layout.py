"""The layout across terminal sizes: what steps aside when short, and comes back when not."""

from __future__ import annotations

from itertools import pairwise

import pytest
from support.harness import make_app, until_drawn

from tui.gpu_pane import GpuPane
from tui.offcpu_pane import OffCpuPane
from tui.process_screen import ProcessScreen
from tui.syscalls_pane import SyscallsPane


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


# narrow terminals


def lines_of(app) -> list[str]:
    from tui.screenshot import capture

    return capture(app)[1].splitlines()


async def test_at_80_columns_the_command_shows_its_program_first() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until_drawn(pilot, app)
        row = next(line for line in lines_of(app) if " 977 " in line)
        assert "postgres -D /var/lib/post" in row  # not "/usr/lib/postgresql/15/bin/…"
    app = make_app()
    async with app.run_test(size=(200, 48)) as pilot:
        await until_drawn(pilot, app)
        row = next(line for line in lines_of(app) if " 977 " in line)
        assert "/usr/lib/postgresql/15/bin/postgres -D" in row  # room for it whole


async def test_a_column_the_same_on_every_row_gives_its_room_away() -> None:
    from support import synthetic

    from tui.process_table import ProcessTable

    everywhere_root = [(*p[:6], "/", *p[7:]) for p in synthetic.PROCESSES]
    frame_list = synthetic.frames(everywhere_root)
    app = make_app(frame_list)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app, frame_list)
        table = app.query_one(ProcessTable)
        shown = [c.key for c, _ in table._layout(table.view_size.width)]
        assert "cgroup" not in shown
        assert "CGROUP" not in next(line for line in lines_of(app) if "COMMAND" in line)


async def test_left_and_right_scroll_the_commands_live_and_step_in_replay(tmp_path) -> None:
    from support import synthetic
    from support.harness import LiveFrames, wait_for
    from support.recordings import synthetic_recording

    from probes.store.reader import Recording
    from probes.store.replay import ReplaySource
    from tui.app import OracApp
    from tui.replay_bar import ReplayBar

    app = OracApp(LiveFrames(synthetic.frames()))
    async with app.run_test(size=(80, 24)) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("right")
        text = "\n".join(lines_of(app))
        assert "COMMAND +10" in text and "--epochs 10" in text  # python3 train.py --epochs 10, from its 11th cell
        await pilot.press("left", "left")
        assert "COMMAND +" not in "\n".join(lines_of(app))
    recording = Recording(synthetic_recording(tmp_path / "s.orac"))
    try:
        app = OracApp(ReplaySource(recording, paused=True))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: "procs" in app.views)
            bar = app.query_one(ReplayBar)
            index = bar.position.index
            await pilot.press("right")
            await wait_for(pilot, lambda: bar.position.index == index + 1)
    finally:
        recording.close()


async def test_with_no_gpu_the_gpu_pane_takes_one_row() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        pane = app.query_one(GpuPane)
        assert pane.size.height + pane.styles.gutter.height == 1
        assert any("no NVIDIA driver" in line and "fix:" in line for line in lines_of(app))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_the_process_screen_is_readable_on_a_small_terminal(size: tuple[int, int]) -> None:
    from textual.widgets import Tabs

    from tui.process_screen import ProcessSummary

    app = make_app()
    async with app.run_test(size=size) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("down", "down", "enter")  # nginx: its state's words are long
        await pilot.pause()
        lines = lines_of(app)
        assert any("command  nginx: worker process" in line for line in lines)
        assert any("state  D (uninterruptible sleep" in line for line in lines)
        # every label on its own line, none wrapped to the next
        for label in ("exe", "cwd", "user", "threads", "open fds", "cgroup", "parent", "cpu time"):
            assert sum(1 for line in lines if f" {label}  " in line) == 1, label
        tabs = app.screen.query_one(Tabs)
        assert tabs.region.bottom <= size[1] - 1  # above the footer
        assert app.screen.query_one(ProcessSummary).region.height <= 15


async def test_at_120_columns_top_syscalls_keeps_room_to_be_read() -> None:
    from tui.line_table import LineTable

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one("#sys-processes", LineTable)
        widths = dict((c.key, w) for c, w in table._layout(table.view_size.width))
        assert widths["top"] >= 15
        top = app.query_one("#sys-top", LineTable)
        shown = [c for c, _ in top._layout(top.view_size.width)]
        assert sum(c.width + 1 for c in shown) <= top.view_size.width + 1  # nothing cut at the edge
        assert "p99" in [c.key for c in shown]


# 80x24 with every pane that has something to say, and the pane keys


async def test_at_80x24_the_verdict_summary_and_six_process_rows_fit() -> None:
    from support.synthetic_net import net_frames

    from tui.process_table import ProcessTable

    frame_list = net_frames()
    app = make_app(frame_list)
    async with app.run_test(size=(80, 24)) as pilot:
        await until_drawn(pilot, app, frame_list)
        lines = lines_of(app)
        # the verdict's trouble first: the OOM kill, then the saturated disks and cgroup
        assert lines[1].startswith(" kernel error │ nvme0n1 saturated")
        assert "CPU" in lines[2] and "Memory" in lines[2]
        disks = [line for line in lines if line.startswith(" disks ")]
        assert disks == [" disks nvme0n1 98% util aqu-sz 34.0  3 of 4 doing I/O  2 saturated".ljust(80)]
        table = app.query_one(ProcessTable)
        assert table.size.height - 1 >= 6
        header = next(line for line in lines if "COMMAND" in line)
        assert len(header) - header.index("COMMAND") - 2 >= 30


async def test_resize_small_open_and_close_a_process_then_enlarge_brings_every_pane_back() -> None:
    from tui.cgroups_pane import CgroupsPane
    from tui.kernel_events_pane import KernelEventsPane
    from tui.network_pane import NetworkPane
    from tui.storage_panes import DisksPane, FilesystemsPane

    others = (DisksPane, FilesystemsPane, NetworkPane, KernelEventsPane, CgroupsPane)
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        heights = {p: app.query_one(p).size.height for p in others}
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert all(shown(app).values())
        assert {p: app.query_one(p).size.height for p in others} == heights


async def test_number_keys_hide_and_show_panes_and_the_choice_is_saved(tmp_path) -> None:
    from probes.config import Config, load

    path = tmp_path / "orac" / "config.toml"
    app = make_app(config=Config(path))
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("7")
        await pilot.pause()
        assert shown(app) == {"gpu": True, "syscalls": False, "offcpu": True}
        assert load(path).panes == {"syscalls": False}
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen)
        # on the process screen 1-5 are its tabs, and 6-8 do nothing to the main screen's panes
        await pilot.press("8")
        await pilot.press("escape")
        await pilot.pause()
        assert shown(app)["offcpu"]
        await pilot.press("7")
        await pilot.pause()
        assert all(shown(app).values()) and load(path).panes == {"syscalls": True}


async def test_panes_the_config_hides_start_hidden() -> None:
    from pathlib import Path

    from probes.config import Config

    app = make_app(config=Config(Path("/nonexistent/config.toml"), panes={"gpu": False}, writable=False))
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        assert shown(app) == {"gpu": False, "syscalls": True, "offcpu": True}


async def test_a_theme_chosen_in_the_ui_is_saved_and_the_starting_one_is_not(tmp_path) -> None:
    from probes.config import Config, load

    path = tmp_path / "config.toml"
    app = make_app(config=Config(path), theme="orac-high-contrast")
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        assert not path.exists()
        app.theme = "orac-light"
        await pilot.pause()
        assert load(path).theme == "orac-light"


async def layouts_while_fed(monkeypatch: pytest.MonkeyPatch, frame_list: list, before=None) -> list:
    """The screens laid out while the app at 160x48, drawn from the first two frames, is fed the rest.

    `before(app)` runs once the first frames are drawn, before counting starts.
    """
    from textual.screen import Screen

    from probes.model.views import derive_frame
    from tui.messages import FrameReady

    layouts: list[Screen] = []
    refresh_layout = Screen._refresh_layout

    def counted(screen: Screen, *args, **kwargs) -> None:
        if screen._layout_required:
            layouts.append(screen)
        refresh_layout(screen, *args, **kwargs)

    app = make_app(frame_list[:2])
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        if before is not None:
            before(app)
        await pilot.pause(0.2)
        monkeypatch.setattr(Screen, "_refresh_layout", counted)
        for prev, frame in pairwise(frame_list[1:]):
            app.post_message(FrameReady(frame, derive_frame(prev, frame)))
            await pilot.pause(0.1)
        assert app.frame is frame_list[-1]
    return layouts


async def test_frames_that_change_figures_but_not_shapes_lay_nothing_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # A layout re-renders every widget on the screen: at one a tick it was a
    # third of orac's drawing cost. New figures repaint their own widget.
    from support.synthetic import frames

    assert await layouts_while_fed(monkeypatch, frames(ticks=7)) == []


async def test_lines_that_keep_their_height_shrink_only_when_told() -> None:
    from textual.app import App, ComposeResult

    from tui.pane import Lines

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield Lines(id="kept", keep_height=True)

    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        lines = app.query_one(Lines)
        lines.set_text("a\nb\nc")
        await pilot.pause()
        assert lines.size.height == 3
        lines.set_text("d")
        await pilot.pause()
        assert lines.text == "d\n\n" and lines.size.height == 3
        lines.reset_height()
        lines.set_text("e")
        await pilot.pause()
        assert lines.text == "e" and lines.size.height == 1


async def test_a_new_border_title_and_subtitle_are_drawn() -> None:
    # Pane's border texts repaint only their own line (see tui.pane._BorderText).
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        pane = app.query_one(SyscallsPane)
        pane.border_title = "Syscalls TITLE-1"
        pane.border_subtitle = "SUBTITLE-1"
        await pilot.pause()
        assert any("Syscalls TITLE-1" in line for line in lines_of(app))
        assert any("SUBTITLE-1" in line for line in lines_of(app))
        pane.border_title = "Syscalls TITLE-2"
        await pilot.pause()
        text = "\n".join(lines_of(app))
        assert "Syscalls TITLE-2" in text and "Syscalls TITLE-1" not in text and "SUBTITLE-1" in text
        assert pane.border_title == "Syscalls TITLE-2"


async def test_processes_issuing_block_io_that_come_and_go_lay_nothing_out_where_they_are_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Below 56 rows the issuers table steps aside; it laid the screen out
    # each time their number changed (4 to 6 times a minute on an idle box).
    from dataclasses import replace

    from support.synthetic import frames

    from tui.storage_panes import DisksPane

    frame_list = frames(ticks=7)
    for i in range(2, 7, 2):
        io = frame_list[i].samples["blockio"]
        frame_list[i] = replace(frame_list[i], samples={**frame_list[i].samples, "blockio": replace(
            io, processes=tuple(p for p in io.processes if p.pid != 131))})

    def hidden(app) -> None:
        assert not app.query_one(DisksPane).has_class("-issuers")

    assert await layouts_while_fed(monkeypatch, frame_list, hidden) == []


async def test_panes_hidden_on_a_short_terminal_show_the_newest_frame_when_it_grows() -> None:
    from tui.line_table import LineTable

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until_drawn(pilot, app)
        assert not any(shown(app).values())
        # Hidden panes are not drawn (their tables would lay the screen out)...
        offcpu = app.query_one("#offcpu-processes", LineTable)
        syscalls = app.query_one(SyscallsPane).query_one(LineTable)
        assert offcpu.rows == [] and syscalls.rows == []
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        await pilot.pause()
        # ... and drawn from the frame shown once there is room.
        assert all(shown(app).values())
        view = app.query_one(OffCpuPane).view
        assert view is not None and {p.pid for p, _ in offcpu.rows} == {p.pid for p in view.processes}
        assert syscalls.rows
