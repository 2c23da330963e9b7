"""The verdict on real trouble made on this machine: the probes read the real /proc, one second apart.

The machine may be shared (other tests, other users): each scenario makes
trouble big enough to stand out of it, and the quiet one says when the box
is too busy to be called quiet rather than fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from support.loop_device import direct_io, loop_filesystem

from probes.contract import Views
from probes.model.sampling import Sampler
from probes.model.verdict import THRESHOLDS, Cell, State, verdict
from probes.model.views import derive_frame
from probes.sources.disks import DISKS, DisksProbe
from probes.sources.process_io import PROCESS_IO, ProcessIoProbe
from probes.sources.processes import PROCESSES, ProcessProbe
from probes.sources.system import SYSTEM, SystemProbe

# One process of CPUs + 2 threads, each hashing a buffer (hashlib lets go of
# the GIL), named by prctl(PR_SET_NAME) so the verdict can be checked by name.
SPINNER = """
import ctypes, hashlib, sys, threading
ctypes.CDLL(None).prctl(15, b"orac-spinner", 0, 0, 0)
data = b"x" * (1 << 20)
def spin():
    while True:
        hashlib.sha256(data).digest()
for _ in range(int(sys.argv[1])):
    threading.Thread(target=spin, daemon=True).start()
print("spinning", flush=True)
threading.Event().wait()
"""


def views_over(seconds: float = 1.0) -> Views:
    with Sampler([SystemProbe(), ProcessProbe(), DisksProbe(), ProcessIoProbe()]) as sampler:
        first = sampler.sample()
        time.sleep(seconds)
        second = sampler.sample()
    return derive_frame(first, second)


def cells_over(seconds: float = 1.0) -> tuple[Cell, ...]:
    return verdict(views_over(seconds))


def cell(cells: tuple[Cell, ...], resource: str) -> Cell:
    return next(c for c in cells if c.resource == resource)


@contextmanager
def spinner(threads: int) -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", SPINNER, str(threads)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "spinning\n"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_spinners_on_every_cpu_and_more_saturate_the_cpu_and_are_named() -> None:
    with spinner((os.cpu_count() or 1) + 2) as pid:
        time.sleep(0.3)  # its threads are all running
        views = views_over()
    cpu = cell(verdict(views), "cpu")
    assert cpu.state is State.SATURATED, cpu
    assert cpu.contributor is not None, cpu
    processes = views.get(PROCESSES)
    assert processes is not None
    mine = next(p for p in processes.processes if p.pid == pid)
    if cpu.contributor.pid != pid and (mine.cpu_percent or 0) < float(cpu.contributor.figure.split()[0]):
        pytest.skip(f"the box is busier than the spinner ({mine.cpu_percent:.0f} %): {cpu.contributor}")
    assert (cpu.contributor.pid, cpu.contributor.name) == (pid, "orac-spinner"), cpu


def test_a_quiet_box_is_all_ok_orac_included() -> None:
    with Sampler([SystemProbe()]) as sampler:
        first = sampler.sample()
        time.sleep(1.0)
        view = derive_frame(first, sampler.sample()).get(SYSTEM)
    assert view is not None
    share = view.pressure_share.get("cpu")
    if share is not None and THRESHOLDS["cpu.psi_some_percent"].state(share.some_percent) is not State.OK:
        pytest.skip(f"the box is busy, not quiet: tasks waited for a CPU {share.some_percent:.0f} % of a second")
    cells = cells_over()
    assert [(c.resource, c.state) for c in cells if c.state is not State.OK] == [], cells


def test_direct_io_writers_on_a_loop_device_saturate_it_and_are_named(tmp_path: Path) -> None:
    with ExitStack() as stack:
        fs = stack.enter_context(loop_filesystem(tmp_path))
        # Four writers at once: one synchronous writer keeps one request in
        # flight (aqu-sz 1, busy but not queueing); four queue behind each other.
        helpers = [stack.enter_context(direct_io()) for _ in range(4)]
        for i, helper in enumerate(helpers):
            assert helper.call(f"write {fs.mount / f'data{i}'} 8 1024") == [str(8 << 20)]
        for i, helper in enumerate(helpers):
            helper.send(f"mixed {fs.mount / f'data{i}'} 8 1024 3")
            assert helper.line() == "started"
        time.sleep(0.3)
        views = views_over()
        for helper in helpers:
            helper.line()
    loop = cell(verdict(views), f"disk {fs.name}")
    disks = views.get(DISKS)
    assert disks is not None
    rates = next(d.rates for d in disks.disks if d.name == fs.name)
    assert rates is not None and rates.queue_size > 1, loop
    # Their queue is there whatever the load; the device is busy all the
    # second only if the writers get a CPU often enough to keep it so.
    assert loop.state is (State.SATURATED if rates.util_percent >= 90 else State.WARNING), loop
    assert loop.contributor is not None, loop
    io = views.get(PROCESS_IO)
    assert io is not None
    ours = max(io.rates[h.pid].write_bytes_per_s for h in helpers if h.pid in io.rates)
    if loop.contributor.pid not in {h.pid for h in helpers} and io.rates[loop.contributor.pid].write_bytes_per_s > ours:
        pytest.skip(f"another process writes more than the test's writers (/proc/PID/io has no device): {loop.contributor}")
    assert loop.contributor.pid in {h.pid for h in helpers}, loop
