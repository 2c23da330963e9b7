"""Incident bundles: `orac incident -o DIR` headless, and `!` in the live UI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import zstandard
from support.cli import one_line_error, orac
from support.harness import wait_for

from probes.model.collector import Collector
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe
from probes.store.flight import FlightRecorder
from probes.store.incident import RECORDING_NAME, SUMMARY_NAME, read_period
from probes.store.reader import Recording
from tui.app import OracApp

SECRET = "hunter2-incident"
# a process busy for the whole bundle, with a secret in its command line
SPIN = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"


def spinner(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SPIN, str(seconds), f"--password={SECRET}"], stdin=subprocess.DEVNULL,
    )


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) in (0o600, 0o700)


def every_text(folder: Path) -> str:
    """Every file of the bundle as text, the recording decoded (its payloads are compressed)."""
    texts = [p.read_text(errors="replace") for p in folder.iterdir() if p.suffix in (".md", ".txt", ".svg", ".folded")]
    dumped = orac("dump", str(folder / RECORDING_NAME), timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    return "\n".join([*texts, dumped.stdout])


def archived_names(archive: Path) -> list[str]:
    with archive.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as unpacked, \
            tarfile.open(fileobj=unpacked, mode="r|") as tar:
        return sorted(member.name for member in tar)


def test_headless_bundle_names_the_busy_process_and_holds_no_secret(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    busy = spinner(30)
    try:
        result = orac("incident", "-o", str(folder), "--duration", "3s", "--probes", "cpu,procs,procio", timeout=60)
    finally:
        busy.kill()
        busy.wait()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [RECORDING_NAME, SUMMARY_NAME]
    assert private(folder) and all(private(p) for p in folder.iterdir())
    with Recording(folder / RECORDING_NAME) as recording:
        assert len(recording) >= 3
    summary = (folder / SUMMARY_NAME).read_text()
    cpu_table = summary.split("## Top processes by CPU")[1].split("##")[0]
    top_row = next(line for line in cpu_table.splitlines() if line.startswith("| ") and "pid" not in line)
    # the spinner used a whole core for the 3 s: first, with about 3 CPU seconds
    assert top_row.startswith(f"| {busy.pid} | {Path(sys.executable).name[:15]} |"), cpu_table
    assert float(top_row.split("|")[3]) == pytest.approx(3.0, abs=0.8)
    assert "## Verdict over the period" in summary and "| CPU |" in summary
    moments = summary.split("## Moments marked")[1].split("##")[0]
    assert f"(pid {busy.pid}) takes the top" in moments
    assert SECRET not in every_text(folder)
    archive = tmp_path / "bundle.tar.zst"
    assert private(archive)
    assert archived_names(archive) == [f"bundle/{RECORDING_NAME}", f"bundle/{SUMMARY_NAME}"]


def test_a_folder_that_is_not_empty_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_text("mine")
    error = one_line_error(orac("incident", "-o", str(tmp_path), "--duration", "1s"))
    assert error == f"orac: error: {tmp_path} is not empty; name a new folder"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_a_garbage_duration_is_a_one_line_error(tmp_path: Path) -> None:
    assert "--duration" in one_line_error(orac("incident", "-o", str(tmp_path / "b"), "--duration", "soon"))
    assert not (tmp_path / "b").exists()


async def test_the_key_bundles_the_kept_past_the_screen_and_a_summary(tmp_path: Path) -> None:
    collector = Collector([SystemProbe(), ProcessProbe()], 0.25, history=FlightRecorder(history_s=60))
    app = OracApp(collector, incident_dir=tmp_path, screenshot_dir=tmp_path / "shots")
    busy = spinner(60)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: len(collector.history or ()) >= 8, timeout_s=30)
            pressed_ns = time.time_ns()
            await pilot.press("exclamation_mark")
            folder = app._incident
            assert folder is not None and folder.parent == tmp_path
            await wait_for(pilot, lambda: len(list(folder.glob("*.png"))) == 1, timeout_s=30)
            await pilot.pause(1.5)
            await pilot.press("exclamation_mark")
            assert app._incident is None
            await wait_for(pilot, lambda: (folder / SUMMARY_NAME).exists(), timeout_s=30)
            await wait_for(pilot, lambda: folder.with_name(folder.name + ".tar.zst").exists(), timeout_s=30)
    finally:
        busy.kill()
        busy.wait()
    names = sorted(p.suffix or p.name for p in folder.iterdir())
    assert names == [".md", ".orac", ".png", ".svg", ".txt"]
    assert all(private(p) for p in folder.iterdir())
    period = read_period(folder / RECORDING_NAME)
    # the kept frames before the key, then live ones after it
    assert period.first_ns is not None and period.first_ns <= pressed_ns - 7 * 250_000_000
    assert period.last_ns is not None and period.last_ns > pressed_ns
    assert busy.pid in period.processes and period.processes[busy.pid].cpu_s > 0.5
    assert SECRET not in every_text(folder)
    screen = next(folder.glob("*.txt")).read_text()
    assert "Processes" in screen


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_a_bundle_on_a_full_disk_is_one_line_and_exit_2(small_disk: Path) -> None:
    from support.small_disk import fill

    fill(small_disk)
    folder = small_disk / "bundle"
    result = orac("incident", "-o", str(folder), "--duration", "2s", "--probes", "cpu,procs", timeout=60)
    error = one_line_error(result)
    assert "No space left on device" in error or "full" in error, error


def test_a_drill_down_open_in_the_period_leaves_its_stacks_in_the_bundle(tmp_path: Path) -> None:
    import dataclasses

    from support.recordings import write
    from support.synthetic import frames

    from probes.sources.profile import ProfileSample, ProfileStack
    from probes.store.incident import finish_bundle

    # postgres 978's drill-down open over the three seconds: its profile, and the off-CPU stacks the box recorded
    profile = ProfileSample((ProfileStack(978, 90, ("main", "CheckPointGuts"), ("do_fsync",)),), {978: "postgres"},
                            90, {}, 99, 978, False)
    drilled = [dataclasses.replace(f, samples={**f.samples, "profile": profile}) for f in frames(ticks=3)]
    folder = tmp_path / "bundle"
    folder.mkdir(mode=0o700)
    write(folder / RECORDING_NAME, drilled)
    finish_bundle(folder)
    assert (folder / "drilldown-978-profile.folded").read_text() == "main;CheckPointGuts;do_fsync 270\n"
    offcpu = (folder / "drilldown-978-offcpu.folded").read_text().splitlines()
    assert offcpu and all(line.startswith("[") for line in offcpu)
    assert "drilldown-978-profile.folded, drilldown-978-offcpu.folded" in (folder / SUMMARY_NAME).read_text()
    assert not list(folder.glob("drilldown-977-*"))  # no drill-down was open on 977
