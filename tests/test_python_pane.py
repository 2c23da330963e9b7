"""The drill-down's Python tab: py-spy's functions and stacks, and one line where there are none;
live, on the 70/30 program and on a process that is not Python."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from support import WORKLOADS, cannot_run
from textual.app import App, ComposeResult

from probes.model.collector import Collector
from probes.sources.processes import ProcessProbe
from probes.sources.python_stacks import (
    PythonStacksSample,
    WaitingThread,
    derive_python_stacks,
    parse_dump,
    parse_raw,
    py_spy_path,
)
from probes.sources.system import SystemProbe
from tui.app import OracApp
from tui.line_table import LineTable
from tui.process_screen import ProcessScreen
from tui.process_table import ProcessTable
from tui.python_pane import PythonPane

SYSTEM_PYTHON = shutil.which("python3") or sys.executable
RAW = "thread (7): crunch;main (a.py:1);hot_f (a.py:5) 70\nthread (7): crunch;main (a.py:1);hot_g (a.py:9) 30\n"


def view(raw: str = RAW, sampled_ns: int = 2 * 10**9, problem: str = "", note: str = "", pid: int = 7):
    stacks, names = parse_raw(raw)
    samples = sum(s.samples for s in stacks)
    sample = PythonStacksSample(pid, "3.12", tuple(stacks), names, samples, 0, sampled_ns, 99, False, problem, note)
    return derive_python_stacks(sample, sample, 1.0)


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PythonPane(7)


async def test_functions_by_self_share_and_the_perf_map_hint() -> None:
    app = PaneApp()
    async with app.run_test(size=(120, 20)) as pilot:
        pane = app.query_one(PythonPane)
        pane.show_view(view(note="start it with PYTHONPERFSUPPORT=1"))
        await pilot.pause()
        rows = [f.name for f, _ in pane.query_one("#python-functions", LineTable).rows]
        assert rows[:2] == ["hot_f (a.py:5)", "hot_g (a.py:9)"]
        assert "Python 3.12" in str(pane.border_title)
        assert "100 samples in 2.0s at 99 Hz" in str(pane.border_subtitle)
        assert "PYTHONPERFSUPPORT=1" in str(pane.border_subtitle)
        # a tick in which no chunk ended keeps the last chunk's figures
        pane.show_view(view(raw="", sampled_ns=0))
        await pilot.pause()
        assert len(pane.query_one("#python-functions", LineTable).rows) == 3


async def test_no_frames_says_why_in_one_line() -> None:
    app = PaneApp()
    async with app.run_test(size=(120, 20)) as pilot:
        pane = app.query_one(PythonPane)
        pane.show_view(view(raw="", sampled_ns=0))
        assert pane.unavailable is not None and "waiting for the first samples (py-spy's" in pane.unavailable.reason
        pane.show_view(view(raw="", problem="Permission denied (os error 13)"))
        await pilot.pause()
        assert pane.unavailable.reason == "no Python frames: Permission denied (os error 13)"
        pane.show_view(view(pid=8))
        assert "no Python stacks of process 7" in pane.unavailable.reason


def dump_thread(tid: int, name: str, active: bool, frames: list[tuple[str, str, int]]) -> dict:
    return {
        "pid": 7, "thread_id": tid * 1000, "thread_name": name, "os_thread_id": tid, "active": active, "owns_gil": False,
        "frames": [{"name": n, "filename": f"/srv/{f}", "short_filename": f, "line": line} for n, f, line in frames],
    }


def test_native_frames_without_a_symbol_count_under_their_file() -> None:
    raw = (
        "thread (7): MainThread;<module> (z.py:1);compress_forever (z.py:15);deflate (libz.so.1.2.13);"
        "0x7ff0c23c7f77 (libz.so.1.2.13) 40\n"
        "thread (7): MainThread;<module> (z.py:1);compress_forever (z.py:15);deflate (libz.so.1.2.13);"
        "0x7ff0c23c7f7f (libz.so.1.2.13) 10\n"
    )
    stacks, _ = parse_raw(raw)
    frames = ("<module> (z.py:1)", "compress_forever (z.py:15)", "deflate (libz.so.1.2.13)", "libz.so.1.2.13 (no symbol)")
    assert [(s.frames, s.samples) for s in stacks] == [(frames, 40), (frames, 10)]


def test_a_dump_gives_the_waiting_threads_innermost_frame_last() -> None:
    import json

    text = json.dumps([
        dump_thread(11, "crunch", True, [("hot_f", "a.py", 6), ("main", "a.py", 2)]),
        dump_thread(12, "waiter", False, [("wait_for_data", "b.py", 21), ("Thread.run", "threading.py", 975)]),
        dump_thread(13, "", False, []),
    ])
    waiting, names = parse_dump(text)
    assert waiting == [WaitingThread(12, ("Thread.run (threading.py:975)", "wait_for_data (b.py:21)"))]
    assert names == {11: "crunch", 12: "waiter"}
    # what py-spy writes when it fails, or half a dump: nothing, no exception
    for bad in ("", "Error: Failed to find python version", text[: len(text) // 2], '{"a": 1}', '[{"active": false}]'):
        assert parse_dump(bad) == ([], {}), bad


async def open_python_tab(pilot, app: OracApp, pid: int) -> None:
    """Open `pid`'s process screen once the process table has a view, and its Python tab."""
    await wait_for(pilot, lambda: "procs" in app.views)
    app.post_message(ProcessTable.Selected(pid))
    await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
    await pilot.press("6")


async def wait_for(pilot, predicate, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.1)


async def test_the_live_drilldown_names_python_functions_and_says_when_a_process_is_not_python(tmp_path, monkeypatch) -> None:
    if py_spy_path() is None:
        cannot_run("py-spy is not installed")
    monkeypatch.chdir(tmp_path)
    target = subprocess.Popen([SYSTEM_PYTHON, str(WORKLOADS / "python_70_30.py")], stdout=subprocess.PIPE, text=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        app = OracApp(Collector([SystemProbe(), ProcessProbe()], interval_s=0.5))
        async with app.run_test(size=(160, 48)) as pilot:
            await open_python_tab(pilot, app, target.pid)
            pane = app.screen.query_one(PythonPane)
            await wait_for(pilot, lambda: pane.view is not None and pane.view.samples > 0)
            names = [f.name.split(" ")[0] for f in pane.view.top_total]
            assert "hot_f" in names and "hot_g" in names, names
            await pilot.press("f")
            folded = list(tmp_path.glob(f"orac-python-{target.pid}-*.folded"))
            assert len(folded) == 1 and "hot_f (" in folded[0].read_text()
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProcessScreen))

            app.post_message(ProcessTable.Selected(sleeper.pid))
            await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen))
            pane = app.screen.query_one(PythonPane)
            await wait_for(pilot, lambda: pane.unavailable is not None and "not Python" in pane.unavailable.reason)
    finally:
        for proc in (target, sleeper):
            proc.kill()
            proc.wait()


async def test_a_thread_blocked_in_recv_shows_its_python_line_and_its_off_cpu_time() -> None:
    import os

    from tui.python_pane import WaitingRow

    if py_spy_path() is None:
        cannot_run("py-spy is not installed")
    workload = WORKLOADS / "python_recv_wait.py"
    recv_line = next(i for i, line in enumerate(workload.read_text().splitlines(), 1) if "sock.recv(" in line)
    target = subprocess.Popen([SYSTEM_PYTHON, str(workload)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        app = OracApp(Collector([SystemProbe(), ProcessProbe()], interval_s=1.0))
        async with app.run_test(size=(160, 48)) as pilot:
            await open_python_tab(pilot, app, target.pid)
            table = app.screen.query_one("#python-waiting", LineTable)
            # as root the off-CPU probe measures the thread's time; without eBPF the column says "-"
            measured = os.geteuid() == 0

            def waiter() -> WaitingRow | None:
                rows = [r for r, _ in table.rows if r.name == "waiter"]
                if rows and (rows[0].off_cpu_s_per_s is not None or not measured):
                    return rows[0]
                return None

            await wait_for(pilot, lambda: waiter() is not None)
            await pilot.pause(2.5)  # a whole interval of the off-CPU probe's, past its first short one
            row = waiter()
            assert row is not None
            assert row.frames[-1] == f"wait_for_data (python_recv_wait.py:{recv_line})", row.frames
            if measured:
                # blocked but for the moments it takes each byte: 1 s off CPU a second, within 10 %
                assert row.off_cpu_s_per_s == pytest.approx(1.0, rel=0.1)
    finally:
        assert target.stdin is not None
        target.stdin.close()
        target.wait(timeout=10)


async def test_a_c_extensions_hot_loop_shows_its_python_caller_and_its_native_code() -> None:
    import os

    from tui.profile_pane import ProfilePane

    if py_spy_path() is None:
        cannot_run("py-spy is not installed")
    target = subprocess.Popen([SYSTEM_PYTHON, str(WORKLOADS / "python_zlib_loop.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        app = OracApp(Collector([SystemProbe(), ProcessProbe()], interval_s=1.0))
        async with app.run_test(size=(160, 48)) as pilot:
            await open_python_tab(pilot, app, target.pid)
            python = app.screen.query_one(PythonPane)
            await wait_for(pilot, lambda: python.view is not None and python.view.samples > 50)
            # py-spy sees the Python caller running (it reads the interpreter's frames, not zlib's)
            caller = next(f for f in python.view.top_total if f.name.startswith("compress_forever ("))
            assert caller.total_percent > 90, python.view.top_total[:3]
            if os.geteuid() != 0:
                return  # the native profile and py-spy --native need root: their own tests say so
            # n: py-spy's native frames too, in one stack with the Python caller
            await pilot.press("n")
            await wait_for(pilot, lambda: python.view is not None and python.view.native and python.view.samples > 50)
            both = [s for s in python.view.stacks
                    if any(f.startswith("compress_forever (") for f in s.frames) and "libz.so" in s.frames[-1]]
            assert sum(s.percent for s in both) > 50, python.view.stacks[:3]
            assert "native frames too" in str(python.border_title)
            await pilot.press("n")
            await pilot.press("1")
            profile = app.screen.query_one(ProfilePane)
            await wait_for(pilot, lambda: profile.view is not None and profile.view.samples > 50)
            # and the native profile sees where that time goes: zlib's own code, most of it without
            # symbols in Debian's libz, counted under the library's name
            in_libz = sum(f.self_percent for f in profile.view.top_self if f.name.startswith("libz.so") or "adler32" in f.name)
            assert in_libz > 50, profile.view.top_self[:5]
    finally:
        target.kill()
        target.wait()


async def test_the_native_profile_points_to_the_python_tab_and_the_perf_map() -> None:
    from probes.contract import Views
    from probes.sources.profile import ProfileSample, derive_profile
    from tui.profile_pane import ProfilePane

    class ProfileApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ProfilePane(7)

    profile = ProfileSample((), {}, 10, {}, 99, 7, False)
    app = ProfileApp()
    async with app.run_test(size=(120, 20)) as pilot:
        pane = app.query_one(ProfilePane)
        pane.joined = Views({"python": view(note="start it with PYTHONPERFSUPPORT=1 or -X perf")})
        pane.show_view(derive_profile(profile, profile, 1.0))
        await pilot.pause()
        assert "Python functions: tab 6; start it with PYTHONPERFSUPPORT=1" in str(pane.border_subtitle)


async def test_the_native_profile_says_how_often_its_stacks_were_cut_short() -> None:
    from probes.sources.profile import ProfileSample, ProfileStack, derive_profile
    from tui.profile_pane import ProfilePane

    class ProfileApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ProfilePane(7)

    stacks = (ProfileStack(7, 3, ("[unknown]", "_PyEval_EvalFrameDefault"), ()), ProfileStack(7, 1, ("start_thread", "run"), ()))
    profile = ProfileSample(stacks, {}, 4, {}, 99, 7, False)
    app = ProfileApp()
    async with app.run_test(size=(160, 20)) as pilot:
        pane = app.query_one(ProfilePane)
        pane.show_view(derive_profile(profile, profile, 1.0))
        await pilot.pause()
        assert "75% of stacks cut short: callers unknown" in str(pane.border_title)
        whole = ProfileSample(stacks[1:], {}, 1, {}, 99, 7, False)
        pane.show_view(derive_profile(whole, whole, 1.0))
        await pilot.pause()
        assert "cut short" not in str(pane.border_title)


async def test_the_threads_tab_gives_threading_names_beside_the_kernels() -> None:
    from support.synthetic_threads import PID, drill_frames

    from probes.contract import Views
    from probes.model.views import derive_frame
    from tui.threads_pane import ThreadsPane

    class ThreadsApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ThreadsPane(PID)

    views = derive_frame(*drill_frames())
    python = view(raw="thread (2010): trainer;main (t.py:1) 5\nthread (2002): MainThread;main (t.py:1) 1\n", pid=PID)
    app = ThreadsApp()
    async with app.run_test(size=(160, 20)) as pilot:
        pane = app.query_one(ThreadsPane)
        pane.joined = Views({"offcpu": views["offcpu"], "syscalls": views["syscalls"], "python": python})
        pane.show_view(views["threads"])
        await pilot.pause()
        names = {row.tid: row.name for row, _ in pane.query_one("#threads", LineTable).rows}
        assert names[2010] == "pt_main_thread (trainer)" and names[2002] == "python3 (MainThread)", names
        assert names[2011] == "pt_data_0", names
