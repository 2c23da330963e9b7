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
from support.cgroups import memory_cgroup
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


# Touches MiB of anonymous memory, then reads a file through a mapping and
# touches its own memory again, over and over: in a cgroup whose limit is
# below the two together, the file's pages are evicted and read back each
# pass (refaults, which PSI counts as memory stall).
MEMORY_HOG = """
import ctypes, mmap, os, sys
ctypes.CDLL(None).prctl(15, b"orac-mem-hog", 0, 0, 0)
anon_bytes, path = int(sys.argv[1]) << 20, sys.argv[2]
anon = mmap.mmap(-1, anon_bytes)
for i in range(0, anon_bytes, 4096):
    anon[i] = 1
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
print("hogging", flush=True)
total = 0
while True:
    for i in range(0, size, 4096):
        total += mapped[i]
    for i in range(0, anon_bytes, 1 << 16):
        anon[i] = 2
"""
LIMIT_MIB, ANON_MIB, FILE_MIB = 400, 250, 300


def test_a_memory_hog_in_a_limited_cgroup_is_memory_pressure_and_is_named(tmp_path: Path) -> None:
    data = tmp_path / "pages"
    with data.open("wb") as f:
        for _ in range(FILE_MIB):
            f.write(b"\1" * (1 << 20))
        f.flush()
        os.fsync(f.fileno())
        # out of the page cache, which charged them to this test's cgroup: the hog reads them itself
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    with memory_cgroup("orac-test-hog", LIMIT_MIB << 20) as group:
        hog = subprocess.Popen(
            [sys.executable, "-c", MEMORY_HOG, str(ANON_MIB), str(data)], stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(f"{os.getpid()}\n"),
        )
        try:
            assert hog.stdout is not None and hog.stdout.readline() == "hogging\n"
            time.sleep(1.0)  # a pass or two: the evictions have begun
            views = views_over()
        finally:
            hog.kill()
            hog.wait()
    memory = cell(verdict(views), "memory")
    assert memory.state >= State.WARNING, memory
    assert "stalled" in memory.summary, memory
    assert memory.contributor is not None and (memory.contributor.pid, memory.contributor.name) == (
        hog.pid, "orac-mem-hog"), memory


def test_packet_loss_on_a_test_port_is_tcp_trouble_and_names_the_connection() -> None:
    from support.ebpf import start
    from support.netns import kill_all, namespace_pair, require_root_and, wait_ready

    from probes.sources.tcp import TCP, TcpProbe
    from probes.sources.tcp_events import TCP_EVENTS, TcpEventsProbe

    require_root_and("ip", "nft")
    events = start(TcpEventsProbe())
    try:
        with namespace_pair("vrd") as pair:
            tcp = TcpProbe(proc=pair.a.proc)
            tcp.start()
            table = f"orac_test_verdict_{os.getpid()}"
            listener = pair.b.peer("listen", pair.b_addr)
            sender = None
            try:
                port = wait_ready(listener)
                # 5 % of what reaches the listener's port is dropped, in its namespace only
                pair.b.drop_share(table, port, 5)
                before = (tcp.sample(), events.sample(), time.monotonic_ns())
                sender = pair.a.peer("send", pair.b_addr, str(port), str(16 << 20))
                _, err = sender.communicate(timeout=60)
                listener.communicate(timeout=5)
                after = (tcp.sample(), events.sample(), time.monotonic_ns())
            finally:
                kill_all(listener, sender)
                pair.b.remove_table(table)
            assert sender is not None and sender.returncode == 0, err
    finally:
        events.stop()
    dt_s = (after[2] - before[2]) / 1e9
    views = Views({
        TCP.name: TCP.derive(before[0], after[0], dt_s),
        TCP_EVENTS.name: TCP_EVENTS.derive(before[1], after[1], dt_s),
    })
    tcp_cell = cell(verdict(views), "tcp")
    assert tcp_cell.state >= State.WARNING and "retrans" in tcp_cell.summary, tcp_cell
    # the sender connected while the probe ran: its process is named, with the connection
    assert tcp_cell.contributor is not None and tcp_cell.contributor.pid == sender.pid, tcp_cell
    assert f"{pair.a_addr}:" in tcp_cell.contributor.figure and f"> {pair.b_addr}:{port}" in tcp_cell.contributor.figure
