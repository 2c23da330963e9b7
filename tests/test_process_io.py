"""Per-process I/O: /proc/PID/io and stat field 42 parsing, rates, and a real direct-I/O helper."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.loop_device import MIB, direct_io, loop_filesystem, require_root

from probes.host.process_io import (
    IoUnreadable,
    ProcessIo,
    ProcessIoRates,
    delay_accounting,
    derive_process_io,
    parse_blkio_delay_ns,
    parse_io,
    pread_process_io,
    process_io,
    read_process_io,
)
from probes.host.procfs import NS_PER_TICK

REPO = Path(__file__).resolve().parent.parent
IO_TEXT = b"""\
rchar: 323934931
wchar: 323929600
syscr: 632687
syscw: 632675
read_bytes: 4096
write_bytes: 323932160
cancelled_write_bytes: 8192
"""


def stat_text(name: str = "a) (b", blkio_ticks: int = 250, fields: int = 52) -> bytes:
    """A /proc/PID/stat line with `fields` fields and field 42 set to `blkio_ticks`."""
    after = ["S"] + [str(n) for n in range(4, fields + 1)]
    if fields >= 42:
        after[42 - 3] = str(blkio_ticks)
    return f"4321 ({name}) {' '.join(after)}\n".encode()


# --- parsing -----------------------------------------------------------------


def test_parse_io() -> None:
    assert parse_io(IO_TEXT) == (4096, 323_932_160, 8192)
    assert parse_io(Path("/proc/self/io").read_bytes())[0] >= 0


def test_parse_io_reads_another_layout_by_name() -> None:
    # what a kernel that reorders or adds lines would give: found by name, not position
    lines = IO_TEXT.splitlines()
    assert parse_io(b"\n".join([b"extra: 7", *reversed(lines)])) == (4096, 323_932_160, 8192)


@pytest.mark.parametrize("data", [b"", b"rchar: 1\nwchar: 2\n", b"read_bytes: 1\nwrite_bytes: 2\n", b"read_bytes: x\n"])
def test_parse_io_garbage_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_io(data)


def test_parse_blkio_delay_is_field_42_counted_after_the_name() -> None:
    assert parse_blkio_delay_ns(stat_text()) == 250 * NS_PER_TICK


def test_a_stat_without_field_42_gives_no_delay() -> None:
    old = stat_text(fields=41)
    with pytest.raises(IndexError):
        parse_blkio_delay_ns(old)
    assert process_io(IO_TEXT, old, True) == ProcessIo(4096, 323_932_160, 8192, None)


def test_delay_is_left_out_without_delay_accounting() -> None:
    assert process_io(IO_TEXT, stat_text(), False).blkio_delay_ns is None
    assert process_io(IO_TEXT, stat_text(), True).blkio_delay_ns == 250 * NS_PER_TICK
    assert process_io(IO_TEXT, None, True).blkio_delay_ns is None


@pytest.mark.parametrize(
    ("switch", "cmdline", "on"),
    [("1\n", "", True), ("0\n", "", False), (None, "root=/dev/vda quiet\n", True),
     (None, "root=/dev/vda nodelayacct\n", False)],
)
def test_delay_accounting(tmp_path: Path, switch: str | None, cmdline: str, on: bool) -> None:
    (tmp_path / "sys" / "kernel").mkdir(parents=True)
    if switch is not None:
        (tmp_path / "sys" / "kernel" / "task_delayacct").write_text(switch)
    (tmp_path / "cmdline").write_text(cmdline)
    assert delay_accounting(str(tmp_path)) is on


# --- reading -----------------------------------------------------------------


def test_reading_a_gone_process_says_gone(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert read_process_io(f"/proc/{child.pid}") is IoUnreadable.GONE
    (tmp_path / "io").write_bytes(b"not an io file\n")
    assert read_process_io(str(tmp_path)) is IoUnreadable.GONE


def test_a_kept_descriptor_reads_fresh_figures_then_gone_when_the_process_exits() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        fd = os.open(f"/proc/{child.pid}/io", os.O_RDONLY | os.O_CLOEXEC)
        try:
            assert isinstance(pread_process_io(fd), ProcessIo)
            child.kill()
            child.wait()
            assert pread_process_io(fd) is IoUnreadable.GONE
        finally:
            os.close(fd)
    finally:
        child.kill()
        child.wait()


def test_another_users_process_says_denied() -> None:
    if os.geteuid() == 0:
        # As nobody, this test process is another user's.
        probe = (
            "from probes.host.process_io import read_process_io;"
            f"print(read_process_io('/proc/{os.getpid()}').name)"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe], user=65534, group=65534, cwd=REPO, env={"PYTHONPATH": str(REPO)},
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        assert out == "DENIED"
    else:
        assert read_process_io("/proc/1") is IoUnreadable.DENIED


# --- rates -------------------------------------------------------------------


def test_rates_by_hand() -> None:
    prev = ProcessIo(1000, 2000, 0, 100 * NS_PER_TICK)
    curr = ProcessIo(1000 + 4 * MIB, 2000 + 2 * MIB, 4096, 150 * NS_PER_TICK)
    # 50 ticks of 2 s waiting, whatever USER_HZ is: 50 / (2 * USER_HZ)
    share = 50 * NS_PER_TICK / 2e9 * 100
    rates = derive_process_io(prev, curr, 2.0)
    assert (rates.read_bytes_per_s, rates.write_bytes_per_s, rates.cancelled_write_bytes_per_s) == (2 * MIB, MIB, 2048)
    assert rates.blkio_delay_percent == pytest.approx(share)


def test_rates_without_delay_accounting_and_counters_that_went_back() -> None:
    rates = derive_process_io(ProcessIo(10, 10, 10), ProcessIo(5, 20, 10), 1.0)
    assert rates == ProcessIoRates(0.0, 10.0, 0.0, None)



def test_a_delay_longer_than_the_interval_is_capped_at_it() -> None:
    # 57 ticks over 0.5 s: what the kernel once counted for one thread.
    rates = derive_process_io(ProcessIo(0, 0, 0, 0), ProcessIo(0, 0, 0, 57 * NS_PER_TICK), 57 * NS_PER_TICK / 1.14e9)
    assert rates.blkio_delay_percent == 100.0

# --- a real direct-I/O helper on a loop device (root) ------------------------


def test_a_helpers_io_shows_exactly_what_it_wrote_and_read(tmp_path: Path) -> None:
    n_mib = 8
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        proc_dir = f"/proc/{helper.pid}"
        data = fs.mount / "data"
        start = read_process_io(proc_dir)
        helper.call(f"write {data} {n_mib} 256")
        allocated = read_process_io(proc_dir)
        helper.call(f"write {data} {n_mib} 256")
        overwritten = read_process_io(proc_dir)
        helper.call(f"read {data} {n_mib} 256")
        stat = Path(f"{proc_dir}/stat").read_bytes()
        done = read_process_io(proc_dir, stat, True)
    assert isinstance(start, ProcessIo) and isinstance(allocated, ProcessIo)
    assert isinstance(overwritten, ProcessIo) and isinstance(done, ProcessIo)
    # The first pass allocates the file's blocks: the bitmap and inode pages
    # it dirties count as its writes too (a page each, the first time).
    assert n_mib * MIB <= allocated.write_bytes - start.write_bytes <= n_mib * MIB + 64 * 1024
    # Overwriting, with those pages still dirty, is exactly the data.
    assert overwritten.write_bytes - allocated.write_bytes == n_mib * MIB
    assert done.read_bytes - overwritten.read_bytes == n_mib * MIB
    assert done.write_bytes == overwritten.write_bytes
    # field 42 of the stat it was given, counted after the command's ')'
    assert done.blkio_delay_ns == int(stat.rsplit(b")", 1)[1].split()[39]) * NS_PER_TICK


@pytest.fixture
def delay_accounting_on() -> Iterator[None]:
    """Delay accounting turned on (kernel.task_delayacct, 5.14+) for the test, and back as it was."""
    switch = Path("/proc/sys/kernel/task_delayacct")
    require_root()
    if not switch.exists():
        pytest.skip("no kernel.task_delayacct switch (a kernel before 5.14): delay accounting is what the boot made it")
    was = switch.read_text()
    try:
        switch.write_text("1\n")
        yield
    finally:
        switch.write_text(was)


@pytest.mark.usefixtures("delay_accounting_on")
def test_blkio_delay_is_the_time_the_helper_waited_for_its_io(tmp_path: Path) -> None:
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        proc_dir = f"/proc/{helper.pid}"
        data = fs.mount / "data"
        helper.call(f"write {data} 16 1024")
        assert delay_accounting()

        def now() -> ProcessIo:
            io = read_process_io(proc_dir, Path(f"{proc_dir}/stat").read_bytes(), True)
            assert isinstance(io, ProcessIo)
            return io

        before = now()
        started = time.monotonic()
        # Small synchronous direct reads and writes: the helper spends much
        # of the time waiting for each to complete, in D state.
        helper.send(f"mixed {data} 16 4 0.5")
        assert helper.line() == "started"
        helper.line()
        elapsed_s = time.monotonic() - started
        after = now()
    rates = derive_process_io(before, after, elapsed_s)
    assert rates.blkio_delay_percent is not None
    # Fields 41 and 43 beside it are 0 for this helper: a share above 0 is
    # field 42's, and at most the whole interval.
    assert after.blkio_delay_ns is not None and before.blkio_delay_ns is not None
    assert after.blkio_delay_ns > before.blkio_delay_ns
    assert 0 < rates.blkio_delay_percent <= 100
