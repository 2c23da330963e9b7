"""The verdict strip in the app: its cells, the clock, v and Enter, narrow terminals, replay."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from support import synthetic
from support.harness import make_app, until_drawn, wait_for
from textual.app import App, ComposeResult

from probes.model.frame import Frame
from probes.model.verdict import Cell, State
from probes.store.reader import Recording
from probes.store.replay import ReplaySource
from probes.store.writer import Recorder
from tui.app import OracApp
from tui.process_screen import ProcessScreen
from tui.process_table import ProcessTable
from tui.replay_bar import ReplayBar
from tui.screenshot import capture
from tui.storage_panes import DisksTable
from tui.verdict_strip import VerdictStrip, clock


def busy_frames() -> list[Frame]:
    """The synthetic box with 12 tasks runnable on its 4 CPUs at the second frame."""
    first, second = synthetic.frames()
    return [first, replace(second, samples={**second.samples, "cpu": replace(second.samples["cpu"], procs_running=13)})]


async def test_the_strip_shows_every_resource_and_the_frames_local_time() -> None:
    app = make_app(busy_frames())
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app, busy_frames())
        line = capture(app)[1].splitlines()[1]
        assert "CPU saturated: 12 runnable on 4 CPUs" in line
        assert "nvme0n1 saturated" in line and "mem ok" in line
        assert line.rstrip().endswith(clock(busy_frames()[-1].wall_ns / 1e9))


async def test_v_selects_the_worst_cell_then_the_next_and_enter_opens_its_process() -> None:
    app = make_app(busy_frames())
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app, busy_frames())
        strip = app.query_one(VerdictStrip)
        await pilot.press("v")
        assert app.focused is strip and strip.cells[strip.selected].resource == "cpu"
        await pilot.press("v")
        assert strip.cells[strip.selected].resource == "memory"
        await pilot.press("left", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
        assert app.screen.pid == 2002  # python3, the busiest


async def test_enter_on_a_cell_without_a_process_focuses_its_pane() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        strip = app.query_one(VerdictStrip)
        await pilot.press("v")
        cell = strip.cells[strip.selected]
        assert cell.resource.startswith("disk ") and cell.contributor is None  # no procio in these frames
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.focused, DisksTable)
        await pilot.press("v", "escape")
        assert isinstance(app.focused, ProcessTable)


async def test_at_80x24_the_trouble_keeps_its_state_in_words_the_ok_cells_are_counted_and_the_clock_shows() -> None:
    app = make_app(busy_frames())
    async with app.run_test(size=(80, 24)) as pilot:
        await until_drawn(pilot, app, busy_frames())
        line = capture(app)[1].splitlines()[1]
        assert line.startswith(" CPU saturated │ nvme0n1 saturated │ vg0-root saturated │ +2 ok ")
        assert clock(busy_frames()[-1].wall_ns / 1e9) in line


async def test_replay_shows_the_verdict_that_was_true_then(tmp_path: Path) -> None:
    base = synthetic.frames()
    path = tmp_path / "r.orac"
    with Recorder(path, interval_s=1.0, probes=["cpu", "procs", "disks"], unavailable=synthetic.NO_GPU) as rec:
        for t in range(20):
            f = base[t % 2]
            system = replace(f.samples["cpu"], procs_running=2 if t < 10 else 13)
            samples = {"cpu": system, "procs": f.samples["procs"], "disks": f.samples["disks"]}
            rec.append(Frame(base[0].wall_ns + t * 10**9, base[0].mono_ns + t * 10**9, samples, f.unavailable))
    recording = Recording(path)
    try:
        app = OracApp(ReplaySource(recording, paused=True))
        async with app.run_test(size=(160, 48)) as pilot:
            strip = app.query_one(VerdictStrip)
            await wait_for(pilot, lambda: bool(strip.cells))
            assert strip.cells[0].summary == "CPU ok: 53 % busy, 1 runnable on 4 CPUs"
            assert clock(base[0].wall_ns / 1e9 + 1) in capture(app)[1]
            await pilot.press("full_stop")  # +10 s
            bar = app.query_one(ReplayBar)
            await wait_for(pilot, lambda: bar.position.index == 11)
            await wait_for(pilot, lambda: strip.cells[0].summary.startswith("CPU saturated: 12 runnable"))
            assert clock(base[0].wall_ns / 1e9 + 11) in capture(app)[1]
    finally:
        recording.close()


async def test_the_live_clock_moves_with_the_frames_and_keeps_going_between_them(monkeypatch: pytest.MonkeyPatch) -> None:
    class Strip(App[None]):
        def compose(self) -> ComposeResult:
            yield VerdictStrip(live=True)

    ticks = []
    monkeypatch.setattr(VerdictStrip, "_tick_clock", lambda self: ticks.append(time.monotonic()))
    app = Strip()
    async with app.run_test(size=(80, 3)) as pilot:
        strip = app.query_one(VerdictStrip)
        # Frames every 0.5 s: the clock is drawn with them and its timer stays put.
        for _ in range(6):
            strip.show((), time.time_ns())
            await pilot.pause(0.5)
        assert ticks == []
        # No frame for 2.5 s: it keeps the time itself, no more than the timer's period apart.
        await pilot.pause(2.5)
        assert len(ticks) >= 2
        # A screenshot shows when it was taken, whatever the strip last drew.
        monkeypatch.setattr("tui.verdict_strip.time.time", lambda: time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1)))
        assert capture(app)[1].splitlines()[0].rstrip().endswith(clock(time.time()))


async def test_a_label_that_changes_length_each_tick_does_not_switch_the_strips_form_each_tick() -> None:
    class Strip(App[None]):
        def compose(self) -> ComposeResult:
            yield VerdictStrip(live=False)

    def cells(disk: str) -> list[Cell]:
        return [
            Cell("cpu", "CPU", State.OK, "CPU: 3 % busy, run queue p99 12 us", "3 % busy"),
            Cell("memory", "mem", State.OK, "memory: 3 % used", "3 % used"),
            Cell("disks", disk, State.OK, f"{disk} ok: idle", "idle"),
            Cell("net", "net", State.OK, "net ok: idle", "idle"),
        ]

    now = [1000.0]
    app = Strip()
    # Room for every cell named with the short disk label, not with the long one.
    width = 2 + len(clock(0)) + len(" CPU ok: 3 % busy │ mem ok │ vda ok │ net ok ")
    async with app.run_test(size=(width, 3)) as pilot:
        strip = app.query_one(VerdictStrip)
        strip.monotonic = lambda: now[0]

        def line(disk: str) -> str:
            strip.show(cells(disk), 0)
            return strip.render().plain

        assert "+3 ok" in line("a-disk-with-a-long-name")
        # Named in full once the short label has fitted for SETTLE_S, not at the first tick it fits.
        for _ in range(5):
            now[0] += 1
            assert "+3 ok" in line("vda")
            now[0] += 1
            assert "+3 ok" in line("a-disk-with-a-long-name")
        for _ in range(10):
            now[0] += 1
            assert "+3 ok" in line("vda")
        now[0] += 1
        assert "mem ok │ vda ok │ net ok" in line("vda")
        # Back to the compact form at once when the full one no longer fits.
        assert "+3 ok" in line("a-disk-with-a-long-name")
        await pilot.pause()
