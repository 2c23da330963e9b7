"""The "disks" probe: /proc/diskstats parsing, iostat -xz's figures, and real I/O on a loop device."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from support.loop_device import (
    MIB,
    direct_io,
    loop_filesystem,
    new_loop_device,
    remove_loop_device,
    require_root,
)

from probes.contract import ProbeUnavailable
from probes.sources.disks import (
    MS_WRAP,
    DiskCounters,
    DisksProbe,
    DisksSample,
    DiskView,
    Placement,
    derive_disks,
    kind_of,
    parse_diskstats,
    read_placements,
)

REPO = Path(__file__).resolve().parent.parent
# One box at two moments 2 s apart, in the three line lengths kernels write.
# sda (20 fields, 5.5+) and its partition; vdb 18 fields (4.18+); hda 14
# (older); a 7-field partition line of a kernel before 2.6.25; garbage.
T0 = """\
   8       0 sda 1000 10 20000 500 2000 20 40000 1500 0 1800 2000 10 0 0 5 100 50
   8       1 sda1 1000 10 20000 500 2000 20 40000 1500 0 1800 2000 10 0 0 5 100 50
 252       0 vdb 50 0 400 10 0 0 0 0 0 10 10 0 0 0 0
   3       0 hda 7 0 56 3 0 0 0 0 0 3 3
   3       1 hda1 7 56 0 0
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 12 0 96 4 0 0 0 0 0 4 4 0 0 0 0 0 0
 this is not a diskstats line at all, nor are its fields numbers
"""
T1 = """\
   8       0 sda 1200 10 24096 900 2400 20 48192 2700 3 3600 6000 30 0 4096 45 300 250
   8       1 sda1 1200 10 24096 900 2400 20 48192 2700 3 3600 6000 30 0 4096 45 300 250
 252       0 vdb 50 0 400 10 0 0 0 0 0 10 10 0 0 0 0
   3       0 hda 27 0 96 13 0 0 0 0 0 13 13
   7       1 loop1 12 0 96 4 0 0 0 0 0 4 4 0 0 0 0 0 0
"""
PLACES = {"sda1": Placement("sd", "sda"), "hda1": Placement("hd", "hda")}
DT_S = 2.0


def sample(text: str, mono_ns: int | None = None) -> DisksSample:
    return DisksSample(parse_diskstats(text, PLACES), mono_ns)


def view_of(prev: str, curr: str) -> dict[str, DiskView]:
    out: dict[str, DiskView] = {}
    for disk in derive_disks(sample(prev), sample(curr), DT_S).disks:
        out[disk.name] = disk
        out.update((p.name, p) for p in disk.partitions)
    return out


# --- parsing -----------------------------------------------------------------


def test_parse_twenty_field_line_has_discards_and_flushes() -> None:
    sda = parse_diskstats(T0)[0]
    assert sda == DiskCounters(
        name="sda", major=8, minor=0,
        read_ios=1000, read_merges=10, read_sectors=20000, read_time_ms=500,
        write_ios=2000, write_merges=20, write_sectors=40000, write_time_ms=1500,
        in_flight=0, io_time_ms=1800, weighted_time_ms=2000,
        discard_ios=10, discard_merges=0, discard_sectors=0, discard_time_ms=5,
        flush_ios=100, flush_time_ms=50, kind="sd",
    )


def test_parse_eighteen_field_line_has_no_flush_fields() -> None:
    vdb = next(d for d in parse_diskstats(T0) if d.name == "vdb")
    assert (vdb.discard_ios, vdb.discard_time_ms) == (0, 0)
    assert (vdb.flush_ios, vdb.flush_time_ms) == (None, None)


def test_parse_fourteen_field_line_has_neither() -> None:
    hda = next(d for d in parse_diskstats(T0) if d.name == "hda")
    assert (hda.read_ios, hda.read_sectors, hda.weighted_time_ms) == (7, 56, 3)
    assert (hda.discard_ios, hda.discard_merges, hda.discard_sectors, hda.discard_time_ms) == (None,) * 4
    assert (hda.flush_ios, hda.flush_time_ms) == (None, None)


def test_parse_skips_seven_field_and_garbage_lines() -> None:
    assert [d.name for d in parse_diskstats(T0)] == ["sda", "sda1", "vdb", "hda", "loop0", "loop1"]
    assert parse_diskstats("") == ()
    assert parse_diskstats("8 0 sda 1 2 3 x 5 6 7 8 9 10 11\n") == ()


def test_parse_takes_placements_and_guesses_the_rest_from_the_name() -> None:
    devices = {d.name: d for d in parse_diskstats(T0, PLACES)}
    assert (devices["sda1"].parent, devices["sda1"].kind) == ("sda", "sd")
    assert (devices["sda"].parent, devices["loop0"].kind, devices["vdb"].kind) == (None, "loop", "vd")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("loop3", "loop"), ("ram0", "ram"), ("zram0", "zram"), ("dm-2", "dm"), ("md127", "md"),
     ("nvme0n1", "nvme"), ("sdb", "sd"), ("vda", "vd"), ("xvda", "xvd"), ("mmcblk0", "mmc"),
     ("sr0", "sr"), ("nbd3", "nbd"), ("weird0", "other")],
)
def test_kind_of(name: str, kind: str) -> None:
    assert kind_of(name) == kind


def test_read_placements_from_a_sysfs_tree(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    for disk, parts in (("sda", ["sda1", "sda2"]), ("cciss!c0d0", ["cciss!c0d0p1"]), ("dm-0", [])):
        device = sys / "devices" / "x" / "block" / disk
        device.mkdir(parents=True)
        (sys / "block").mkdir(exist_ok=True)
        (sys / "block" / disk).symlink_to(device)
        (sys / "class" / "block").mkdir(parents=True, exist_ok=True)
        (sys / "class" / "block" / disk).symlink_to(device)
        for part in parts:
            (device / part).mkdir()
            (device / part / "partition").write_text("1\n")
            (sys / "class" / "block" / part).symlink_to(device / part)
    (sys / "devices" / "x" / "block" / "dm-0" / "dm").mkdir()
    (sys / "devices" / "x" / "block" / "dm-0" / "dm" / "name").write_text("vg0-root\n")
    names = ["sda", "sda1", "sda2", "cciss/c0d0", "cciss/c0d0p1", "dm-0", "gone9"]
    assert read_placements(names, str(sys)) == {
        "sda": Placement("sd"),
        "sda1": Placement("sd", "sda"),
        "sda2": Placement("sd", "sda"),
        "cciss/c0d0": Placement("other"),
        "cciss/c0d0p1": Placement("other", "cciss/c0d0"),
        "dm-0": Placement("dm", None, "vg0-root"),
        "gone9": Placement("other"),
    }


# --- derive: iostat -xz's formulas ------------------------------------------


def test_derive_matches_iostat_formulas_by_hand() -> None:
    sda = view_of(T0, T1)["sda"]
    r = sda.rates
    assert r is not None
    # 200 reads, 4096 sectors (2 MiB), 400 ms reading, over 2 s
    assert (r.reads_per_s, r.read_mib_per_s, r.read_await_ms) == (100.0, 1.0, 2.0)
    # 400 writes, 8192 sectors (4 MiB), 1200 ms writing
    assert (r.writes_per_s, r.write_mib_per_s, r.write_await_ms) == (200.0, 2.0, 3.0)
    # io_ticks +1800 ms of 2000; weighted +4000 ms: two requests on average
    assert (r.util_percent, r.queue_size) == (90.0, 2.0)
    # 20 discards of 4096 sectors in 40 ms; 200 flushes in 200 ms
    assert (r.discards_per_s, r.discard_mib_per_s, r.discard_await_ms) == (10.0, 1.0, 2.0)
    assert (r.flushes_per_s, r.flush_await_ms) == (100.0, 1.0)
    assert sda.in_flight == 3
    assert sda.saturated and not sda.idle


def test_partitions_fold_under_their_disk() -> None:
    disks = derive_disks(sample(T0), sample(T1), DT_S).disks
    assert [d.name for d in disks] == ["sda", "vdb", "hda", "loop1"]
    sda = disks[0]
    assert [p.name for p in sda.partitions] == ["sda1"]
    assert sda.partitions[0].parent == "sda" and sda.partitions[0].rates == sda.rates


def test_idle_devices_are_marked_as_iostat_z_hides_them() -> None:
    views = view_of(T0, T1)
    assert views["vdb"].idle and views["loop1"].idle and not views["hda"].idle
    assert [d.name for d in derive_disks(sample(T0), sample(T1), DT_S).active] == ["sda", "hda"]


def test_no_requests_gives_no_await_rather_than_zero() -> None:
    vdb = view_of(T0, T1)["vdb"].rates
    assert vdb is not None
    assert (vdb.reads_per_s, vdb.read_await_ms, vdb.write_await_ms, vdb.discard_await_ms) == (0.0, None, None, None)
    assert vdb.flushes_per_s is None  # an 18-field line: the kernel does not count flushes


def test_fourteen_field_device_has_no_discard_or_flush_rates() -> None:
    hda = view_of(T0, T1)["hda"].rates
    assert hda is not None
    assert (hda.reads_per_s, hda.read_mib_per_s, hda.read_await_ms) == (10.0, 40 * 512 / MIB / 2, 0.5)
    assert (hda.discards_per_s, hda.discard_mib_per_s, hda.flushes_per_s) == (None, None, None)


def test_a_vanished_device_goes_away() -> None:
    views = view_of(T0, T1)
    assert "loop0" not in views  # detached between the samples
    assert "hda1" not in views  # its 7-field line was never read


def test_a_new_device_has_no_rate_yet() -> None:
    views = view_of(T1, T0)  # loop0 is only in the later sample
    assert views["loop0"].rates is None
    assert views["loop0"].idle  # and it never did I/O


def test_counters_that_go_back_give_no_rate() -> None:
    # sda re-created: its counts went back; it did I/O, so it is shown, with "-"
    views = view_of(T1, T0)
    assert views["sda"].rates is None
    assert not views["sda"].idle and not views["sda"].saturated


def test_another_device_number_under_the_same_name_gives_no_rate() -> None:
    prev = sample(T0)
    moved = tuple(replace(d, minor=9) if d.name == "vdb" else d for d in prev.devices)
    disks = derive_disks(prev, DisksSample(moved), DT_S).disks
    assert next(d for d in disks if d.name == "vdb").rates is None


def test_ms_counters_wrap_at_two_to_the_32() -> None:
    prev = parse_diskstats(f"8 0 sda 10 0 80 20 0 0 0 0 1 {MS_WRAP - 500} {MS_WRAP - 1000}\n")
    curr = parse_diskstats("8 0 sda 20 0 160 40 0 0 0 0 1 500 3000\n")
    r = derive_disks(DisksSample(prev), DisksSample(curr), 1.0).disks[0].rates
    assert r is not None
    assert (r.util_percent, r.queue_size, r.read_await_ms) == (100.0, 4.0, 2.0)


def test_high_util_without_a_queue_is_not_saturated() -> None:
    prev = parse_diskstats("259 0 nvme0n1 0 0 0 0 0 0 0 0 0 0 0\n")
    busy = parse_diskstats("259 0 nvme0n1 1000 0 8000 900 0 0 0 0 1 1000 900\n")
    queued = parse_diskstats("259 0 nvme0n1 1000 0 8000 900 0 0 0 0 1 1000 4000\n")
    view = derive_disks(DisksSample(prev), DisksSample(busy), 1.0).disks[0]
    assert view.rates is not None and view.rates.util_percent == 100.0 and not view.saturated
    assert derive_disks(DisksSample(prev), DisksSample(queued), 1.0).disks[0].saturated


# --- the probe on a fake /proc and /sys --------------------------------------


def test_probe_reads_diskstats_and_asks_sysfs_again_only_when_devices_change(tmp_path: Path) -> None:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    (sys / "block" / "sda" / "sda1").mkdir(parents=True)
    (sys / "block" / "sda" / "sda1" / "partition").write_text("1\n")
    (sys / "class" / "block").mkdir(parents=True)
    (sys / "class" / "block" / "sda1").symlink_to(sys / "block" / "sda" / "sda1")
    (proc / "diskstats").write_text(T0)
    probe = DisksProbe(str(proc), str(sys))
    probe.start()
    first = probe.sample()
    assert first.mono_ns is not None
    assert {d.name: d.parent for d in first.devices}["sda1"] == "sda"
    # sysfs is not asked while the same devices are there
    (sys / "class" / "block" / "sda1").unlink()
    assert {d.name: d.parent for d in probe.sample().devices}["sda1"] == "sda"
    (proc / "diskstats").write_text(T1)
    assert {d.name: d.parent for d in probe.sample().devices}["sda1"] is None


def test_probe_without_diskstats_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable, match="diskstats"):
        DisksProbe(str(tmp_path)).start()


# --- real I/O on a loop device (root) ----------------------------------------


def rates_of(name: str, prev: DisksSample, curr: DisksSample) -> tuple[DiskView, float]:
    assert prev.mono_ns is not None and curr.mono_ns is not None
    dt_s = (curr.mono_ns - prev.mono_ns) / 1e9
    view = next(d for d in derive_disks(prev, curr, dt_s).disks if d.name == name)
    return view, dt_s


def test_n_mib_written_with_o_direct_show_on_the_loop_device(tmp_path: Path) -> None:
    n_mib = 16
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        probe = DisksProbe()
        probe.start()
        before = probe.sample()
        assert helper.call(f"write {fs.mount / 'data'} {n_mib} 1024") == [str(n_mib * MIB)]
        after = probe.sample()
    view, dt_s = rates_of(fs.name, before, after)
    assert view.kind == "loop" and view.parent is None and not view.idle
    assert view.rates is not None
    written_mib = view.rates.write_mib_per_s * dt_s
    assert written_mib == pytest.approx(n_mib, rel=0.02)


def test_figures_match_iostat_over_the_same_window(tmp_path: Path) -> None:
    require_root(iostat="sysstat", stdbuf="coreutils")
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        data = fs.mount / "data"
        helper.call(f"write {data} 16 1024")
        probe = DisksProbe()
        probe.start()
        # A steady load through the whole window, so that the few ms between
        # iostat's reading and the probe's cannot move a rate.
        helper.send(f"mixed {data} 16 64 3.4")
        assert helper.line() == "started"
        iostat = subprocess.Popen(
            ["stdbuf", "-oL", "iostat", "-dxz", "-m", fs.name, "1", "3"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "LC_ALL": "C", "S_COLORS": "never"},
        )
        assert iostat.stdout is not None
        samples: list[DisksSample] = []
        reports: list[dict[str, float]] = []
        columns: list[str] = []
        for line in iostat.stdout:
            fields = line.split()
            if fields[:1] == ["Device"]:
                # iostat prints a report's header after it has read the
                # counters: the probe reads its own now.
                samples.append(probe.sample())
                columns = fields[1:]
                reports.append({})
            elif fields[:1] == [fs.name] and reports:
                reports[-1] = dict(zip(columns, map(float, fields[1:])))
        assert iostat.wait() == 0
        helper.line()
    assert len(samples) == 3
    # The first report is since boot; the next two are 1 s intervals.
    for i in (1, 2):
        view, _ = rates_of(fs.name, samples[i - 1], samples[i])
        r, theirs = view.rates, reports[i]
        assert r is not None and theirs, f"interval {i}: no I/O seen"
        ours = {
            "r/s": r.reads_per_s, "w/s": r.writes_per_s, "rMB/s": r.read_mib_per_s, "wMB/s": r.write_mib_per_s,
            "r_await": r.read_await_ms, "w_await": r.write_await_ms, "aqu-sz": r.queue_size, "%util": r.util_percent,
        }
        for column, value in ours.items():
            assert value is not None
            expected = theirs[column]
            assert abs(value - expected) <= max(0.05 * abs(expected), 0.5), (i, column, value, expected)


def test_a_real_partition_folds_under_its_loop_device(tmp_path: Path) -> None:
    require_root(addpart="util-linux")
    image = tmp_path / "parted.img"
    with open(image, "wb") as f:
        f.truncate(8 * MIB)
    device = ""
    try:
        device = subprocess.run(
            ["losetup", "-f", "--show", "-P", str(image)], check=True, capture_output=True, text=True,
        ).stdout.strip()
        name = os.path.basename(device)
        # addpart tells the kernel of a partition directly (BLKPG), so the
        # test needs no partition table parser in the kernel (the CI VM's
        # has none). The partition goes with the device when it is detached.
        subprocess.run(["addpart", device, "1", "2048", str(8 * MIB // 512 - 2048)], check=True)
        probe = DisksProbe()
        probe.start()
        before = probe.sample()
        # Read the partition once so that it and its disk are not idle.
        with open(f"{device}p1", "rb", buffering=0) as part:
            part.read(4096)
        after = probe.sample()
    finally:
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
    view, _ = rates_of(name, before, after)
    assert [p.name for p in view.partitions] == [f"{name}p1"]
    assert view.partitions[0].kind == "loop" and not view.idle and not view.partitions[0].idle


def test_a_loop_device_removed_mid_run_just_goes_away() -> None:
    probe = DisksProbe()
    probe.start()
    with new_loop_device() as name:
        before = probe.sample()
        added = next(d for d in before.devices if d.name == name)
        assert (added.kind, added.parent) == ("loop", None)
        remove_loop_device(name)
        after = probe.sample()
    assert name not in {d.name for d in after.devices}
    assert name not in {d.name for d in derive_disks(before, after, 1.0).disks}


def test_the_probe_needs_no_privilege() -> None:
    script = (
        "from probes.sources.disks import DisksProbe; p = DisksProbe(); p.start();"
        "print(len(p.sample().devices))"
    )
    # As root, run it as nobody.
    nobody = 65534 if os.geteuid() == 0 else None
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={"PYTHONPATH": str(REPO)}, check=True,
        capture_output=True, text=True, user=nobody, group=nobody,
    ).stdout
    assert int(out) == len(DisksProbe().sample().devices) > 0
