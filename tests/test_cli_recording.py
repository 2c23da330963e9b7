"""orac record, replay and dump from the command line, bad input included."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from test_cli import orac


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orac: error: "), result.stderr
    return lines[0]


def test_record_then_dump(tmp_path: Path) -> None:
    path = tmp_path / "s.orac"
    result = orac("record", "-o", str(path), "--duration", "1", "--interval", "0.25", "--probes", "cpu,procs")
    assert result.returncode == 0, result.stderr
    assert f"in {path}" in result.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rows = [json.loads(line) for line in orac("dump", str(path)).stdout.splitlines()]
    assert len(rows) >= 3
    assert {p["pid"] for p in rows[-1]["processes"]} >= {1}
    csv = orac("dump", str(path), "--format", "csv", "--table", "system").stdout.splitlines()
    assert csv[0].startswith("time,") and len(csv) == len(rows) + 1
    # the file exists now: no silent overwrite
    assert "exists" in one_line_error(orac("record", "-o", str(path), "--duration", "1"))


@pytest.mark.parametrize(
    "args",
    [
        ["record"],
        ["record", "-o", "x.orac", "--duration", "0"],
        ["record", "-o", "x.orac", "--duration", "soon"],
        ["record", "-o", "x.orac", "--probes", "nope"],
        ["record", "-o", "/proc/nope/x.orac", "--duration", "1"],
        ["replay", "/nonexistent.orac"],
        ["replay", "/etc/hostname"],
        ["replay", "--speed", "100", "/etc/hostname"],
        ["dump", "/nonexistent.orac"],
        ["dump", "/etc/hostname", "--format", "xml"],
    ],
)
def test_bad_input_is_one_line(args: list[str]) -> None:
    one_line_error(orac(*args))


def test_truncated_and_corrupt_recordings(tmp_path: Path) -> None:
    path = tmp_path / "s.orac"
    assert orac("record", "-o", str(path), "--duration", "1", "--interval", "0.25", "--probes", "cpu,procs").returncode == 0
    data = path.read_bytes()
    truncated = tmp_path / "truncated.orac"
    truncated.write_bytes(data[: len(data) // 3])
    one_line_error(orac("dump", str(truncated)))
    one_line_error(orac("replay", str(truncated)))
    empty = tmp_path / "empty.orac"
    empty.write_bytes(b"")
    one_line_error(orac("dump", str(empty)))
