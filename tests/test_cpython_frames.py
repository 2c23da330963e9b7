"""orac's own reader of CPython 3.11+ frames, on real interpreters: each stack against the process's own traceback.

Runs on every CPython 3.11+ this machine has (the system python3 and
pyenv's builds), since each minor version lays its frames out differently.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import WORKLOADS

from probes.contract import ProbeUnavailable
from probes.host.cpython_frames import (
    CPythonProcess,
    FramesUnreadable,
    layout_from_debug_offsets,
    line_of,
    short_filename,
)
from probes.sources.python_stacks import PythonStacksProbe, py_spy_path, python_version

PYENV = Path.home() / ".pyenv" / "versions"
SYSTEM = [exe for exe in (shutil.which("python3"), "/usr/bin/python3") if exe]
PYTHONS = sorted(
    {str(Path(exe).resolve()) for exe in SYSTEM + [str(p) for p in PYENV.glob("3.1[1-9]*/bin/python3")] if Path(exe).exists()}
)


def version_of(exe: str) -> tuple[int, int]:
    out = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, check=True)
    major, minor = out.stdout.split()
    return int(major), int(minor)


READABLE = [exe for exe in PYTHONS if version_of(exe) >= (3, 11)]


@pytest.fixture(params=READABLE)
def waiting(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], list[list]]]:
    proc = subprocess.Popen([request.param, str(WORKLOADS / "python_known_stack.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    printed = json.loads(proc.stdout.readline())
    yield proc, printed
    proc.kill()
    proc.wait()


def test_a_waiting_stack_is_the_one_the_process_printed(waiting: tuple[subprocess.Popen[str], list[list]]) -> None:
    proc, printed = waiting
    version = python_version(proc.pid)
    assert version is not None
    major, minor = (int(part) for part in version.split("."))
    reader = CPythonProcess(proc.pid, (major, minor))
    try:
        threads = reader.threads()
        assert [tid for tid, _ in threads] == [proc.pid]
        stack = reader.stack(threads[0][1], lines=True)
        defs = reader.stack(threads[0][1])
    finally:
        reader.close()
    # traceback names a method and a generator by co_name; the reader by co_qualname
    qualified = {"run": "Runner.run"}
    assert stack == tuple(f"{qualified.get(name, name)} ({file}:{line})" for name, file, line in printed), version
    source = (WORKLOADS / "python_known_stack.py").read_text().splitlines()
    def_lines = [next(i for i, text in enumerate(source, 1) if f"def {name}(" in text) for name in ("wait_here", "producer")]
    assert defs[-2:] == (f"producer (python_known_stack.py:{def_lines[1]})", f"wait_here (python_known_stack.py:{def_lines[0]})")


def test_the_probe_reads_3_11_and_newer_itself_and_older_with_py_spy() -> None:
    older = [exe for exe in PYTHONS + [str(p) for p in PYENV.glob("3.[7-9]*/bin/python3")] if version_of(exe) < (3, 11)]
    cases = [(READABLE[0], "orac")] + ([(older[0], "py-spy")] if older and py_spy_path() else [])
    for exe, sampled_by in cases:
        proc = subprocess.Popen([exe, str(WORKLOADS / "python_70_30.py")], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            probe = PythonStacksProbe(proc.pid)
            probe.start()
            try:
                sample = probe.sample()
                deadline = 60
                while not sample.samples and deadline:
                    subprocess.run(["sleep", "0.5"], check=True)
                    sample = probe.sample()
                    deadline -= 1
            finally:
                probe.stop()
            assert sample.sampled_by == sampled_by, exe
            assert any(frame.startswith("hot_") for stack in sample.stacks for frame in stack.frames), sample.stacks[:3]
        except ProbeUnavailable as e:
            pytest.fail(f"{exe}: {e}")
        finally:
            proc.kill()
            proc.wait()


def test_debug_offsets_of_another_minor_version_are_refused() -> None:
    raw = bytearray(b"xdebugpy" + bytes(576))
    struct.pack_into("<Q", raw, 8, 0x030E00F0)  # 3.14.0
    with pytest.raises(FramesUnreadable, match=r"version 3\.14"):
        layout_from_debug_offsets(bytes(raw))
    with pytest.raises(FramesUnreadable, match="no debug offsets"):
        layout_from_debug_offsets(bytes(584))


def test_line_table_kinds() -> None:
    # a real table: the code object's own lines for each instruction, as the interpreter gives them
    def sample(x: int) -> int:
        y = x + 1
        if y > 2:
            y *= 3
        return y

    code = sample.__code__
    lines = {offset // 2: line for offset, _, line in code.co_lines() for offset in range(offset, _, 2)}
    assert lines, "no lines"
    for unit, line in lines.items():
        assert line_of(code.co_linetable, code.co_firstlineno, unit) == line, unit
    assert line_of(b"", 10, 0) is None
    assert line_of(b"\xf8", 10, 0) is None  # a "no location" entry
    assert line_of(b"\xf0\x01", 10, 0) is None  # cut short: no crash


def test_short_filenames_as_py_spy_gives_them() -> None:
    assert short_filename("/usr/lib/python3/dist-packages/numpy/core/numeric.py") == "numpy/core/numeric.py"
    assert short_filename("/root/.pyenv/versions/3.12.1/lib/python3.12/threading.py") == "threading.py"
    assert short_filename("/usr/lib/python3.11/json/decoder.py") == "json/decoder.py"
    assert short_filename("/srv/app/main.py") == "main.py"
    assert short_filename("<string>") == "<string>"


def test_a_version_without_a_layout_says_so() -> None:
    # this very process (orac's venv is 3.11+): its symbols are found, the layout asked for is not known
    with pytest.raises(FramesUnreadable, match=r"Python 3\.10 frames are not known here"):
        CPythonProcess(os.getpid(), (3, 10))
