"""The "blockio" probe: its maps' parsing, its derive, and real block I/O on a loop device (root)."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ebpf import lost_reasons_in, start
from support.loop_device import MIB, direct_io, loop_filesystem, require_root
from support.synthetic import S

from probes.model.frame import Frame
from probes.registry import spec_named
from probes.sources.block_io import (
    BLOCK_IO,
    HIST_SLOTS,
    LOST_REASONS,
    MINOR_BITS,
    BlockIoCounts,
    BlockIoProbe,
    BlockIoSample,
    DeviceBlockIo,
    ProcessBlockIo,
    block_io_program,
    derive_block_io,
    device_name,
    parse_stats,
)
from probes.store.dump import dump
from probes.store.reader import Recording
from probes.store.writer import Recorder

REPO = Path(__file__).resolve().parent.parent
NO_LOSS = dict.fromkeys(LOST_REASONS, 0)


def hist(**slots: int) -> tuple[int, ...]:
    out = [0] * HIST_SLOTS
    for slot, n in slots.items():
        out[int(slot.removeprefix("s"))] = n
    return tuple(out)


# --- without root ------------------------------------------------------------


def test_program_includes_the_shared_header_and_its_options() -> None:
    program = block_io_program()
    assert "TRACEPOINT_PROBE(block, block_rq_issue)" in program.text
    assert "TRACEPOINT_PROBE(block, block_rq_complete)" in program.text
    assert "BPF_PERCPU_ARRAY(lost, u64, LOST_REASONS)" in program.text
    assert f"-DHIST_SLOTS={HIST_SLOTS}" in program.cflags
    # the enum in the C source names its reasons in LOST_REASONS' order
    assert lost_reasons_in(program.text) == LOST_REASONS


def test_registered_as_a_system_wide_probe() -> None:
    assert spec_named("blockio") is BLOCK_IO and BLOCK_IO.make is BlockIoProbe


def test_parse_stats_sums_every_cpus_copy() -> None:
    key = struct.Struct("=III")
    value = struct.Struct(f"=QQQ{HIST_SLOTS}I")
    dev = 7 << MINOR_BITS | 3
    h0 = [0] * HIST_SLOTS
    h0[16] = 2
    h1 = [0] * HIST_SLOTS
    h1[17] = 1
    keys = key.pack(dev, 1, 5) + key.pack(9, 0, 5)
    # two CPUs' copies per entry; the second entry saw no request
    values = (value.pack(2, 8192, 200_000, *h0) + value.pack(1, 4096, 150_000, *h1)
              + value.pack(0, 0, 0, *[0] * HIST_SLOTS) * 2)
    assert parse_stats(keys, values, 2) == [(dev, BlockIoCounts("write", 3, 12288, 350_000, hist(s16=2, s17=1)))]


def test_device_name_from_sysfs_and_a_gone_device(tmp_path: Path) -> None:
    (tmp_path / "dev" / "block").mkdir(parents=True)
    (tmp_path / "dev" / "block" / "7:3").symlink_to("../../devices/virtual/block/loop3")
    (tmp_path / "dev" / "block" / "104:0").symlink_to("../../devices/x/block/cciss!c0d0")
    assert device_name(7, 3, str(tmp_path)) == "loop3"
    assert device_name(104, 0, str(tmp_path)) == "cciss/c0d0"
    assert device_name(8, 0, str(tmp_path)) == "8:0"


def test_derive_sums_operations_and_ranks_processes() -> None:
    write = BlockIoCounts("write", 100, 100 * 65536, 100 * 80_000, hist(s16=90, s17=10))
    read = BlockIoCounts("read", 50, 50 * 4096, 50 * 20_000, hist(s14=50))
    flush = BlockIoCounts("other", 2, 0, 2 * 1_000_000, hist(s19=2))
    curr = BlockIoSample(
        devices=(DeviceBlockIo("vda", 254, 0, read), DeviceBlockIo("loop3", 7, 3, write),
                 DeviceBlockIo("loop3", 7, 3, flush)),
        processes=(ProcessBlockIo(10, read), ProcessBlockIo(20, write), ProcessBlockIo(20, flush)),
        comms={20: "dd"},
        lost={**NO_LOSS, "complete_without_issue": 4},
    )
    view = derive_block_io(curr, curr, 2.0)
    assert [d.device for d in view.devices] == ["loop3", "vda"]
    loop3 = view.device("loop3")
    assert loop3 is not None
    r = loop3.rate
    assert (r.requests_per_s, r.write_requests_per_s, r.read_requests_per_s) == (51.0, 50.0, 0.0)
    assert (r.write_bytes_per_s, r.read_bytes_per_s) == (50 * 65536, 0.0)
    assert r.mean_latency_ns == (100 * 80_000 + 2_000_000) / 102
    assert r.p50_latency_bucket is not None and r.p50_latency_bucket.low_ns == 1 << 16
    assert r.p99_latency_bucket is not None and r.p99_latency_bucket.low_ns == 1 << 19
    assert [(p.pid, p.comm) for p in view.processes] == [(20, "dd"), (10, "?")]
    assert view.requests_per_s == 76.0
    assert view.lost["complete_without_issue"] == 4


def test_an_empty_interval_has_no_latency_rather_than_zero() -> None:
    empty = BlockIoSample((), (), {}, dict(NO_LOSS))
    view = derive_block_io(empty, empty, 1.0)
    assert (view.devices, view.processes, view.requests_per_s) == ((), (), 0.0)


def test_unprivileged_it_says_why_it_cannot_run_and_what_to_do() -> None:
    script = (
        "from probes.contract import ProbeUnavailable\n"
        "from probes.sources.block_io import BlockIoProbe\n"
        "try:\n"
        "    BlockIoProbe().start()\n"
        "except ProbeUnavailable as e:\n"
        "    print(e.reason); print(e.remedy)\n"
        "else:\n"
        "    print('started')\n"
    )
    if os.geteuid() != 0:
        pytest.skip("needs root to run a check as nobody (and this user cannot run eBPF anyway)")
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={"PYTHONPATH": str(REPO)}, check=True,
        capture_output=True, text=True, user=65534, group=65534,
    ).stdout.splitlines()
    # bcc missing is the first thing said where it is; otherwise privileges.
    if "bcc" in out[0]:
        pytest.skip(f"bcc is not installed here: {out[0]}")
    assert out == ["eBPF needs root, or CAP_BPF and CAP_PERFMON", "run `sudo orac`"]


# --- real block I/O on a loop device (root) ----------------------------------


@pytest.fixture
def probe() -> Iterator[BlockIoProbe]:
    require_root()
    p = start(BlockIoProbe())
    yield p
    p.stop()


def test_n_mib_of_direct_writes_are_the_helpers_requests_and_bytes(tmp_path: Path, probe: BlockIoProbe) -> None:
    n_mib, block_kib = 16, 256
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        before = probe.sample()
        assert helper.call(f"write {fs.mount / 'data'} {n_mib} {block_kib}") == [str(n_mib * MIB)]
        after = probe.sample()
    view = derive_block_io(before, after, 1.0)
    mine = view.process(helper.pid)
    assert mine is not None and mine.comm.startswith("python")
    # dt_s = 1: the rates are the interval's counts
    assert mine.rate.write_bytes_per_s == pytest.approx(n_mib * MIB, rel=0.02)
    assert mine.rate.write_requests_per_s == pytest.approx(n_mib * 1024 / block_kib, rel=0.02)
    loop = view.device(fs.name)
    assert loop is not None and (loop.major, loop.minor) == (7, int(fs.name.removeprefix("loop")))
    assert loop.rate.write_bytes_per_s == pytest.approx(n_mib * MIB, rel=0.02)
    assert after.lost["inflight_map_full"] == after.lost["device_map_full"] == 0


@pytest.mark.parametrize("op", ["write", "read"])
def test_latency_histogram_lies_where_the_helper_times_its_own_requests(
    tmp_path: Path, probe: BlockIoProbe, op: str
) -> None:
    count, block_kib = 400, 64
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        data = fs.mount / "data"
        helper.call(f"write {data} {count * block_kib // 1024 + 1} 1024")
        before = probe.sample()
        answer = helper.call(f"timed {op} {data} {count} {block_kib}")
        after = probe.sample()
    times_ns = [int(t) for t in answer[1:]]
    mine = derive_block_io(before, after, 1.0).process(helper.pid)
    assert mine is not None and mine.rate.requests_per_s == count
    h = mine.rate.latency_hist
    # Each request is issued and completed inside its syscall, so the device
    # time is the syscall's less its own path (some 10 to 30 us in Python):
    # the helper's median lies in the bucket of the probe's median or the next.
    helper_slot = int(statistics.median(times_ns)).bit_length() - 1
    p50 = mine.rate.p50_latency_bucket
    assert p50 is not None
    assert helper_slot - 1 <= p50.low_ns.bit_length() - 1 <= helper_slot, (helper_slot, p50, h)
    # Most of the mass is there too, and no request took longer than its syscall.
    assert sum(h[helper_slot - 1 : helper_slot + 1]) >= 0.5 * count, (helper_slot, h)
    assert mine.rate.mean_latency_ns is not None and mine.rate.mean_latency_ns * count <= sum(times_ns)


# --- recorded, replayed and dumped -------------------------------------------


def test_recorded_and_dumped_as_csv_and_json(tmp_path: Path) -> None:
    path = tmp_path / "blockio.orac"
    write = BlockIoCounts("write", 100, 100 * 65536, 100 * 80_000, hist(s16=100))
    with Recorder(path, interval_s=1.0, probes=["blockio"]) as recorder:
        for t in range(3):
            sample = BlockIoSample(
                (DeviceBlockIo("loop3", 7, 3, write),), (ProcessBlockIo(20, write),), {20: "dd"},
                {**NO_LOSS, "complete_without_issue": t}, mono_ns=(1000 + t) * S,
            )
            recorder.append(Frame(wall_ns=(1_764_000_000 + t) * S, mono_ns=(1000 + t) * S,
                                  samples={"blockio": sample}, unavailable={}))
    frames = [frame for _, frame in Recording(path).iter_frames(range(3))]
    assert frames[2].samples["blockio"].processes == (ProcessBlockIo(20, write),)

    out = io.StringIO()
    assert dump(Recording(path), "csv", out=out, table="blockio") == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["kind"], r["device"], r["pid"], r["comm"]) for r in rows[:2]] == [
        ("device", "loop3", "", ""), ("process", "", "20", "dd"),
    ]
    assert float(rows[0]["write_bytes_per_s"]) == 100 * 65536
    assert float(rows[1]["mean_latency_ns"]) == 80_000
    assert int(rows[1]["p99_latency_bucket"]) == 1 << 16

    out = io.StringIO()
    dump(Recording(path), "json", out=out)
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["blockio"]["processes"][0]["comm"] == "dd"
    assert first["blockio"]["lost"]["complete_without_issue"] == 1


def test_per_process_bytes_match_pidstat_over_the_same_window(tmp_path: Path, probe: BlockIoProbe) -> None:
    require_root(pidstat="sysstat", stdbuf="coreutils")
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        data = fs.mount / "data"
        helper.call(f"write {data} 16 1024")
        # A steady load through the window, so the few ms between pidstat's
        # reading and the probe's cannot move a rate.
        helper.send(f"mixed {data} 16 64 4.4")
        assert helper.line() == "started"
        pidstat = subprocess.Popen(
            ["stdbuf", "-oL", "pidstat", "-d", "-p", str(helper.pid), "1", "3"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "LC_ALL": "C", "S_COLORS": "never"},
        )
        assert pidstat.stdout is not None
        samples: list[BlockIoSample] = []
        reports: list[dict[str, float]] = []
        columns: list[str] = []
        for line in pidstat.stdout:
            fields = line.split()
            if "kB_wr/s" in fields:
                columns = fields[1:]
            elif (columns and fields[0] != "Average:" and len(fields) == len(columns) + 1
                  and fields[2:3] == [str(helper.pid)]):
                # pidstat prints a report's line once it has read /proc: the
                # probe takes its sample now.
                samples.append(probe.sample())
                reports.append(dict(zip(columns[2:-1], map(float, fields[3:-1]))))
        assert pidstat.wait() == 0
        helper.line()
    assert len(samples) == len(reports) == 3
    # Report i covers the second between report i-1 and report i.
    for i in (1, 2):
        prev, curr = samples[i - 1], samples[i]
        assert prev.mono_ns is not None and curr.mono_ns is not None
        mine = derive_block_io(prev, curr, (curr.mono_ns - prev.mono_ns) / 1e9).process(helper.pid)
        assert mine is not None, f"interval {i}: no request of the helper"
        theirs = reports[i]
        for column, value in (("kB_rd/s", mine.rate.read_bytes_per_s / 1024),
                              ("kB_wr/s", mine.rate.write_bytes_per_s / 1024)):
            assert value == pytest.approx(theirs[column], rel=0.05), (i, column, value, theirs)
