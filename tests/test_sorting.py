"""A new order shows the top of the list; the cursor follows its process only once the user moved it."""

from __future__ import annotations

import dataclasses

import pytest
from support import synthetic
from support.harness import make_app, until_drawn

from tui.process_table import ProcessTable

SIZE = (160, 48)


def crowd(n: int = 120) -> list[tuple]:
    """The synthetic box and `n` idle processes, more than the table shows."""
    idle = [
        (3000 + i, 1, "nobody", "S", f"idle{i}", f"/usr/bin/idle{i}", "/", 1_000_000, 1, 1, 1.0)
        for i in range(n)
    ]
    return [*synthetic.PROCESSES, *idle]


def top_rows(table: ProcessTable, n: int = 3) -> list[int]:
    """The pids of the first `n` rows on screen."""
    first = table.scroll_offset.y
    return [p.pid for p, _ in table.rows[first : first + n]]


@pytest.mark.parametrize("keys", [("N", "P"), ("N",), ("T",), ("t",), ("t", "t"), ("M", "M")])
async def test_a_sort_shows_the_top_of_the_list(keys: tuple[str, ...]) -> None:
    frame_list = synthetic.frames(crowd())
    app = make_app(frame_list)
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        table = app.query_one(ProcessTable)
        await pilot.press(*keys)
        await pilot.pause()
        assert table.scroll_offset.y == 0 and table.cursor == 0
        assert top_rows(table, 1) == [table.rows[0][0].pid]
        if keys == ("N", "P"):
            assert top_rows(table) == [2002, 978, 1200]  # the busiest, on screen


async def test_a_filter_and_its_clearing_show_the_top_of_the_list() -> None:
    frame_list = synthetic.frames(crowd())
    app = make_app(frame_list)
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        table = app.query_one(ProcessTable)
        await pilot.press("N", "end")  # the last pid, far below
        await pilot.press("slash", "i", "d", "l", "e")
        assert table.scroll_offset.y == 0 and table.cursor == 0
        await pilot.press("escape")
        await pilot.pause()
        assert table.scroll_offset.y == 0 and table.cursor == 0 and top_rows(table, 1) == [1]


async def test_the_cursor_follows_the_process_the_user_moved_it_to_across_ticks() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        await pilot.press("down", "down")
        chosen = table.selected
        assert chosen.pid == 1200
        # the next tick: nginx is now the busiest
        busier = dataclasses.replace(chosen, cpu_percent=400.0)
        table.update_processes(tuple(busier if p.pid == 1200 else p for p, _ in table.rows))
        assert table.selected.pid == 1200 and table.cursor == 0


async def test_untouched_the_cursor_stays_on_the_top_line_across_ticks() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        table = app.query_one(ProcessTable)
        assert table.selected.pid == 2002
        busier = [dataclasses.replace(p, cpu_percent=400.0) if p.pid == 1200 else p for p, _ in table.rows]
        table.update_processes(tuple(busier))
        assert table.cursor == 0 and table.selected.pid == 1200


async def test_in_replay_a_sort_and_a_seek_show_the_top_of_the_list(tmp_path) -> None:
    from support.harness import wait_for

    from probes.store.reader import Recording
    from probes.store.replay import ReplaySource
    from probes.store.writer import Recorder
    from tui.app import OracApp

    base = synthetic.frames(crowd())
    path = tmp_path / "crowd.orac"
    with Recorder(path, interval_s=1.0, probes=["cpu", "procs"], unavailable=synthetic.NO_GPU) as rec:
        for t in range(20):
            f = base[t % 2]
            rec.append(dataclasses.replace(f, wall_ns=base[0].wall_ns + t * 10**9, mono_ns=base[0].mono_ns + t * 10**9))
    recording = Recording(path)
    try:
        app = OracApp(ReplaySource(recording, paused=True))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "procs" in app.views)
            table = app.query_one(ProcessTable)
            for keys in (("N",), ("N", "P"), ("full_stop",), ("T",)):
                await pilot.press(*keys)
                await pilot.pause(0.2)
                assert table.scroll_offset.y == 0 and table.cursor == 0, keys
            await pilot.press("P")
            await pilot.pause(0.2)
            assert top_rows(table) == [2002, 978, 1200]
    finally:
        recording.close()
