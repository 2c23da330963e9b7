"""The drill-down: targeted traces start with the process screen and detach when it closes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from support.ebpf import unavailable

from probes.contract import ProbeUnavailable
from probes.ebpf.checks import check_ebpf
from probes.model.collector import Collector
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe
from tui.app import OracApp
from tui.drill_syscalls_pane import DrillSyscallsPane
from tui.drilldown import DrillDown, prepare_drill_down
from tui.process_screen import ProcessScreen
from tui.process_table import ProcessTable
from tui.profile_pane import ProfilePane

SIZE = (160, 48)

WORKLOAD = """
import os, sys, time
sys.stdin.readline()
while True:
    for _ in range(5000):
        os.getppid()
    time.sleep(0.005)
"""


def bpf_links() -> int:
    """eBPF links this process holds open: each keeps a program attached."""
    count = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                count += "link_id:" in f.read()
        except OSError:
            continue
    return count


@pytest.fixture
def ebpf() -> None:
    try:
        check_ebpf(tracefs=False)
    except ProbeUnavailable as exc:
        unavailable(str(exc))


async def wait_for(pilot, predicate, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


async def test_drilldown_traces_only_its_process_and_detaches(ebpf, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, text=True)
    other = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, text=True)
    try:
        for proc in (target, other):
            proc.stdin.write("go\n")
            proc.stdin.flush()
        probes = [SystemProbe(), ProcessProbe()]
        # As `orac` does at start: compiled aside, so the drill-down only attaches them.
        prepare_drill_down({p.name for p in probes}).join()
        before = bpf_links()
        app = OracApp(Collector(probes, interval_s=0.5))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "procs" in app.views)
            app.post_message(ProcessTable.Selected(target.pid))
            await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
            pane = app.screen.query_one(DrillSyscallsPane)
            await wait_for(pilot, lambda: pane.view is not None and pane.view.processes)
            assert bpf_links() > before
            view = pane.view
            # filtered in the kernel: only the target, busy with getppid
            assert {p.pid for p in view.processes} == {target.pid}
            assert view.top_syscalls[0].name == "getppid"
            profile = app.screen.query_one(ProfilePane)
            await wait_for(pilot, lambda: profile.view is not None and profile.view.samples > 0)
            assert profile.view.target_pid == target.pid
            # in the app's own frames, so a recording (R) holds it too
            assert app.frame.samples["profile"].target_pid == target.pid
            await pilot.press("f")
            folded = list(tmp_path.glob(f"orac-profile-{target.pid}-*.folded"))
            assert len(folded) == 1
            # "frame;frame;frame count" lines
            assert all(line.rsplit(" ", 1)[1].isdigit() for line in folded[0].read_text().splitlines())
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProcessScreen))
            await wait_for(pilot, lambda: bpf_links() == before, timeout_s=5)
    finally:
        for proc in (target, other):
            proc.kill()
            proc.wait()


async def test_recorded_frames_show_the_process_syscalls_and_off_cpu_but_no_profile() -> None:
    from support.harness import make_app, until_drawn

    from tui.offcpu_pane import OffCpuPane
    from tui.screenshot import capture

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        app.post_message(ProcessTable.Selected(1200))
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
        drill = app.screen.query_one(DrillDown)
        assert drill.added == []  # nothing traced for recorded frames
        await wait_for(pilot, lambda: app.screen.query_one(DrillSyscallsPane).view is not None)
        syscalls = app.screen.query_one(DrillSyscallsPane).view
        # narrowed to nginx (1200): its own syscalls, nobody else's
        assert [p.pid for p in syscalls.processes] == [1200]
        assert {r.name for r in syscalls.top_syscalls} == {"recvfrom", "epoll_wait"}
        offcpu = app.screen.query_one(OffCpuPane).view
        assert [p.pid for p in offcpu.processes] == [1200]
        await pilot.pause()
        assert "no profile data in what is shown" in capture(app)[1]


async def test_with_system_wide_syscalls_running_the_drilldown_does_not_trace_them_again(ebpf) -> None:
    from probes.sources.syscalls import SyscallProbe

    target = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, text=True)
    try:
        target.stdin.write("go\n")
        target.stdin.flush()
        probes = [SystemProbe(), ProcessProbe(), SyscallProbe()]
        prepare_drill_down({p.name for p in probes}).join()
        app = OracApp(Collector(probes, interval_s=0.5))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "syscalls" in app.views)
            app.post_message(ProcessTable.Selected(target.pid))
            await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
            drill = app.screen.query_one(DrillDown)
            assert drill.added == ["threads", "profile", "python", "offcpu", "blockio"]
            pane = app.screen.query_one(DrillSyscallsPane)
            await wait_for(pilot, lambda: pane.view is not None and pane.view.processes)
            assert [p.pid for p in pane.view.processes] == [target.pid]
            assert pane.view.top_syscalls[0].name == "getppid"
            # the system-wide probe counts the process thread by thread while the screen is open
            system_wide = next(p for p in app.source.probes if p.name == "syscalls")
            assert system_wide.focus_pid == target.pid
            await wait_for(pilot, lambda: any(t.tid == target.pid for t in app.views["syscalls"].threads))
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProcessScreen))
            assert system_wide.focus_pid is None
            await wait_for(pilot, lambda: "syscalls" in app.views and app.views["syscalls"].threads == ())
    finally:
        target.kill()
        target.wait()


def test_the_profile_rate_reaches_the_drilldowns_profile() -> None:
    from tui.drilldown import drill_probes

    probes = {p.name: p for p in drill_probes(4242, {"syscalls", "offcpu", "blockio"}, profile_hz=499)}
    assert set(probes) == {"threads", "profile", "python"}
    assert probes["profile"].frequency_hz == 499
    assert probes["threads"].pid == 4242


async def test_the_app_hands_its_profile_rate_to_the_drilldown() -> None:
    from support.harness import make_app, until_drawn

    app = make_app(profile_hz=997)
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        app.post_message(ProcessTable.Selected(1200))
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
        assert app.screen.query_one(DrillDown).profile_hz == 997


async def test_the_block_io_tab_shows_the_process_requests_beside_its_d_state() -> None:
    from support.harness import make_app, until_drawn

    from tui.drill_block_io_pane import DrillBlockIoPane

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        app.post_message(ProcessTable.Selected(978))
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
        await pilot.press("5")
        pane = app.screen.query_one(DrillBlockIoPane)
        await wait_for(pilot, lambda: pane.view is not None)
        summary = str(pane.query_one("#blockio-summary").text)
        # synthetic: 800 reads of 64 KiB and 2000 writes of 128 KiB in the second
        assert "requests 2800/s (read 800, write 2000)" in summary, summary
        assert "read 50.0M/s" in summary and "write 250M/s" in summary, summary
        assert "off-CPU in D state:" in summary and "p99 1.0-2.1ms" in summary, summary
        histogram = str(pane.query_one("#blockio-histogram").text)
        assert histogram.count("\n") >= 5, histogram


async def test_a_tab_key_pressed_as_the_screen_opens_shows_that_tab() -> None:
    # The first tab's table takes focus as the screen opens, and a widget taking
    # focus shows its tab: a late focus undid the key (seen in half the openings).
    from support.harness import make_app, until_drawn
    from textual.widgets import TabbedContent

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        for _ in range(4):
            app.post_message(ProcessTable.Selected(978))
            await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
            await pilot.press("6")
            await pilot.pause(0.5)
            assert app.screen.query_one(TabbedContent).active == "python"
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProcessScreen))
