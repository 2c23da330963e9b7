"""SVG snapshots of orac's screens, fed from fixed frames so they never drift.

Update after an intended change with `scripts/test --snapshot-update` and
look at the report before committing.
"""

from __future__ import annotations

import pytest
from support.harness import make_app, press_after_drawn, until_drawn, wait_for

SIZE = (160, 48)


@pytest.mark.parametrize("theme", ["orac-dark", "orac-light", "orac-high-contrast"])
def test_main_screen(snap_compare, theme: str) -> None:
    assert snap_compare(make_app(theme=theme), terminal_size=SIZE, run_before=press_after_drawn())


def test_tree_view(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=press_after_drawn("t"))


def test_filter(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=press_after_drawn("slash", "p", "o", "s"))


def test_sorted_by_memory(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=press_after_drawn("M"))


def test_process_screen(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=press_after_drawn("down", "enter"))


def test_threads_tab(snap_compare) -> None:
    from support.synthetic_threads import drill_frames

    from tui.process_screen import ProcessScreen

    async def open_threads(pilot) -> None:
        await until_drawn(pilot, pilot.app)
        # python3 (2002), the busiest process, is the first row
        await pilot.press("enter")
        # A key typed before the screen is up would reach the main screen.
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProcessScreen))
        await pilot.press("4")
        await wait_for(pilot, lambda: getattr(pilot.app.focused, "id", None) == "threads")
        await pilot.pause()

    assert snap_compare(make_app(drill_frames()), terminal_size=SIZE, run_before=open_threads)


def test_drill_syscalls_tab(snap_compare) -> None:
    # nginx (1200), third by CPU: its syscalls, recvfrom's errors and latency beside them
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=press_after_drawn("down", "down", "enter", "3"))


def test_help(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=press_after_drawn("question_mark"))


def test_signal_confirmation(snap_compare) -> None:
    from support.harness import LiveFrames
    from support.synthetic import frames

    from tui.app import OracApp

    # k asks only where the processes run now; nothing is sent without Enter.
    assert snap_compare(OracApp(LiveFrames(frames())), terminal_size=SIZE, run_before=press_after_drawn("k"))


def test_too_small(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(70, 20), run_before=press_after_drawn())


def test_minimum_size(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=press_after_drawn())


def test_120x40(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=press_after_drawn())


def test_200x60_with_every_pane(snap_compare) -> None:
    from support.synthetic_net import net_frames

    assert snap_compare(make_app(net_frames()), terminal_size=(200, 60), run_before=press_after_drawn())


# Every pane with something to say, at each layout's size, in each theme.
@pytest.mark.parametrize("theme", ["orac-light", "orac-high-contrast"])
@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 48), (200, 60)])
def test_every_pane_at_each_size_in_each_theme(snap_compare, size: tuple[int, int], theme: str) -> None:
    from support.synthetic_net import net_frames

    assert snap_compare(make_app(net_frames(), theme=theme), terminal_size=size, run_before=press_after_drawn())


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 48)])
def test_every_pane_at_each_size_in_the_dark_theme(snap_compare, size: tuple[int, int]) -> None:
    # 200x60 dark is test_200x60_with_every_pane
    from support.synthetic_net import net_frames

    assert snap_compare(make_app(net_frames()), terminal_size=size, run_before=press_after_drawn())


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_process_screen_on_a_small_terminal(snap_compare, size: tuple[int, int]) -> None:
    # nginx (1200): its state has the longest words
    assert snap_compare(make_app(), terminal_size=size, run_before=press_after_drawn("down", "down", "enter"))


def test_syscalls_unavailable(snap_compare) -> None:
    from support import synthetic

    from probes.model.collector import FrameSequence
    from tui.app import OracApp

    remedy = "run `sudo orac` (or give it CAP_BPF and CAP_PERFMON)"
    frame_list = [
        type(f)(f.wall_ns, f.mono_ns, {k: v for k, v in f.samples.items() if k != "syscalls"},
                {"syscalls": ("eBPF needs root or CAP_BPF and CAP_PERFMON", remedy)})
        for f in synthetic.frames()
    ]

    async def run_before(pilot) -> None:
        await until_drawn(pilot, pilot.app, frame_list)

    assert snap_compare(OracApp(FrameSequence(frame_list)), terminal_size=SIZE, run_before=run_before)


def test_replay(snap_compare, tmp_path) -> None:
    import os

    from support.recordings import synthetic_recording

    from probes.store.reader import Recording
    from probes.store.replay import ReplaySource
    from tui.app import OracApp

    # The timeline shows local time: pin the zone so the snapshot is the same everywhere.
    os.environ["TZ"] = "UTC"
    import time

    time.tzset()
    recording = Recording(synthetic_recording(tmp_path / "s.orac"))
    app = OracApp(ReplaySource(recording, paused=True))

    async def run_before(pilot) -> None:
        while "procs" not in app.views:
            await pilot.pause(0.02)
        await pilot.press("full_stop")
        while app.query_one("ReplayBar").position.index != 11 or app.bookmarks is None:
            await pilot.pause(0.02)
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        recording.close()
