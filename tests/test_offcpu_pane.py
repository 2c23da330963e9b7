"""The off-CPU pane alone, fed a view derived from tests/support/synthetic_offcpu.py.

Snapshots need neither root nor eBPF. Update them with `--snapshot-update`
after an intended change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from support.harness import PaneApp, mounted, settle
from support.synthetic_offcpu import offcpu_sample
from textual.widgets import Static

from probes.sources.offcpu import OffCpuView, derive_offcpu
from tui.histogram import histogram_lines
from tui.line_table import LineTable
from tui.offcpu_pane import OffCpuPane, seconds_per_second, stack_lines, wrapped_frames

SIZE = (120, 30)


def offcpu_view() -> OffCpuView:
    return derive_offcpu(offcpu_sample(0), offcpu_sample(1), 1.0)


def OffCpuApp(view: OffCpuView | None = None, unavailable: tuple[str, str] | None = None) -> PaneApp[OffCpuPane]:
    """Only the off-CPU pane, fed once."""
    return PaneApp(OffCpuPane(), view, unavailable=unavailable, focus="#offcpu-processes", title="OffCpuApp")


def test_offcpu_pane(snap_compare) -> None:
    assert snap_compare(OffCpuApp(offcpu_view()), terminal_size=SIZE, run_before=settle)


def test_offcpu_pane_at_the_minimum_size(snap_compare) -> None:
    assert snap_compare(OffCpuApp(offcpu_view()), terminal_size=(80, 24), run_before=settle)


def test_offcpu_pane_second_process(snap_compare) -> None:
    async def down(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("down", "down")
        await pilot.pause()

    assert snap_compare(OffCpuApp(offcpu_view()), terminal_size=SIZE, run_before=down)


def test_offcpu_pane_unavailable(snap_compare) -> None:
    app = OffCpuApp(unavailable=("off-CPU needs root or CAP_BPF and CAP_PERFMON", "run `sudo orac`"))
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


async def test_processes_are_ranked_and_the_highlighted_ones_stacks_shown() -> None:
    app = OffCpuApp(offcpu_view())
    async with mounted(app, SIZE) as pilot:
        table = app.query_one("#offcpu-processes", LineTable)
        # By the time they could not run (D + R): the checkpointer's fsync first
        assert [p.pid for p, _ in table.rows] == [978, 2002, 977, 1200]
        assert "by D+R▼" in str(app.query_one(OffCpuPane).border_title)
        assert "fsync" in str(app.query_one("#offcpu-stacks", Static).render())
        await pilot.press("down", "down")
        await pilot.pause()
        title = str(app.query_one("#offcpu-title", Static).render())
        assert title.startswith("postgres 977") and "stacks cover 89%" in title
        stacks = str(app.query_one("#offcpu-stacks", Static).render())
        # most time first
        assert stacks.index("ep_poll") < stacks.index("folio_wait_bit_common") < stacks.index("not captured")
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == [977]


def test_the_title_says_which_share_of_stacks_was_lost() -> None:
    view = offcpu_view()
    assert view.stacks_lost_percent == 100 * 12 / 3_200
    recorded_before = derive_offcpu(*(dataclasses.replace(offcpu_sample(t), stack_blocks=None) for t in (0, 1)), 1.0)
    assert recorded_before.stacks_lost_percent is None


async def test_the_share_of_stacks_lost_is_in_the_title() -> None:
    app = OffCpuApp(offcpu_view())
    async with mounted(app, SIZE):
        assert "stacks lost 0.4%" in str(app.query_one(OffCpuPane).border_title)


async def test_unavailable_says_why_and_what_to_do() -> None:
    app = OffCpuApp(unavailable=("eBPF needs root, or CAP_BPF and CAP_PERFMON", "run `sudo orac`"))
    async with mounted(app, SIZE) as pilot:
        pane = app.query_one(OffCpuPane)
        assert pane.has_class("-unavailable")
        text = str(app.query_one(".pane-message", Static).render())
        assert "eBPF needs root" in text and "to fix: run `sudo orac`" in text
        # the data arrives later, once the probe runs
        pane.show_view(offcpu_view())
        await pilot.pause()
        assert not pane.has_class("-unavailable")


def test_numbers_and_stacks_as_text() -> None:
    assert [seconds_per_second(v) for v in (0, 0.001, 0.42, 6.5, 12.34)] == ["0", "<.01", "0.42", "6.50", "12.3"]
    view = offcpu_view()
    postgres = next(p for p in view.processes if p.pid == 977)
    text = stack_lines(postgres.stacks[0])
    # leaf first and emphasised, the kernel's frames without the syscall entry, then the user's
    assert text.splitlines()[1] == (
        "  [b $accent]schedule_hrtimeout_range[/] ← ep_poll ← do_epoll_wait ← __x64_sys_epoll_wait "
        "[$foreground-muted]← epoll_wait ← WaitEventSetWait ← ServerLoop ← PostmasterMain ← main[/]"
    )
    series = [("system", view.rq_hist, "$primary"), ("postgres", postgres.rq_hist, "$accent")]
    lines = histogram_lines(series, 40, "wait ≥", "nothing").splitlines()
    # from the first busy bucket (2 us) to the last (4 ms), system and process side by side
    assert lines[1].startswith("  2.0us ") and lines[-1].startswith("  4.2ms ")
    assert "system" in lines[0] and "postgres" in lines[0]
    # bars share what the label leaves: (40 - 7 - 2) // 2 cells each, the longest filling its cell
    assert "[$primary]" + "█" * 15 + "[/]" in lines[4]
    assert histogram_lines([("system", (0,) * 32, "$primary")], 40, "wait ≥", "no waits") == "[$foreground-muted]no waits[/]"


def test_a_python_stack_s_python_frames_are_not_muted() -> None:
    from probes.sources.offcpu import StackRate

    stack = StackRate(
        state="S", off_cpu_s_per_s=1.0, blocks_per_s=50, missing=None, python_frames=2,
        user_frames=("Thread.run (threading.py:964)", "wait_for_data (app.py:18)", "recv"),
        kernel_frames=("__x64_sys_recvfrom", "sock_recvmsg", "unix_stream_read_generic"),
    )
    # the Python caller reads like the kernel's frames; libc's recv below it stays muted
    assert stack_lines(stack).splitlines()[1] == (
        "  [b $accent]unix_stream_read_generic[/] ← sock_recvmsg ← __x64_sys_recvfrom [$foreground-muted]← recv[/] "
        "← wait_for_data (app.py:18) ← Thread.run (threading.py:964)"
    )


def test_frames_wrap_between_frames_at_the_width() -> None:
    frames = [("schedule_hrtimeout_range", "b $accent"), ("ep_poll", ""), ("do_epoll_wait", ""),
              ("epoll_wait", "$foreground-muted"), ("main", "$foreground-muted")]
    lines = wrapped_frames(frames, 30)
    assert lines == [
        "[b $accent]schedule_hrtimeout_range[/]",
        "← ep_poll ← do_epoll_wait",
        "[$foreground-muted]← epoll_wait ← main[/]",
    ]
    # one line without a width; a frame wider than the width keeps its own line
    assert len(wrapped_frames(frames, 0)) == 1
    assert wrapped_frames([("a" * 40, ""), ("b", "")], 10) == ["a" * 40, "← b"]



def with_orac(view: OffCpuView, pid: int = 4242) -> OffCpuView:
    """The view and an orac process that waits the most of all, D and R included."""
    busiest = max(view.processes, key=lambda p: p.off_cpu_s_per_s)
    states = {"S": 9.0, "D": 1.0, "R": 1.0, "other": 0.0}
    orac = dataclasses.replace(busiest, pid=pid, comm="orac", off_cpu_s_per_s=11.0, state_s_per_s=states)
    return dataclasses.replace(view, processes=(*view.processes, orac))


async def test_orac_comes_last_and_o_hides_it() -> None:
    app = OffCpuApp(with_orac(offcpu_view()))
    async with mounted(app, SIZE) as pilot:
        table = app.query_one("#offcpu-processes", LineTable)
        assert [p.pid for p, _ in table.rows][-1] == 4242
        await pilot.press("I")  # reversed, orac still last
        assert [p.pid for p, _ in table.rows] == [1200, 977, 2002, 978, 4242]
        assert "by D+R▲" in str(app.query_one(OffCpuPane).border_title)
        await pilot.press("o")
        assert 4242 not in [p.pid for p, _ in table.rows]
        assert "orac hidden" in str(app.query_one(OffCpuPane).border_title)
        await pilot.press("o")
        assert [p.pid for p, _ in table.rows][-1] == 4242


async def test_f6_sorts_by_a_column_chosen_from_the_keyboard() -> None:
    from tui.choice_screen import ChoiceScreen

    app = OffCpuApp(offcpu_view())
    async with mounted(app, SIZE) as pilot:
        table = app.query_one("#offcpu-processes", LineTable)
        await pilot.press("f6")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("down", "enter")  # from D+R to the next column, OFF/s
        assert table.sort_key == "off" and [p.pid for p, _ in table.rows] == [2002, 1200, 977, 978]
        assert "by OFF/s▼" in str(app.query_one(OffCpuPane).border_title)


async def test_o_is_offered_only_where_orac_is_among_the_processes() -> None:
    app = OffCpuApp(offcpu_view())
    async with mounted(app, SIZE):
        assert "o" not in app.active_bindings
    app = OffCpuApp(with_orac(offcpu_view()))
    async with mounted(app, SIZE):
        assert "o" in app.active_bindings


async def test_the_run_queue_histogram_scrolled_out_of_view_shows_the_newest_figures_once_scrolled_in() -> None:
    from textual.containers import VerticalScroll

    from tui.pane import Lines

    app = OffCpuApp(offcpu_view())
    async with mounted(app, (120, 10)) as pilot:
        pane = app.query_one(OffCpuPane)
        rq = app.query_one("#offcpu-rq", Lines)
        assert rq._scrolled_out(), "the pane is meant to be too short to show the run queue"
        pane.show_view(dataclasses.replace(offcpu_view(), rq_waits_per_s=777.0))
        await pilot.pause()
        # left alone while out of view: refreshing it would lay out every widget's place
        assert "777 waits/s" not in (rq.text or "")
        app.query_one("#offcpu-detail", VerticalScroll).scroll_end(animate=False, immediate=True)
        await pilot.pause()
        await pilot.pause()
        assert "777 waits/s" in (rq.text or "")
