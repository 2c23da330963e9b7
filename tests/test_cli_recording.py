"""orac record, replay and dump from the command line, bad input included."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from support.cli import one_line_error, orac
from support.recordings import synthetic_frames, write


def test_record_then_dump(tmp_path: Path) -> None:
    path = tmp_path / "s.orac"
    result = orac("record", "-o", str(path), "--duration", "1", "--interval", "0.25", "--probes", "cpu,procs")
    assert result.returncode == 0, result.stderr
    assert f"in {path}" in result.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rows = [json.loads(line) for line in orac("dump", str(path)).stdout.splitlines()]
    assert len(rows) >= 3
    assert {p["pid"] for p in rows[-1]["processes"]} >= {1}
    # recorded without disks: their cell says so rather than "ok"
    assert {c["resource"]: c["state"] for c in rows[-1]["verdict"]}["disks"] == "no_data"
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


# --- numbers and times on the command line -------------------------------------------

RECORDED = "{recording}"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("cli") / "s.orac", synthetic_frames(6))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["record", "-o", "x.orac", "--duration", "nan"], "at most 366d"),
        (["record", "-o", "x.orac", "--duration", "inf"], "at most 366d"),
        (["record", "-o", "x.orac", "--duration", "1e400s"], "at most 366d"),
        (["record", "-o", "x.orac", "--duration=-5m"], "more than 0"),
        (["record", "-o", "x.orac", "--duration", "367d"], "at most 366d"),
        (["record", "-o", "x.orac", "--interval", "inf"], "between 0.2 and 60"),
        (["replay", RECORDED, "--speed", "nan"], "speed"),
        (["replay", RECORDED, "--speed", "inf"], "speed"),
        (["dump", RECORDED, "--from", "inf"], "outside the times"),
        (["dump", RECORDED, "--from", "nan"], "outside the times"),
        (["dump", RECORDED, "--to", "1e400"], "outside the times"),
        (["dump", RECORDED, "--from", "99999999999"], "outside the times"),
        (["dump", RECORDED, "--from", "+99999999999999h"], "outside the times"),
        (["dump", RECORDED, "--to", "9999-12-31"], "outside the times"),
        (["dump", RECORDED, "--from", "-1"], "outside the times"),
        (["dump", RECORDED, "--from", "soon"], "cannot read time"),
        (["dump", RECORDED, "--from", "+1h"], "no frames between +1h and the end"),
        (["dump", RECORDED, "--to", "1000000000"], "no frames between the start and 1000000000"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["dupm", RECORDED], "unknown command 'dupm'"),
    ],
)
def test_bad_numbers_and_times_are_one_line_and_exit_2(
    args: list[str], says: str, recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import main

    code = main([recording.as_posix() if a == RECORDED else a for a in args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("orac: error: ") and err.count("\n") == 1, err
    assert says in err


def test_no_frames_in_the_range_names_the_recordings_times(recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    assert main(["dump", str(recording), "--from", "+1h"]) == 2
    assert "the recording runs from 2025-11-" in capsys.readouterr().err


def test_dump_help_says_json_is_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    with pytest.raises(SystemExit):
        main(["dump", "--help"])
    assert "JSON Lines" in capsys.readouterr().out
