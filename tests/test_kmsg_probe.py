"""The "kmsg" probe: classifying records from a fixture (malformed ones included), and a real OOM kill in a v1 memory cgroup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cgroups import memory_cgroup

from probes.contract import ProbeUnavailable
from probes.sources.kmsg import KmsgProbe, classify, derive_kmsg, parse_record

FIXTURE = Path(__file__).parent / "fixtures" / "kmsg" / "records.txt"


def fixture_probe(tmp_path: Path, lines: int | None = None) -> tuple[KmsgProbe, Path]:
    """A probe on a copy of the fixture (its first `lines` lines), keeping every record as recent."""
    path = tmp_path / "kmsg"
    text = FIXTURE.read_text().splitlines(keepends=True)
    path.write_text("".join(text[:lines]))
    probe = KmsgProbe(str(path), earlier_s=10**9)
    return probe, path


def test_fixture_records_are_classified(tmp_path: Path) -> None:
    probe, _ = fixture_probe(tmp_path)
    probe.start()
    sample = probe.sample()
    probe.stop()
    by_seq = {e.seq: e for e in sample.events}
    assert [by_seq[s].kind for s in range(102, 110)] == [
        "hung-task", "segfault", "trap", "io-error", "fs-error", "xid", "soft-lockup", "thermal",
    ]
    oom = by_seq[101]
    assert (oom.kind, oom.pid, oom.comm, oom.level) == ("oom-kill", 4242, "python3", 3)
    assert (by_seq[102].comm, by_seq[102].pid) == ("kworker/0:1", 77)
    assert (by_seq[103].comm, by_seq[103].pid) == ("python3", 5151)
    assert (by_seq[104].comm, by_seq[104].pid) == ("bad", 6161)
    assert by_seq[107].xid == 79
    assert (by_seq[108].comm, by_seq[108].pid) == ("spin", 999)
    assert by_seq[100].kind == "" and by_seq[113].kind == ""
    assert by_seq[114].message == "a message with a \x1b escape and text after it"
    # three lines of the fixture are not records; 110-112 never arrived
    assert sample.malformed_lines == 3
    assert sample.lost_lines == 3
    # read at start: all of it is from before orac
    assert all(e.earlier for e in sample.events)


def test_records_appended_later_are_new_in_the_view(tmp_path: Path) -> None:
    probe, path = fixture_probe(tmp_path, lines=2)
    probe.start()
    before = probe.sample()
    with path.open("a") as f:
        f.write("".join(FIXTURE.read_text().splitlines(keepends=True)[2:]))
    after = probe.sample()
    probe.stop()
    view = derive_kmsg(before, after, 1.0)
    assert [e.seq for e in view.new_events] == [*list(range(102, 110)), 113, 114]
    assert not any(e.earlier for e in view.new_events)
    assert (view.lost_lines, view.malformed_lines) == (3, 3)
    assert view.oom_kills == ()  # the OOM kill was logged before the probe started


@pytest.mark.parametrize(
    "record",
    ["", ";", "x,y,z;text", "6,1;two fields", "-1,1,1,-;negative", "6,1,1,-", "6,1,-5,-;negative time"],
)
def test_malformed_records_are_none(record: str) -> None:
    assert parse_record(record) is None


def test_continuation_lines_are_not_the_message() -> None:
    event = parse_record("3,7,100,-;sd 0:0:0:0: [sda] I/O error\n SUBSYSTEM=scsi\n DEVICE=+scsi:0:0:0:0\n")
    assert event is not None and event.message == "sd 0:0:0:0: [sda] I/O error" and event.kind == "io-error"


def test_plain_lines_have_no_kind() -> None:
    assert classify("e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex") == ("", None, None, None)


def test_unreadable_kmsg_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable) as missing:
        KmsgProbe(str(tmp_path / "none")).start()
    assert "does not exist" in missing.value.reason
    if os.geteuid() == 0:
        pytest.skip("root reads /dev/kmsg whatever its mode")
    with pytest.raises(ProbeUnavailable) as denied:
        KmsgProbe().start()
    assert "root or CAP_SYSLOG" in denied.value.reason and "sudo" in denied.value.remedy


def test_unprivileged_user_is_told_what_is_needed() -> None:
    if os.geteuid() != 0 or Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() != "1":
        pytest.skip("needs root to drop to nobody, and kernel.dmesg_restrict=1")
    code = (
        "from probes.sources.kmsg import KmsgProbe\n"
        "from probes.contract import ProbeUnavailable\n"
        "try:\n    KmsgProbe().start()\nexcept ProbeUnavailable as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, user="nobody",
        cwd=Path(__file__).parent.parent, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert "needs root or CAP_SYSLOG" in done.stdout, done.stdout + done.stderr


# --- real: an OOM kill in a small v1 memory cgroup -----------------------------

LIMIT_BYTES = 32 * 1024 * 1024


@pytest.fixture
def small_memory_cgroup() -> Iterator[Path]:
    """A v1 memory cgroup limited to 32 MiB, removed afterwards (its processes killed first)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: makes a memory cgroup and reads /dev/kmsg")
    with memory_cgroup("orac-oom", LIMIT_BYTES) as path:
        yield path


def start_oom_hog(cgroup: Path, after_s: float = 0.0) -> subprocess.Popen[bytes]:
    """A process that joins `cgroup` itself, waits `after_s`, then allocates until the kernel kills it."""
    return subprocess.Popen([
        sys.executable, "-c",
        f"import os, time; open({str(cgroup / 'cgroup.procs')!r}, 'w').write(str(os.getpid()));"
        f"time.sleep({after_s}); b = [bytearray(1 << 20) for _ in range(1024)]",
    ])


def oom_hog(cgroup: Path) -> subprocess.Popen[bytes]:
    """start_oom_hog's process, waited for."""
    hog = start_oom_hog(cgroup)
    hog.wait(timeout=30)
    return hog


def test_oom_kill_in_a_memory_cgroup_names_the_victim(small_memory_cgroup: Path) -> None:
    probe = KmsgProbe()
    probe.start()
    try:
        before = probe.sample()
        # the child joins the cgroup itself, then allocates until the kernel kills it
        hog = oom_hog(small_memory_cgroup)
        assert hog.returncode == -9
        deadline = time.monotonic() + 5
        while True:
            after = probe.sample()
            view = derive_kmsg(before, after, 1.0)
            kills = [e for e in view.oom_kills if e.pid == hog.pid]
            if kills or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        probe.stop()
    assert len(kills) == 1, view.new_events
    kill = kills[0]
    assert kill.comm == "python3" or (kill.comm and kill.comm.startswith("python"))
    assert kill.cgroup == f"/{small_memory_cgroup.name}"
    # dmesg shows the same record
    dmesg = shutil.which("dmesg")
    if dmesg is not None:
        lines = subprocess.run([dmesg], capture_output=True, text=True, check=True).stdout
        assert re.search(rf"Killed process {hog.pid} \({re.escape(kill.comm)}\)", lines)
        assert kill.message in lines


def test_recorded_and_dumped_as_events(tmp_path: Path) -> None:
    from support.cli import orac

    if os.geteuid() != 0:
        pytest.skip("needs root: reads and writes /dev/kmsg")
    path = tmp_path / "k.orac"
    marker = f"orac-test-{os.getpid()}: I/O error, dev orac{os.getpid()}, sector 8"
    recorder = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "record", "-o", str(path), "--duration", "2", "--interval", "0.5",
         "--probes", "kmsg", "--quiet"],
        cwd=Path(__file__).parent.parent, stderr=subprocess.PIPE, text=True,
    )
    try:
        while not path.exists() and recorder.poll() is None:
            time.sleep(0.1)
        time.sleep(0.6)
        # root may log a record of its own: facility user (1), level err (3)
        Path("/dev/kmsg").write_text(f"<11>{marker}\n")
        _, err = recorder.communicate(timeout=20)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    assert recorder.returncode == 0, err
    rows = [r for r in orac("dump", str(path), "--format", "csv", "--table", "events").stdout.splitlines()[1:]
            if marker in r]
    assert len(rows) == 1, rows
    assert ",io-error," in rows[0] and ",3,1," in rows[0]  # level, facility


async def test_an_oom_killed_process_stays_in_the_process_table_marked(small_memory_cgroup: Path) -> None:
    from support.harness import wait_for

    from probes.model.collector import Collector
    from probes.sources.processes import ProcessProbe, short_cgroup
    from tui.app import OracApp
    from tui.process_table import ProcessTable

    collector = Collector([ProcessProbe(), KmsgProbe()], 0.25)
    app = OracApp(collector)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.frame is not None and "kmsg" in app.views, timeout_s=20)
        # It waits first, and is waited for without blocking the app, so the
        # table sees it alive: a blocked app draws only the newest frame after.
        hog = start_oom_hog(small_memory_cgroup, after_s=2.0)
        try:
            table = app.query_one(ProcessTable)
            await wait_for(pilot, lambda: any(p.pid == hog.pid and p.state != "X" for p, _ in table.rows))
            await wait_for(pilot, lambda: hog.poll() is not None, timeout_s=30)
        finally:
            if hog.poll() is None:
                hog.kill()
                hog.wait()
        assert hog.returncode == -9
        await wait_for(pilot, lambda: any(p.pid == hog.pid and p.state == "X" for p, _ in table.rows), timeout_s=10)
        row = next(p for p, _ in table.rows if p.pid == hog.pid)
        assert row.command.startswith("OOM-killed ") and "bytearray" in row.command, row
        assert row.cgroup == short_cgroup(f"/{small_memory_cgroup.name}") and row.rss_bytes > 0
        assert table.row_component(row) == "process-table--killed"
        assert table.rows[0][0] is row  # first, whatever the sort
    collector.stop()
