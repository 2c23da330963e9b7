"""The disks and filesystems probes in recordings: recorded, validated, replayed and dumped like the others."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from support.loop_device import MIB, direct_io, loop_filesystem
from support.synthetic import S

from probes.model.frame import Frame
from probes.model.views import derive_frame
from probes.registry import all_probes, select_probes
from probes.sources.disks import DISKS, DisksSample, Placement, parse_diskstats
from probes.sources.filesystems import (
    FILESYSTEMS,
    FilesystemsSample,
    MountedFilesystem,
    Space,
)
from probes.store.dump import dump
from probes.store.headless import record
from probes.store.reader import Recording
from probes.store.writer import Recorder

T0 = """\
   8       0 sda 1000 10 20000 500 2000 20 40000 1500 0 1800 2000 10 0 0 5 100 50
   8       1 sda1 1000 10 20000 500 2000 20 40000 1500 0 1800 2000 10 0 0 5 100 50
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0
"""
T1 = """\
   8       0 sda 1200 10 24096 900 2400 20 48192 2700 3 3600 6000 30 0 4096 45 300 250
   8       1 sda1 1200 10 24096 900 2400 20 48192 2700 3 3600 6000 30 0 4096 45 300 250
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0
"""


def disks_sample(text: str, mono_ns: int) -> DisksSample:
    return DisksSample(parse_diskstats(text, {"sda1": Placement("sd", "sda")}), mono_ns)


def filesystems_sample(used_bytes: int, mono_ns: int) -> FilesystemsSample:
    size = 100 * MIB
    space = Space(size, size - used_bytes, size - used_bytes - 5 * MIB, 1000, 400)
    root = MountedFilesystem(21, "/", "/dev/sda1", "ext4", 8, 1, False, space)
    return FilesystemsSample((root,), mono_ns)


def synthetic(tmp_path: Path) -> Path:
    path = tmp_path / "disks.orac"
    with Recorder(path, interval_s=2.0, probes=["disks", "filesystems"]) as recorder:
        for t, (text, used) in enumerate(((T0, 40 * MIB), (T1, 60 * MIB), (T1, 60 * MIB))):
            mono_ns = 1000 * S + t * 2 * S
            recorder.append(Frame(
                wall_ns=1_764_000_000 * S + t * 2 * S, mono_ns=mono_ns,
                samples={"disks": disks_sample(text, mono_ns), "filesystems": filesystems_sample(used, mono_ns)},
                unavailable={},
            ))
    return path


def test_both_probes_are_system_wide() -> None:
    names = [p.name for p in all_probes()]
    assert DISKS.name in names and FILESYSTEMS.name in names


def test_samples_round_trip_through_a_recording(tmp_path: Path) -> None:
    path = synthetic(tmp_path)
    frames = [frame for _, frame in Recording(path).iter_frames(range(3))]
    assert frames[1].samples["disks"] == disks_sample(T1, 1002 * S)
    assert frames[1].samples["filesystems"] == filesystems_sample(60 * MIB, 1002 * S)
    views = derive_frame(frames[0], frames[1])
    sda = views.get(DISKS).disks[0]  # type: ignore[union-attr]
    assert sda.name == "sda" and sda.partitions[0].name == "sda1"
    assert sda.rates is not None and sda.rates.reads_per_s == pytest.approx(100.0)


def test_dump_csv_disks_and_filesystems(tmp_path: Path) -> None:
    path = synthetic(tmp_path)
    out = io.StringIO()
    assert dump(Recording(path), "csv", out=out, table="disks") == 6  # 3 devices x 2 frames with rates
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0])[:4] == ["time", "index", "name", "parent"]
    sda, sda1, loop0 = rows[:3]
    assert (sda["name"], sda1["parent"], loop0["idle"]) == ("sda", "sda", "True")
    # iostat -x by hand for the T0 -> T1 interval of 2 s
    assert float(sda["reads_per_s"]) == pytest.approx(100.0)
    assert float(sda["write_mib_per_s"]) == pytest.approx(8192 * 512 / MIB / 2)
    assert float(sda["read_await_ms"]) == pytest.approx(2.0)
    assert float(sda["util_percent"]) == pytest.approx(90.0)
    # no request completed on loop0: no await, an empty cell rather than 0
    assert loop0["read_await_ms"] == ""

    out = io.StringIO()
    assert dump(Recording(path), "csv", out=out, table="filesystems") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["mount_point"] == "/" and float(rows[0]["growth_bytes_per_s"]) == pytest.approx(10 * MIB)
    assert float(rows[0]["used_percent"]) == pytest.approx(60 / 95 * 100)


def test_dump_json_lists_disks_and_filesystems(tmp_path: Path) -> None:
    out = io.StringIO()
    dump(Recording(synthetic(tmp_path)), "json", out=out)
    first = json.loads(out.getvalue().splitlines()[0])
    assert [d["name"] for d in first["disks"]] == ["sda", "loop0"]
    assert first["disks"][0]["partitions"][0]["name"] == "sda1"
    assert first["filesystems"][0]["mount_point"] == "/"


def test_dump_refuses_an_unknown_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose processes, system, disks, filesystems, blockio, "):
        dump(Recording(synthetic(tmp_path)), "csv", out=io.StringIO(), table="network")


def test_headless_recording_of_real_disk_io_dumps_what_was_written(tmp_path: Path) -> None:
    n_mib = 16
    path = tmp_path / "io.orac"
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        probes = select_probes(["disks", "filesystems"], all_probes())
        stop = threading.Event()
        recorder = threading.Thread(target=record, args=(path, probes, 0.25), kwargs={"stop": stop})
        recorder.start()
        try:
            time.sleep(0.6)
            assert helper.call(f"write {fs.mount / 'data'} {n_mib} 1024") == [str(n_mib * MIB)]
            time.sleep(0.6)
            df = os.statvfs(fs.mount)
        finally:
            stop.set()
            recorder.join()
        mount = str(fs.mount)
        name = fs.name
    recording = Recording(path)
    frames = [frame for _, frame in recording.iter_frames(range(len(recording)))]
    out = io.StringIO()
    assert dump(recording, "csv", out=out, table="disks") > 0
    rows = [r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["name"] == name]
    times = {i: f.mono_ns / 1e9 for i, f in enumerate(frames)}
    # Each row's rate over its own interval adds up to what was written; the
    # intervals are the frames', so a few ms of jitter per 0.25 s stays
    # inside 2 %.
    written = sum(
        float(r["write_mib_per_s"]) * (times[int(r["index"])] - times[int(r["index"]) - 1])
        for r in rows if r["write_mib_per_s"]
    )
    assert written == pytest.approx(n_mib, rel=0.02)

    out = io.StringIO()
    dump(recording, "csv", out=out, table="filesystems")
    last = [r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["mount_point"] == mount][-1]
    used = (df.f_blocks - df.f_bfree) * df.f_frsize
    assert int(last["used_bytes"]) == used
    assert float(last["used_percent"]) == pytest.approx(used / (used + df.f_bavail * df.f_frsize) * 100)
