"""The "procs" probe: /proc/PID parsers, ProcessProbe on fixtures and on the real /proc."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probes.contract import ProbeUnavailable
from probes.host.procfs import NS_PER_TICK, PAGE_SIZE_BYTES
from probes.sources.processes import (
    ProcessProbe,
    ProcSample,
    parse_cgroup,
    parse_cmdline,
    parse_stat,
    parse_statm_rss,
    short_cgroup,
)

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
T0 = FIXTURES / "t0"
T1 = FIXTURES / "t1"
DOCKER_ID = "3f2a9c1b8e7d4a6f0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a"


def stat_bytes(pid: int, comm: str, state: str = "S", ppid: int = 1, utime: int = 0, stime: int = 0,
               threads: int = 1, start: int = 0, rss_pages: int = 0) -> bytes:
    """A /proc/PID/stat line with the 52 fields of Linux 3.5 and later."""
    fields = [str(pid), f"({comm})", state, str(ppid), "1", "1", "0", "-1", "0", "0", "0", "0", "0",
              str(utime), str(stime), "0", "0", "20", "0", str(threads), "0", str(start), "0",
              str(rss_pages)] + ["0"] * 28
    assert len(fields) == 52
    return (" ".join(fields) + "\n").encode()


def owner(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# --- parse_stat ------------------------------------------------------------


@pytest.mark.parametrize(
    "comm",
    [
        "bash",
        "my (weird) name",
        "(my (weird) name)",
        # a comm that looks like the end of the name followed by fields
        "x) R 99 (y",
        ")",
        "kworker/0:1H-kblockd",
        "with  two  spaces",
        "",
    ],
)
def test_parse_stat_names(comm: str) -> None:
    data = stat_bytes(42, comm, state="R", ppid=7, utime=12, stime=3, threads=5, start=900, rss_pages=10)
    assert parse_stat(data) == (
        comm, "R", 7, 12 * NS_PER_TICK, 3 * NS_PER_TICK, 5, 900 * NS_PER_TICK
    )


def test_parse_stat_fixture_weird_comm() -> None:
    name, state, ppid, utime, stime, threads, start = parse_stat((T0 / "100" / "stat").read_bytes())
    assert (name, state, ppid, threads) == ("my (weird) name", "R", 1, 2)
    assert (utime, stime, start) == (1000 * NS_PER_TICK, 200 * NS_PER_TICK, 50000 * NS_PER_TICK)


@pytest.mark.parametrize(
    ("data", "pages"), [(b"12000 2700 900 100 0 1350 0\n", 2700), (b"0 0 0 0 0 0 0\n", 0), (b"5 3", 3)]
)
def test_parse_statm_rss_is_the_resident_field(data: bytes, pages: int) -> None:
    assert parse_statm_rss(data) == pages * PAGE_SIZE_BYTES


@pytest.mark.parametrize("data", [b"", b"12000", b"12000 many 0"])
def test_parse_statm_garbage_raises_value_or_index_error(data: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        parse_statm_rss(data)


def test_parse_stat_non_utf8_name_is_replaced_not_fatal() -> None:
    data = stat_bytes(5, "x").replace(b"(x)", b"(\xff\xfeab)")
    assert parse_stat(data)[0] == "\ufffd\ufffdab"


@pytest.mark.parametrize("data", [b"garbage", b"1 (x) S", b"1 (x) S 1 2 3", b")(", b"1 x) S 1" + b" 0" * 60])
def test_parse_stat_garbage_raises_value_or_index_error(data: bytes) -> None:
    # ProcessProbe.sample counts exactly these two as "unreadable".
    with pytest.raises((ValueError, IndexError)):
        parse_stat(data)


# --- parse_cmdline ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"/usr/bin/python3\0-c\0print(1)\0", "/usr/bin/python3\0-c\0print(1)"),
        (b"nginx: master process nginx\0", "nginx: master process nginx"),  # rewritten argv
        (b"sleep\x0030\x00\x00\x00", "sleep\x0030"),
        (b"a\0\0b\0", "a\0\0b"),  # an empty argument in the middle is kept
        (b"", ""),  # kernel thread
        (None, ""),  # vanished
        (b"caf\xc3\xa9\0\xff\0", "caf\u00e9\0\ufffd"),
    ],
)
def test_parse_cmdline(data: bytes | None, expected: str) -> None:
    assert parse_cmdline(data) == expected


# --- parse_cgroup / short_cgroup -------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"0::/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope"),
        ((T0 / "200" / "cgroup").read_bytes(), f"/system.slice/docker-{DOCKER_ID}.scope"),
        # hybrid: v1 controllers plus the unified (v2) line; v2 wins even when last
        (
            b"12:pids:/a.slice\n11:cpu,cpuacct:/b.slice\n1:name=systemd:/c.slice/x.scope\n0::/d.slice/y.scope\n",
            "/d.slice/y.scope",
        ),
        ((T0 / "100" / "cgroup").read_bytes(), "/user.slice/user-1000.slice/session-2.scope"),
        # v1 only: systemd's named hierarchy, wherever it is
        (b"5:memory:/user.slice\n4:cpu,cpuacct:/x\n1:name=systemd:/user.slice/s.scope\n", "/user.slice/s.scope"),
        # v1 only without name=systemd: the first line
        (b"3:memory:/m\n2:cpu:/c\n", "/m"),
        # a path may contain ':'
        (b"0::/weird:path\n", "/weird:path"),
        (b"", ""),
        (None, ""),
    ],
)
def test_parse_cgroup(data: bytes | None, expected: str) -> None:
    assert parse_cgroup(data) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/system.slice/docker-{DOCKER_ID}.scope", "docker-3f2a9c1b8e7d"),
        (f"/kubepods.slice/cri-containerd-{DOCKER_ID}.scope", "cri-containerd-3f2a9c1b8e7d"),
        (f"/machine.slice/libpod-{DOCKER_ID}.scope", "libpod-3f2a9c1b8e7d"),
        (f"/crio-{DOCKER_ID}.scope", "crio-3f2a9c1b8e7d"),
        ("/user.slice/user-1000.slice/session-2.scope", "session-2.scope"),
        ("/system.slice/nginx.service/", "nginx.service"),
        ("/init.scope", "init.scope"),
        ("/", "/"),
        ("", "/"),
        # "docker-" without ".scope" is a unit name, not a container id
        ("/system.slice/docker-compose.service", "docker-compose.service"),
    ],
)
def test_short_cgroup(path: str, expected: str) -> None:
    assert short_cgroup(path) == expected


# --- ProcessProbe on fixtures ----------------------------------------------


def by_pid(sample) -> dict[int, ProcSample]:
    pids = [p.pid for p in sample.processes]
    assert len(pids) == len(set(pids)), "a pid listed twice"
    return {p.pid: p for p in sample.processes}


def test_process_probe_samples_fixture_t0() -> None:
    probe = ProcessProbe(proc=str(T0))
    probe.start()
    sample = probe.sample()
    probe.stop()
    procs = by_pid(sample)
    assert sorted(procs) == [1, 2, 100, 150, 200, 400, 500, 600]
    assert sample.unreadable == 0

    weird = procs[100]
    assert weird == ProcSample(
        pid=100, ppid=1, state="R", name="my (weird) name", cmdline="./weird\0--flag",
        user=owner(T0 / "100"), cgroup="/user.slice/user-1000.slice/session-2.scope",
        cpu_user_ns=1000 * NS_PER_TICK, cpu_system_ns=200 * NS_PER_TICK,
        # statm's 2700 resident pages, not stat's approximate 2560
        rss_bytes=2700 * PAGE_SIZE_BYTES, num_threads=2, start_time_ns=50000 * NS_PER_TICK,
    )
    kthread = procs[2]
    assert (kthread.name, kthread.cmdline, kthread.cgroup, kthread.ppid) == ("kthreadd", "", "/", 0)
    assert procs[150].cgroup == "/user.slice/user-1000.slice/session-7.scope"
    assert procs[200].cgroup == f"/system.slice/docker-{DOCKER_ID}.scope"
    assert procs[200].cmdline == "nginx: master process nginx -g daemon off;"
    assert procs[600].cmdline == "/opt/worker\x00-j\x008"
    assert procs[600].num_threads == 8


def test_process_probe_samples_fixture_t1() -> None:
    procs = by_pid(ProcessProbe(proc=str(T1)).sample())
    # 500 exited, 300 is new, 400 is a different process under a reused pid
    assert sorted(procs) == [1, 2, 100, 150, 200, 300, 400, 600]
    assert (procs[300].name, procs[300].ppid, procs[300].cmdline) == ("python3", 100, "python3\0-c\0pass")
    assert (procs[400].name, procs[400].cmdline) == ("newproc", "newproc\0--b")


def test_start_needs_a_procfs(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable):
        ProcessProbe(proc=str(tmp_path)).start()
    ProcessProbe(proc=str(T0)).start()  # has self/


@pytest.fixture
def proc_copy(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    shutil.copytree(T0, root)
    return root


def replace_tree(dst: Path, src: Path) -> None:
    shutil.rmtree(dst)
    shutil.copytree(src, dst)


def test_unchanged_stat_reuses_last_sample(proc_copy: Path) -> None:
    probe = ProcessProbe(proc=str(proc_copy))
    first = by_pid(probe.sample())
    replace_tree(proc_copy, T1)
    second = by_pid(probe.sample())
    # kthreadd's stat is byte-for-byte the same: the very same object, which
    # derive_processes relies on to skip arithmetic.
    assert second[2] is first[2]
    assert second[100] is not first[100]
    assert second[100].cpu_user_ns == 1020 * NS_PER_TICK


def test_pid_reuse_rereads_cmdline_and_cgroup(proc_copy: Path) -> None:
    probe = ProcessProbe(proc=str(proc_copy))
    assert by_pid(probe.sample())[400].cmdline == "oldproc\0--a"
    replace_tree(proc_copy, T1)
    p = by_pid(probe.sample())[400]
    assert (p.name, p.cmdline, p.cgroup) == ("newproc", "newproc\0--b", "/system.slice/new.service")
    assert p.start_time_ns == 1000050 * NS_PER_TICK


def test_exec_rereads_cmdline(proc_copy: Path) -> None:
    # Same pid and start time, new comm: the process exec'd.
    probe = ProcessProbe(proc=str(proc_copy))
    probe.sample()
    (proc_copy / "150" / "stat").write_bytes(stat_bytes(150, "newexe", start=60000))
    (proc_copy / "150" / "cmdline").write_bytes(b"/usr/bin/newexe\0-x\0")
    p = by_pid(probe.sample())[150]
    assert (p.name, p.cmdline) == ("newexe", "/usr/bin/newexe\0-x")


def test_same_process_keeps_cached_cmdline(proc_copy: Path) -> None:
    # Documented: cmdline is read once per process, not every tick.
    probe = ProcessProbe(proc=str(proc_copy))
    probe.sample()
    (proc_copy / "150" / "stat").write_bytes(stat_bytes(150, "oldv1", utime=99, start=60000))
    (proc_copy / "150" / "cmdline").write_bytes(b"changed\0")
    p = by_pid(probe.sample())[150]
    assert p.cmdline == "/usr/bin/oldv1"
    assert p.cpu_user_ns == 99 * NS_PER_TICK


@pytest.mark.parametrize(
    "breakage",
    [
        "no stat file", "empty stat", "garbage stat", "truncated stat", "non-number field", "stat is a directory",
        "no statm file", "garbage statm",
    ],
)
def test_unreadable_pids_are_counted_not_fatal(proc_copy: Path, breakage: str) -> None:
    bad = proc_copy / "777"
    bad.mkdir()
    stat = bad / "stat"
    (bad / "statm").write_bytes(b"garbage" if breakage == "garbage statm" else b"100 50 10 5 0 20 0\n")
    if breakage == "no statm file":
        stat.write_bytes(stat_bytes(777, "nostatm"))
        (bad / "statm").unlink()
    elif breakage == "garbage statm":
        stat.write_bytes(stat_bytes(777, "badstatm"))
    elif breakage == "empty stat":
        stat.write_bytes(b"")
    elif breakage == "garbage stat":
        stat.write_bytes(b"\x00\xff not a stat file at all")
    elif breakage == "truncated stat":
        stat.write_bytes(stat_bytes(777, "cut")[:20])
    elif breakage == "non-number field":
        stat.write_bytes(stat_bytes(777, "nan").replace(b" 20 0 1 ", b" 20 0 many "))
    elif breakage == "stat is a directory":
        stat.mkdir()
    sample = ProcessProbe(proc=str(proc_copy)).sample()
    assert sample.unreadable == 1
    assert 777 not in by_pid(sample)
    assert len(sample.processes) == 8  # every good pid is still there


def test_missing_cmdline_and_cgroup_are_empty_not_fatal(proc_copy: Path) -> None:
    # The process can exit between reading stat and reading the rest.
    (proc_copy / "100" / "cmdline").unlink()
    (proc_copy / "100" / "cgroup").unlink()
    sample = ProcessProbe(proc=str(proc_copy)).sample()
    p = by_pid(sample)[100]
    assert (p.cmdline, p.cgroup) == ("", "")
    assert sample.unreadable == 0


def test_a_pid_that_becomes_unreadable_drops_out(proc_copy: Path) -> None:
    probe = ProcessProbe(proc=str(proc_copy))
    assert 600 in by_pid(probe.sample())
    (proc_copy / "600" / "stat").unlink()
    sample = probe.sample()
    assert 600 not in by_pid(sample)
    assert sample.unreadable == 1


def test_statm_is_read_with_every_change_of_stat(proc_copy: Path) -> None:
    probe = ProcessProbe(proc=str(proc_copy))
    assert by_pid(probe.sample())[150].rss_bytes == 100 * PAGE_SIZE_BYTES
    (proc_copy / "150" / "statm").write_bytes(b"400 120 33 100 0 50 0\n")
    # Its stat did not move: last tick's sample, RSS included (the
    # module's docstring says what this can miss).
    assert by_pid(probe.sample())[150].rss_bytes == 100 * PAGE_SIZE_BYTES
    (proc_copy / "150" / "stat").write_bytes(stat_bytes(150, "oldv1", utime=1, start=60000, rss_pages=100))
    assert by_pid(probe.sample())[150].rss_bytes == 120 * PAGE_SIZE_BYTES


# --- the real /proc --------------------------------------------------------


def test_finds_a_real_sleep_process() -> None:
    argv = ["sleep", "987.654321"]  # a duration nobody else uses
    child = subprocess.Popen(argv)
    try:
        probe = ProcessProbe()
        probe.start()
        procs = by_pid(probe.sample())
        probe.stop()
    finally:
        child.kill()
        child.wait()
    p = procs[child.pid]
    assert p.ppid == os.getpid()
    assert p.cmdline == "sleep\0987.654321"
    assert p.name == "sleep"
    assert p.state in ("S", "R")
    assert p.user == pwd.getpwuid(os.getuid()).pw_name
    assert p.rss_bytes > 0
    me = procs[os.getpid()]
    assert me.num_threads >= 1
    assert me.start_time_ns <= p.start_time_ns


PS = shutil.which("ps")
# Sleeping children's resident sets do not move between orac's read and
# ps's, so they must agree to the page; this much slack only absorbs a page
# or two touched late by a child (a sleep maps nothing after it starts). The
# approximate rss of /proc/PID/stat is 100 KiB or more off for a sleep
# (1512 KiB against ps's 1684 on the development VM).
RSS_TOLERANCE_BYTES = 8 * 1024


@pytest.mark.skipif(PS is None, reason="procps ps is not installed (apt-get install procps)")
def test_rss_is_what_ps_reports_over_many_processes() -> None:
    code = "import sys, time; b = bytearray(int(sys.argv[1]) << 20); print(flush=True); time.sleep(60)"
    children = [subprocess.Popen(["sleep", "987.654321"]) for _ in range(100)]
    children += [subprocess.Popen([sys.executable, "-c", code, str(mib)], stdout=subprocess.PIPE) for mib in range(0, 40, 4)]
    try:
        for child in children:
            if child.stdout is not None:
                child.stdout.readline()  # allocated
        time.sleep(0.2)  # the sleeps have exec'd and settled
        probe = ProcessProbe()
        probe.start()
        procs = by_pid(probe.sample())
        probe.stop()
        pids = ",".join(str(c.pid) for c in children)
        out = subprocess.run([PS or "ps", "-o", "pid=,rss=", "-p", pids], capture_output=True, text=True, check=True).stdout
    finally:
        for child in children:
            child.kill()
            child.wait()
    ps_bytes = {int(pid): int(kib) * 1024 for pid, kib in (line.split() for line in out.splitlines())}
    assert len(ps_bytes) == len(children)
    off = {pid: procs[pid].rss_bytes - rss for pid, rss in ps_bytes.items() if abs(procs[pid].rss_bytes - rss) > RSS_TOLERANCE_BYTES}
    assert not off, f"{len(off)} of {len(ps_bytes)} differ from ps by more than {RSS_TOLERANCE_BYTES} bytes: {off}"


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_stat_files_stay_open_and_are_read_afresh_each_tick() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    probe = ProcessProbe()
    probe.start()
    try:
        first = by_pid(probe.sample())[spinner.pid]
        fds = (probe._stat_fds[spinner.pid],)
        time.sleep(0.3)
        second = by_pid(probe.sample())[spinner.pid]
        # the same descriptor, read again: the CPU time it reports moved on;
        # and since its stat moved, its statm is kept open beside it
        assert probe._stat_fds[spinner.pid] == fds[0]
        fds += (probe._statm_fds[spinner.pid],)
        assert second.cpu_user_ns + second.cpu_system_ns > first.cpu_user_ns + first.cpu_system_ns
        spinner.kill()
        spinner.wait()  # reaped: its stat file reads ESRCH
        assert spinner.pid not in by_pid(probe.sample())
        assert spinner.pid not in probe._stat_fds and spinner.pid not in probe._statm_fds
        assert not any(fd_is_open(fd) for fd in fds)
        kept = [*probe._stat_fds.values(), *probe._statm_fds.values()]
        assert kept
    finally:
        spinner.kill()
        spinner.wait()
        probe.stop()
    assert not any(fd_is_open(fd) for fd in kept)


def test_past_the_cap_stat_files_are_opened_each_tick() -> None:
    probe = ProcessProbe()
    probe.start()
    probe._max_fds = 3
    try:
        everyone = by_pid(probe.sample())
        assert len(probe._stat_fds) == 3 and not probe._statm_fds and len(everyone) > 3
        assert by_pid(probe.sample()).keys() >= set(probe._stat_fds)
        assert len(probe._stat_fds) + len(probe._statm_fds) <= 3
    finally:
        probe.stop()


def test_the_descriptor_limit_is_raised_towards_the_hard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from probes.sources import processes

    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits["now"])

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        limits["now"] = value

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert processes._raise_fd_limit() == 4096 and limits["now"] == (4096, 4096)
    limits["now"] = (1024, resource.RLIM_INFINITY)
    assert processes._raise_fd_limit() == processes.WANTED_FDS


def test_parse_cmdline_keeps_one_line_per_process() -> None:
    from probes.sources.processes import parse_cmdline

    assert parse_cmdline(b"python3\0-c\0import os\nwhile True:\n\tpass\0") == "python3\0-c\0import os while True:  pass"
