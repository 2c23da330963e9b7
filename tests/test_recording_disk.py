"""Recordings on full disks, after kill -9, and copied: nothing frozen, nothing lost silently.

The full disk is a real one: a small tmpfs mounted for the test (root only)
and filled with a file, unmounted afterwards whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import one_line_error, orac
from support.recordings import synthetic_frames
from support.small_disk import fill

from probes.model.collector import Collector
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe
from probes.store.format import RecordingError
from probes.store.reader import Recording
from probes.store.replay import ReplaySource
from probes.store.writer import CHECKPOINT_EVERY, Recorder

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
NOBODY = 65534


@as_root
def test_recording_on_a_full_disk_is_one_line_and_leaves_no_file(small_disk: Path) -> None:
    fill(small_disk)
    path = small_disk / "x.orac"
    error = one_line_error(orac("record", "-o", str(path), "--duration", "1", "--probes", "cpu,procs"))
    assert "full" in error
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    # the name is free for the next try once there is room
    (small_disk / "filler").unlink()
    assert orac("record", "-o", str(path), "--duration", "0.5", "--interval", "0.25", "--probes", "cpu").returncode == 0


@as_root
def test_a_disk_that_fills_while_recording_keeps_the_frames_before(small_disk: Path) -> None:
    frames = synthetic_frames(200)
    recorder = Recorder(small_disk / "x.orac", interval_s=1.0, keyframe_every=1)
    for frame in frames[:5]:
        recorder.append(frame)
    fill(small_disk)
    with pytest.raises(RecordingError, match=r"full.*frames before are saved"):
        for frame in frames[5:]:
            recorder.append(frame)
    saved = recorder.frames
    recorder.close()
    (small_disk / "filler").unlink()
    with Recording(small_disk / "x.orac") as recording:
        assert len(recording) == saved >= 5
        assert recording.frame(saved - 1).wall_ns == frames[saved - 1].wall_ns


@as_root
async def test_live_recording_stops_on_a_full_disk_and_the_screen_goes_on(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.app import OracApp
    from tui.header_bar import HeaderBar

    monkeypatch.chdir(small_disk)
    collector = Collector([SystemProbe(), ProcessProbe()], interval_s=0.2)
    app = OracApp(collector)
    async with app.run_test(size=(160, 48)) as pilot:
        while app.frame is None:
            await pilot.pause(0.05)
        await pilot.press("R")
        recorder = collector.recorder
        assert recorder is not None
        while recorder.frames < 3:
            await pilot.pause(0.05)
        fill(small_disk)
        deadline = time.monotonic() + 20
        while collector.recorder is not None:
            assert time.monotonic() < deadline, "the recording never stopped"
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        notices = [n.message for n in app._notifications]
        assert any("full" in m and "sampling goes on" in m for m in notices), notices
        assert "REC" not in str(app.query_one(HeaderBar).flags)
        # still sampling and drawing
        seen = app.frame
        for _ in range(100):
            await pilot.pause(0.05)
            if app.frame is not seen:
                break
        assert app.frame is not seen
    (small_disk / "filler").unlink()
    with Recording(recorder.path) as recording:
        assert len(recording) == recorder.frames >= 3


def killed_recording(path: Path, frames: int) -> None:
    """A recorder killed (os._exit, like kill -9) after `frames` frames."""
    pid = os.fork()
    if pid == 0:
        try:
            recorder = Recorder(path, interval_s=1.0)
            for frame in synthetic_frames(frames):
                recorder.append(frame)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_after_kill_9_the_file_with_its_wal_has_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "k.orac"
    killed_recording(path, CHECKPOINT_EVERY + 10)
    assert (tmp_path / "k.orac-wal").exists()
    with Recording(path) as recording:
        assert len(recording) == CHECKPOINT_EVERY + 10
        assert recording.warning is None


def test_a_copy_of_a_killed_recording_without_its_wal_says_frames_are_missing(tmp_path: Path) -> None:
    killed_recording(tmp_path / "k.orac", CHECKPOINT_EVERY + 10)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "k.orac", copy / "k.orac")
    result = orac("dump", str(copy / "k.orac"))
    assert result.returncode == 0
    assert result.stderr.startswith("orac: warning: ") and "k.orac-wal is not beside it" in result.stderr
    # every frame up to the last checkpoint, less the first (it has no rates)
    assert len(result.stdout.splitlines()) == CHECKPOINT_EVERY - 1
    # reading it created nothing beside the copy
    assert sorted(p.name for p in copy.iterdir()) == ["k.orac"]


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=Path(__file__).resolve().parents[1],
        user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def readonly_dir() -> Iterator[Path]:
    """A directory the second user can read and not write."""
    directory = Path(tempfile.mkdtemp(prefix="orac-ro-"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as a second user")
def test_a_read_only_copy_of_a_killed_recording_says_what_to_copy(readonly_dir: Path, tmp_path: Path) -> None:
    killed_recording(tmp_path / "k.orac", 10)
    for name in ("k.orac", "k.orac-wal"):
        shutil.copy(tmp_path / name, readonly_dir / name)
        os.chmod(readonly_dir / name, 0o444)
    error = one_line_error(as_nobody("dump", str(readonly_dir / "k.orac")))
    assert "copy k.orac and k.orac-wal to a directory you can write to" in error


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as a second user")
def test_a_recording_finished_while_replayed_reads_from_a_read_only_copy(readonly_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.orac"
    recorder = Recorder(path, interval_s=1.0)
    for frame in synthetic_frames(5):
        recorder.append(frame)
    # A replay holds the file open while the recorder closes, so it stays in WAL mode.
    with Recording(path) as open_elsewhere:
        ReplaySource(open_elsewhere)
        recorder.close()
    shutil.copy(path, readonly_dir / "s.orac")
    os.chmod(readonly_dir / "s.orac", 0o444)
    result = as_nobody("dump", str(readonly_dir / "s.orac"))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4
