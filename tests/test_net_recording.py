"""`orac record` of the net, tcp and cgroups probes during a known workload, then `orac dump` of its tables."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cgroups import QUOTA_US
from support.cli import orac
from support.netns import HEADER_BYTES, PEER, VethToHost, kill_all, require_root_and, veth_to_host, wait_ready

from probes.sources.cgroups import CpuHierarchy

MIB = 1 << 20
TRANSFER_BYTES = 16 * MIB
PACE_BYTES_PER_S = 8 * MIB
RECORD_S = 4
INTERVAL_S = 0.5
# Rates times intervals add up to the bytes counted between the first and
# last frame; the transfer starts and ends inside the recording, so the
# few ms each probe reads after its frame's time carry no traffic.
BYTES_TOLERANCE = 0.02


@pytest.fixture
def veth() -> Iterator[VethToHost]:
    require_root_and("ip")
    with veth_to_host("rec") as link:
        yield link


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_recording_during_a_veth_transfer_and_a_throttled_spinner_dumps_its_tables(
    tmp_path: Path, veth: VethToHost, v1_cpu_cgroup: tuple[CpuHierarchy, str],
) -> None:
    hierarchy, cgroup = v1_cpu_cgroup
    path = tmp_path / "net.orac"
    listener = veth.ns.peer("listen", veth.ns_addr)
    recorder = sender = spinner = None
    try:
        port = wait_ready(listener)
        spinner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        for root in {hierarchy.root, hierarchy.usage_root} - {None}:
            Path(str(root), cgroup.lstrip("/"), "cgroup.procs").write_text(f"{spinner.pid}\n")
        recorder = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "record", "-o", str(path), "--duration", str(RECORD_S),
             "--interval", str(INTERVAL_S), "--probes", "net,tcp,cgroups", "--quiet"],
            cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # the recording's first frames see no traffic, so the transfer lies inside it
        while not path.exists() and recorder.poll() is None:
            time.sleep(0.1)
        time.sleep(0.6)
        sender = subprocess.Popen(
            [sys.executable, str(PEER), "send", veth.ns_addr, str(port), str(TRANSFER_BYTES), str(PACE_BYTES_PER_S)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        sent, err = sender.communicate(timeout=20)
        _, record_err = recorder.communicate(timeout=RECORD_S + 20)
    finally:
        kill_all(listener, sender, recorder, spinner)
    assert sender.returncode == 0, err
    assert recorder.returncode == 0, record_err
    assert sent.startswith(f"sent {TRANSFER_BYTES} ")

    frames = [json.loads(line) for line in orac("dump", str(path)).stdout.splitlines()]
    assert len(frames) >= RECORD_S / INTERVAL_S - 1
    # the transfer's bytes over all intervals, on the host's end of the pair
    sent_bytes = packets = 0.0
    for frame in frames:
        row = next(i for i in frame["net"]["interfaces"] if i["name"] == veth.host_if)
        sent_bytes += row["tx_bytes_per_s"] * frame["interval_s"]
        packets += row["tx_packets_per_s"] * frame["interval_s"]
    assert abs(sent_bytes - packets * HEADER_BYTES - TRANSFER_BYTES) <= BYTES_TOLERANCE * TRANSFER_BYTES
    # the connection the transfer opened, among whatever else this namespace did
    # (a rate covers the time between the probe's own reads, interval_s the
    # frame's: their product is a count to within a fraction of a percent)
    assert sum(f["tcp"]["active_opens_per_s"] * f["interval_s"] for f in frames) >= 0.99

    interfaces = csv_rows(orac("dump", str(path), "--format", "csv", "--table", "interfaces").stdout)
    ours = [r for r in interfaces if r["name"] == veth.host_if]
    assert len(ours) == len(frames)
    assert ours[0]["speed_mbps"] == "10000" and ours[0]["operstate"] == "up"
    busiest = max(float(r["tx_bytes_per_s"]) for r in ours)
    assert busiest == pytest.approx(PACE_BYTES_PER_S, rel=0.25)

    tcp = csv_rows(orac("dump", str(path), "--format", "csv", "--table", "tcp").stdout)
    assert len(tcp) == len(frames)
    assert all(r["states.LISTEN"] != "" and int(r["states.LISTEN"]) >= 0 for r in tcp)

    cgroups = csv_rows(orac("dump", str(path), "--format", "csv", "--table", "cgroups").stdout)
    mine = [r for r in cgroups if r["path"] == cgroup]
    assert len(mine) == len(frames)
    assert {r["version"] for r in mine} == {"1"}
    assert all(float(r["quota_cpus"]) == pytest.approx(QUOTA_US / 100_000) for r in mine)
    # held at its quota the whole time: throttled in nearly every period
    assert all(float(r["throttled_periods_percent"]) > 80 for r in mine[1:])
    if hierarchy.usage_root is not None:
        usage = sum(float(r["usage_cpus"]) for r in mine[1:]) / len(mine[1:])
        assert usage == pytest.approx(0.2, abs=0.03)
