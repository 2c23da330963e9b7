"""H: each process's threads among the processes, read from /proc only while shown."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest
from support import synthetic
from support.harness import until_drawn

from probes.model.collector import FrameSequence
from probes.sources.processes import ProcessProbe, derive_processes
from tui.app import OracApp
from tui.process_screen import ProcessScreen
from tui.process_table import ProcessTable

SIZE = (160, 48)

# Three named threads: one spins, two sleep; the main thread waits.
WORKLOAD = """
import ctypes, threading, time
libc = ctypes.CDLL(None)
def named(name, spin):
    libc.prctl(15, name.encode())  # PR_SET_NAME
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if not spin:
            time.sleep(1)
for name, spin in (("spinner", True), ("sleeper-a", False), ("sleeper-b", False)):
    threading.Thread(target=named, args=(name, spin), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def workload():
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait()


def test_threads_are_read_only_while_asked_for(workload) -> None:
    probe = ProcessProbe()
    probe.start()
    try:
        first = probe.sample()
        assert first.threads == () and not probe._task_fds
        probe.threads = True
        prev = probe.sample()
        time.sleep(0.5)
        curr = probe.sample()
        mine = {t.name: t for t in curr.threads if t.thread_of == workload.pid}
        assert set(mine) == {"spinner", "sleeper-a", "sleeper-b"}
        process = next(p for p in curr.processes if p.pid == workload.pid)
        for thread in mine.values():
            assert thread.pid != workload.pid and thread.ppid == workload.pid
            assert thread.cmdline == process.cmdline and thread.user == process.user
        view = derive_processes(prev, curr, 0.5)
        rates = {v.name: v.cpu_percent for v in view.threads if v.thread_of == workload.pid}
        assert rates["spinner"] > rates["sleeper-a"] and rates["sleeper-a"] < 5
        probe.threads = False
        assert probe.sample().threads == () and not probe._task_fds
    finally:
        probe.stop()


def test_the_first_sample_with_threads_claims_no_rate_for_them(workload) -> None:
    # Start times and /proc/uptime count in clock ticks: threads born in the
    # tick of the first sample would pass for born after it.
    time.sleep(0.05)
    probe = ProcessProbe()
    probe.start()
    try:
        prev = probe.sample()
        probe.threads = True
        curr = probe.sample()
        view = derive_processes(prev, curr, 0.1)
        mine = [v for v in view.threads if v.thread_of == workload.pid]
        # threads running before, unread then: their CPU time is not all from this interval
        assert mine and all(v.cpu_percent is None for v in mine)
    finally:
        probe.stop()


def frames_with_threads() -> list:
    """The synthetic box; python3 (2002) has two more threads, one of them busy."""
    out = []
    for t, f in enumerate(synthetic.frames()):
        procs = f.samples["procs"]
        python = next(p for p in procs.processes if p.pid == 2002)
        threads = tuple(
            dataclasses.replace(python, pid=tid, ppid=2002, name=name, thread_of=2002, start_time_ns=python.start_time_ns + 1,
                                cpu_user_ns=10**10 + used * t, cpu_system_ns=0)
            for tid, name, used in ((2010, "pt_worker", 600_000_000), (2011, "pt_idle", 0))
        )
        out.append(dataclasses.replace(f, samples={**f.samples, "procs": dataclasses.replace(procs, threads=threads)}))
    return out


async def test_h_shows_threads_among_the_processes_and_under_theirs_in_the_tree() -> None:
    frame_list = frames_with_threads()
    app = OracApp(FrameSequence(frame_list))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app, frame_list)
        table = app.query_one(ProcessTable)
        assert 2010 not in [p.pid for p, _ in table.rows]
        await pilot.press("H")
        order = [p.pid for p, _ in table.rows]
        assert order[:4] == [2002, 978, 2010, 1200]  # the busy thread ranks by its own CPU %: 60
        assert "threads 2" in str(app.query_one("ProcessPane").border_title)
        await pilot.press("slash", "t", "r", "a", "i", "n", "enter")  # python3 train.py and its two threads
        assert "Processes 1 of 8 matching 'train'" in str(app.query_one("ProcessPane").border_title)
        await pilot.press("escape")
        await pilot.press("t")
        order = [p.pid for p, _ in table.rows]
        assert order.index(2002) < order.index(2010) and order.index(2002) < order.index(2011)
        # Enter on a thread opens its process
        while table.selected.pid != 2010:
            await pilot.press("down")
        await pilot.press("enter")
        assert isinstance(app.screen, ProcessScreen) and app.screen.pid == 2002
        await pilot.press("escape")
        await pilot.press("H")
        assert 2010 not in [p.pid for p, _ in table.rows]


async def test_h_where_nothing_was_read_says_so() -> None:
    app = OracApp(FrameSequence(synthetic.frames()))
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        await pilot.press("H")
        await pilot.pause()
        assert any("no threads" in n.message for n in app._notifications)


async def test_h_live_asks_the_probe_for_threads(workload) -> None:
    from support.harness import wait_for

    from probes.model.collector import Collector
    from probes.sources.system import SystemProbe

    probe = ProcessProbe()
    app = OracApp(Collector([SystemProbe(), probe], interval_s=0.3))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "procs" in app.views)
        await pilot.press("H")
        assert probe.threads
        table = app.query_one(ProcessTable)
        await wait_for(pilot, lambda: any(t.thread_of == workload.pid for t in table.threads))
        await pilot.press("H")
        assert not probe.threads
    assert os.getpid()  # the app is gone; the probe stopped with it


def test_thread_rows_are_recorded_and_replayed(tmp_path) -> None:
    from probes.store.reader import Recording
    from probes.store.writer import Recorder

    frame_list = frames_with_threads()
    path = tmp_path / "t.orac"
    with Recorder(path, interval_s=1.0, probes=["cpu", "procs"], redact=False) as recorder:
        for frame in frame_list:
            recorder.append(frame)
    with Recording(path) as recording:
        threads = recording.frame(1).samples["procs"].threads
    assert threads == frame_list[1].samples["procs"].threads and threads[0].thread_of == 2002
