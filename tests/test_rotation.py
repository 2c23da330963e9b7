"""`orac record --daemon`: files that rotate without losing a frame, retention, replay by time across files."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from support.cli import ROOT, one_line_error, orac
from support.small_disk import fill

from probes.registry import all_probes, select_probes
from probes.store.format import RecordingError
from probes.store.headless import record, record_rotating
from probes.store.playback import parse_time
from probes.store.reader import Recording
from probes.store.rotation import Policy, StoredFile, expired, find_at, stored_files

S = 1_000_000_000
UNIT = ROOT / "systemd" / "orac-record.service"


def probes() -> list:
    return select_probes(["cpu", "procs"], all_probes())


def walls(paths: list[Path]) -> list[int]:
    out = []
    for path in paths:
        with Recording(path) as recording:
            out += [frame.wall_ns for _, frame in recording.iter_frames()]
    return out


def test_files_switch_by_size_with_no_frame_lost_or_written_twice(tmp_path: Path) -> None:
    switched: list[Path] = []
    interval_s = 0.2
    recorder = record_rotating(
        tmp_path, probes(), interval_s, Policy(rotate_bytes=200_000, keep_s=None, keep_bytes=None),
        on_switch=lambda path, removed: switched.append(path), duration_s=6.0,
    )
    files = [f.path for f in stored_files(tmp_path)]
    assert len(files) >= 2 and files == switched and recorder.files == len(files)
    seen = walls(files)
    # every frame sampled is in exactly one file, in order, none skipped
    assert len(seen) == recorder.frames
    assert seen == sorted(set(seen))
    gaps_s = [(b - a) / S for a, b in pairwise(seen)]
    assert max(gaps_s) < 2.5 * interval_s, gaps_s


def test_files_switch_by_time_too(tmp_path: Path) -> None:
    recorder = record_rotating(
        tmp_path, probes(), 0.25, Policy(rotate_bytes=None, rotate_s=1.0, keep_s=None, keep_bytes=None), duration_s=3.2,
    )
    assert recorder.files >= 3
    assert len(walls([f.path for f in stored_files(tmp_path)])) == recorder.frames


def stored(directory: Path, stamp: str, size: int) -> StoredFile:
    path = directory / f"orac-{stamp}.orac"
    path.write_bytes(b"\0" * size)
    return next(f for f in stored_files(directory) if f.path == path)


def test_retention_deletes_the_oldest_first_and_never_the_current_file(tmp_path: Path) -> None:
    day1 = stored(tmp_path, "20261120-000000", 100)
    day2 = stored(tmp_path, "20261125-000000", 100)
    day3 = stored(tmp_path, "20261130-120000", 100)
    now_s = day3.started_s + 3600
    files = stored_files(tmp_path)
    assert files == [day1, day2, day3]
    week = 7 * 86400.0
    # by age: only what is older than the week
    assert expired(files, now_s, Policy(keep_s=week, keep_bytes=None), day3.path) == [day1]
    # by size: the oldest until the rest fit
    assert expired(files, now_s, Policy(keep_s=None, keep_bytes=250), day3.path) == [day1]
    assert expired(files, now_s, Policy(keep_s=None, keep_bytes=150), day3.path) == [day1, day2]
    # never the one being written, even when it alone is too big or too old
    assert expired(files, now_s, Policy(keep_s=None, keep_bytes=10), day3.path) == [day1, day2]
    assert expired(files, day3.started_s + 30 * 86400, Policy(keep_s=week, keep_bytes=None), day3.path) == [day1, day2]


def test_a_switch_applies_retention_to_real_files(tmp_path: Path) -> None:
    old = stored(tmp_path, "20200101-000000", 1000)
    removed: list[Path] = []
    record_rotating(
        tmp_path, probes(), 0.5, Policy(keep_s=86400.0), on_switch=lambda path, gone: removed.extend(gone), duration_s=1,
    )
    assert removed == [old.path] and not old.path.exists()
    assert len(stored_files(tmp_path)) == 1


def two_recordings(directory: Path) -> tuple[Path, Path]:
    first = directory / "orac-20261201-100000.orac"
    second = directory / "orac-20261201-100100.orac"
    record(first, probes(), 0.2, 0.6)
    time.sleep(0.5)
    record(second, probes(), 0.2, 0.6)
    return first, second


def test_replay_by_time_finds_the_file_that_holds_it_and_names_a_bad_one(tmp_path: Path) -> None:
    first, second = two_recordings(tmp_path)
    (tmp_path / "orac-20261201-100030.orac").write_bytes(b"not a recording at all")
    with Recording(first) as a, Recording(second) as b:
        (a0, a1), (_, b1) = a.time_range, b.time_range
    assert find_at(tmp_path, (a0 + a1) // 2)[0] == first
    path, bad = find_at(tmp_path, b1)
    assert path == second
    assert len(bad) == 1 and "orac-20261201-100030.orac" in bad[0]
    # between the two: the one that follows
    assert find_at(tmp_path, a1 + 1)[0] == second
    with pytest.raises(RecordingError, match="holds or follows"):
        find_at(tmp_path, b1 + 3600 * S)


def test_ago_is_a_time_before_now() -> None:
    now_ns = time.time_ns()
    assert abs(parse_time("3m ago", 0) - (now_ns - 180 * S)) < 2 * S
    assert abs(parse_time("2h ago", 0) - (now_ns - 7200 * S)) < 2 * S


def test_bad_daemon_and_directory_input_is_one_line(tmp_path: Path) -> None:
    assert one_line_error(orac("record", "--daemon", "-o", str(tmp_path / "x.orac"))) == (
        "orac: error: --daemon writes files of its own in --dir, not -o FILE"
    )
    assert one_line_error(orac("record")) == (
        "orac: error: say where: -o FILE, or --daemon [--dir DIR] to record on into rotating files"
    )
    assert "expected a size" in one_line_error(orac("record", "--daemon", "--dir", str(tmp_path), "--rotate-size", "big"))
    assert one_line_error(orac("replay", str(tmp_path))) == (
        f'orac: error: {tmp_path} is a directory: say when with --at (14:05, "3m ago")'
    )
    assert "holds no orac recordings" in one_line_error(orac("replay", str(tmp_path), "--at", "3m ago"))
    assert "--at: cannot read time" in one_line_error(orac("replay", str(tmp_path), "--at", "teatime"))


def test_the_unit_files_command_records_into_its_directory(tmp_path: Path) -> None:
    # ExecStart as systemd would run it, with this checkout's orac, a test directory and an end
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0].endswith("scripts/orac") and argv[1:3] == ["record", "--daemon"]
    args = argv[1:]
    args[args.index("--dir") + 1] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args, "--duration", "2s", "--probes", "cpu,procs"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    files = stored_files(tmp_path)
    assert len(files) == 1 and f"recording to {files[0].path}" in result.stderr
    with Recording(files[0].path) as recording:
        assert len(recording) >= 2


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_a_disk_that_fills_while_rotating_is_one_line_and_keeps_the_files_before(small_disk: Path) -> None:
    directory = small_disk / "orac"
    stop = threading.Event()
    result: list[object] = []

    def run() -> None:
        try:
            record_rotating(directory, probes(), 0.2, Policy(rotate_bytes=150_000, keep_s=None, keep_bytes=None), stop=stop,
                            duration_s=30)
        except RecordingError as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while (not directory.exists() or len(stored_files(directory)) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    fill(small_disk)
    thread.join(30)
    stop.set()
    assert result and isinstance(result[0], RecordingError) and "\n" not in str(result[0])
    files = stored_files(directory)
    assert len(files) >= 2
    # every file but the one being written when the disk filled opens with its frames
    for f in files[:-1]:
        with Recording(f.path) as recording:
            assert len(recording) >= 1
