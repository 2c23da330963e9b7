"""The "python" probe on real processes: a 70/30 Python program against py-spy's own figures, a
non-Python process, one that exits while sampled; and its parsing, detection and view."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import WORKLOADS, cannot_run

from probes.contract import ProbeUnavailable
from probes.sources.python_stacks import (
    CHUNK_S,
    PERF_MAP_HINT,
    PythonStacksProbe,
    PythonStacksSample,
    WaitingThread,
    derive_python_stacks,
    parse_raw,
    perf_map_note,
    py_spy_path,
    python_version,
)

SYSTEM_PYTHON = shutil.which("python3") or sys.executable
# 3.12 and 3.13 have other frame layouts than Debian 12's 3.11; pyenv's builds where this machine has them.
PYENV = Path.home() / ".pyenv" / "versions"
PYTHONS = [SYSTEM_PYTHON] + [
    str(exe) for exe in sorted(PYENV.glob("3.1[2-9]*/bin/python3")) if exe.is_file()
]


def test_parse_raw_reads_threads_frames_and_counts() -> None:
    text = (
        "thread (24108): worker;<module> (hot.py:1);main (hot.py:13);hot_f (hot.py:7) 131\n"
        "thread (24109);run (t.py:3) 2\n"
        "not a line\n"
    )
    stacks, names = parse_raw(text)
    assert [(s.tid, s.samples, s.frames) for s in stacks] == [
        (24108, 131, ("<module> (hot.py:1)", "main (hot.py:13)", "hot_f (hot.py:7)")),
        (24109, 2, ("run (t.py:3)",)),
    ]
    assert names == {24108: "worker"}


def test_python_version_from_the_executable_and_the_perf_map_hint() -> None:
    version = python_version(os.getpid())
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert perf_map_note(os.getpid(), "3.11") == ""
    # 3.12+ without /tmp/perf-PID.map: how to turn the trampoline on
    assert perf_map_note(2**22 + 7, "3.12") == PERF_MAP_HINT


def test_derive_gives_self_and_total_shares() -> None:
    stacks, names = parse_raw("thread (1): m;main (a.py:1);f (a.py:5) 70\nthread (1): m;main (a.py:1);g (a.py:9) 30\n")
    sample = PythonStacksSample(1, "3.11", tuple(stacks), names, 100, 0, 10**9, 99, False, "", "")
    view = derive_python_stacks(sample, sample, 1.0)
    shares = {f.name: (f.self_percent, f.total_percent) for f in view.top_self}
    assert shares == {"f (a.py:5)": (70.0, 70.0), "g (a.py:9)": (30.0, 30.0), "main (a.py:1)": (0.0, 100.0)}
    assert view.stacks[0].percent == 70.0


@pytest.fixture(params=PYTHONS)
def target(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([request.param, str(WORKLOADS / "python_70_30.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def started(probe: PythonStacksProbe) -> PythonStacksProbe:
    if py_spy_path() is None:
        cannot_run("py-spy is not installed")
    try:
        probe.start()
    except ProbeUnavailable as e:
        cannot_run(str(e))
    return probe


def share(totals: dict[str, float], function: str) -> float:
    return sum(v for name, v in totals.items() if name.startswith(f"{function} ("))


def py_spy_shares(pid: int, seconds: int) -> tuple[subprocess.Popen[bytes], str]:
    out = f"/tmp/orac-test-pyspy-{pid}.txt"
    spy = py_spy_path()
    assert spy is not None
    cmd = [spy, "record", "--format", "raw", "--nonblocking", "--rate", "99", "-d", str(seconds), "--pid", str(pid), "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def test_a_70_30_program_shows_both_functions_beside_py_spy(target: subprocess.Popen[str]) -> None:
    probe = started(PythonStacksProbe(target.pid))
    seconds = 3 * CHUNK_S
    reference, out = py_spy_shares(target.pid, seconds)
    try:
        time.sleep(seconds + 1.5)
        sample = probe.sample()
    finally:
        probe.stop()
        reference.wait()
    view = derive_python_stacks(sample, sample, seconds)
    totals = {f.name: f.total_percent for f in view.top_total}
    stacks, _ = parse_raw(open(out).read())
    os.unlink(out)
    spy_total = sum(s.samples for s in stacks)
    spy = {
        name: sum(s.samples for s in stacks if any(f.startswith(f"{name} (") for f in s.frames)) / spy_total * 100
        for name in ("hot_f", "hot_g")
    }
    figures = (
        f"orac: hot_f {share(totals, 'hot_f'):.1f} %, hot_g {share(totals, 'hot_g'):.1f} % of {view.samples} samples; "
        f"py-spy: hot_f {spy['hot_f']:.1f} %, hot_g {spy['hot_g']:.1f} % of {spy_total}"
    )
    assert view.samples >= 200, figures
    assert abs(share(totals, "hot_f") - 70) <= 10, figures
    assert abs(share(totals, "hot_g") - 30) <= 10, figures
    assert view.python_version and not view.problem, figures
    # 3.11+ is read by orac itself, not py-spy (whose figures it is checked against)
    assert view.sampled_by == "orac", view.python_version
    # orac puts the Python frames in the native profile itself: no hint about perf maps
    assert view.note == "", view.python_version
    # threading's name of the main thread
    assert view.thread_names.get(target.pid) == "crunch-main", view.thread_names
    print(figures)


def test_a_process_that_is_not_python_says_so() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(ProbeUnavailable, match="is not Python") as raised:
            PythonStacksProbe(sleeper.pid).start()
        assert raised.value.absent
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_process_that_exits_while_sampled_ends_cleanly(target: subprocess.Popen[str]) -> None:
    probe = started(PythonStacksProbe(target.pid))
    try:
        time.sleep(0.5)
        target.kill()
        target.wait()
        deadline = time.monotonic() + 3 * CHUNK_S + 5
        samples = [probe.sample()]
        while not samples[-1].exited and time.monotonic() < deadline:
            time.sleep(0.5)
            samples.append(probe.sample())
        assert samples[-1].exited
        after = probe.sample()
        assert after.exited and after.stacks == ()
    finally:
        probe.stop()


def test_a_sample_is_recorded_and_read_back() -> None:
    import probes.registry  # noqa: F401  (the probes' types, as a recording knows them)
    from probes.store.codec import Decoder, Encoder, Schema, TypeTable

    stacks, names = parse_raw("thread (1): m;main (a.py:1);f (a.py:5) 70\n")
    waiting = (WaitingThread(2, ("run (b.py:3)", "wait_for_data (b.py:21)")),)
    sample = PythonStacksSample(
        1, "3.11", tuple(stacks), names, 70, 1, 2 * 10**9, 99, True, "", PERF_MAP_HINT, waiting=waiting, native=True,
        sampled_by="orac",
    )
    table = TypeTable()
    payload = Encoder(table).encode_frame({"python": sample}, {}, None)
    samples, _ = Decoder(Schema(*table.unsaved())).decode_frame(payload, None)
    assert samples["python"] == sample


def test_another_users_process_gives_one_line() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the probe as another user")
    target = subprocess.Popen([SYSTEM_PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        probe = (
            "from probes.sources.python_stacks import PythonStacksProbe\n"
            "from probes.contract import ProbeUnavailable\n"
            f"try:\n    PythonStacksProbe({target.pid}).start()\n"
            "except ProbeUnavailable as e:\n    print(e)\n"
        )
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1],
        )
        assert done.stdout.strip() == (
            f"cannot tell whether process {target.pid} is Python: its executable is not readable by this user: "
            "run orac as root or as the process's user"
        ), done.stderr
    finally:
        target.kill()
        target.wait()


@pytest.mark.skipif(len(PYTHONS) < 2, reason="no Python 3.12+ here")
def test_a_312_process_with_the_perf_trampoline_on_gets_no_hint() -> None:
    proc = subprocess.Popen([PYTHONS[1], "-X", "perf", "-c", "import time\nfor _ in range(300): time.sleep(0.1)"])
    try:
        perf_map = Path(f"/tmp/perf-{proc.pid}.map")
        deadline = time.monotonic() + 20
        while not perf_map.exists():
            assert time.monotonic() < deadline, "python -X perf wrote no perf map"
            time.sleep(0.1)
        version = python_version(proc.pid)
        assert version is not None and perf_map_note(proc.pid, version) == ""
    finally:
        proc.kill()
        proc.wait()
        Path(f"/tmp/perf-{proc.pid}.map").unlink(missing_ok=True)
