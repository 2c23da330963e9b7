"""The drill-down's syscalls tab: the process's syscalls, the highlighted one's errnos and latency."""

from __future__ import annotations

import time

from support.harness import make_app, until_drawn

from probes.model.histograms import LatencyBucket
from probes.sources.syscalls import HIST_SLOTS, SyscallRate
from tui.drill_syscalls_pane import DrillSyscallsPane, detail_lines


def rate(**overrides) -> SyscallRate:
    hist = [0] * HIST_SLOTS
    hist[10], hist[11], hist[20] = 600, 300, 100  # ~1 us, ~2 us, ~1 ms
    values = dict(
        name="openat", calls_per_s=500.0, errors_per_s=250.0, top_errno="ENOENT", mean_latency_ns=105_000.0,
        p50_latency_bucket=LatencyBucket(1 << 10, 1 << 11), p99_latency_bucket=LatencyBucket(1 << 20, 1 << 21),
        latency_hist=tuple(hist),
        errnos=(("ENOENT", 200.0), ("EACCES", 50.0)),
    )
    values.update(overrides)
    return SyscallRate(**values)


def test_detail_lists_errnos_and_draws_the_latency_histogram_with_rates() -> None:
    lines = detail_lines(rate(), 60).splitlines()
    # the exact mean, and the buckets the percentiles lie in
    assert lines[0].startswith("[b $accent]openat[/] 500/s  mean 105us  p50 1.0-2.0us  p99 1.0-2.1ms")
    assert lines[1:4] == ["[b]errors[/] 250/s", "     200/s ENOENT", "      50/s EACCES"]
    bars = [line for line in lines if "█" in line or "▏" in line]
    # every bucket from the first busy one (1 us) to the last (1 ms), each with its calls per second
    assert bars[0].startswith("  1.0us ") and bars[0].endswith("300")
    assert bars[1].endswith("150") and bars[-1].startswith("  1.0ms ") and bars[-1].endswith("50")
    assert len([line for line in lines if line.rstrip().endswith(" 0")]) == 8  # the empty buckets between


def test_detail_of_a_syscall_without_errors() -> None:
    text = detail_lines(rate(errors_per_s=0.0, top_errno=None, errnos=()), 60)
    assert "no errors" in text


async def test_the_tab_key_focuses_its_table_and_the_detail_follows_the_cursor() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app)
        # nginx (1200), third by CPU
        await pilot.press("down", "down", "enter")
        deadline = time.monotonic() + 10
        while not app.screen.query(DrillSyscallsPane):
            assert time.monotonic() < deadline, "the process screen never opened"
            await pilot.pause(0.02)
        await pilot.pause()
        await pilot.press("3")
        await pilot.pause()
        pane = app.screen.query_one(DrillSyscallsPane)
        detail = pane.query_one("#syscall-detail").text
        assert "recvfrom" in detail and "EAGAIN" in detail
        await pilot.press("down")
        await pilot.pause()
        detail = pane.query_one("#syscall-detail").text
        assert "epoll_wait" in detail and "no errors" in detail
