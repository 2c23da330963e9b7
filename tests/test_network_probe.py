"""The "net" probe: /proc/net/dev and sysfs parsing on fixtures, and a real transfer over a veth pair checked against sar."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.netns import (
    HEADER_BYTES,
    PEER,
    VethToHost,
    kill_all,
    require_root_and,
    veth_to_host,
    wait_ready,
)

from probes.contract import ProbeUnavailable
from probes.sources.network import (
    BYTES_PER_MIB,
    InterfaceCounters,
    NetworkProbe,
    NetworkSample,
    derive_network,
    ifutil_percent,
    interface_view,
    parse_duplex,
    parse_net_dev,
    parse_speed_mbps,
)

FIXTURES = Path(__file__).parent / "fixtures" / "net"
SYS_CLASS_NET = str(FIXTURES / "sys" / "class" / "net")
MIB = 1 << 20


def fixture_sample(t: str, mono_ns: int) -> NetworkSample:
    sample = NetworkProbe(proc=str(FIXTURES / t), sys_class_net=SYS_CLASS_NET).sample()
    return replace(sample, mono_ns=mono_ns)


# --- parsing ---------------------------------------------------------------


def test_parse_net_dev_fixture() -> None:
    interfaces = {i.name: i for i in parse_net_dev((FIXTURES / "t0" / "net" / "dev").read_text())}
    assert list(interfaces) == ["lo", "eth0", "veth1", "docker0", "gone0"]
    # "eth0:8589934592": a large counter follows the colon without a space
    assert interfaces["eth0"] == InterfaceCounters(
        "eth0", 8589934592, 9000000, 10, 20, 3, 4, 0, 100, 1073741824, 800000, 1, 2, 0, 0, 0, 0,
    )
    assert interfaces["docker0"].rx_bytes == 0


@pytest.mark.parametrize(
    "line",
    [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes",
        "  eth9: 1 2 3",  # cut short
        "  eth9: 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16",  # not numbers
        "     : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",  # no name
        "",
    ],
)
def test_parse_net_dev_skips_headers_and_malformed_lines(line: str) -> None:
    assert parse_net_dev(line + "\n") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10000\n", 10000), ("1000", 1000), ("-1\n", None), ("0\n", None), ("", None), ("x\n", None), (None, None)],
)
def test_parse_speed_mbps(text: str | None, expected: int | None) -> None:
    # -1: the driver does not know (virtio, a link that is down); a missing
    # file or EINVAL (lo) reads as None too
    assert parse_speed_mbps(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("full\n", "full"), ("half\n", "half"), ("unknown\n", None), (None, None)])
def test_parse_duplex(text: str | None, expected: str | None) -> None:
    assert parse_duplex(text) == expected


def test_probe_reads_link_attributes_from_sysfs() -> None:
    s = {i.name: i for i in fixture_sample("t0", 0).interfaces}
    assert (s["eth0"].ifindex, s["eth0"].operstate, s["eth0"].speed_mbps, s["eth0"].duplex) == (2, "up", 1000, "full")
    # lo has no speed or duplex to read; docker0 reports -1 and "unknown"
    assert (s["lo"].operstate, s["lo"].speed_mbps, s["lo"].duplex) == ("unknown", None, None)
    assert (s["docker0"].operstate, s["docker0"].speed_mbps, s["docker0"].duplex) == ("down", None, None)
    # no sysfs directory at all: every attribute unknown, counters still read
    assert (s["gone0"].ifindex, s["gone0"].operstate, s["gone0"].speed_mbps) == (None, None, None)
    assert s["gone0"].rx_bytes == 1000


def test_probe_without_sysfs_leaves_link_attributes_unknown() -> None:
    sample = NetworkProbe(proc=str(FIXTURES / "t0"), sys_class_net=None).sample()
    assert all(i.operstate is None and i.speed_mbps is None for i in sample.interfaces)


def test_probe_on_real_proc_needs_no_privilege() -> None:
    probe = NetworkProbe()
    probe.start()
    lo = next(i for i in probe.sample().interfaces if i.name == "lo")
    assert lo.operstate is not None and lo.ifindex is not None


def test_start_without_net_dev_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable) as info:
        NetworkProbe(proc=str(tmp_path)).start()
    assert "net/dev" in info.value.reason and info.value.remedy


# --- derive ----------------------------------------------------------------


def test_derive_rates_over_two_seconds() -> None:
    view = derive_network(fixture_sample("t0", 0), fixture_sample("t1", 2_000_000_000), 2.0)
    eth0 = next(i for i in view.interfaces if i.name == "eth0")
    # 120 MiB received and 20 MiB sent in 2 s
    assert eth0.rx_bytes_per_s == 60 * MIB
    assert eth0.rx_mib_per_s == 60.0
    assert eth0.tx_mib_per_s == 10.0
    assert (eth0.rx_packets_per_s, eth0.tx_packets_per_s) == (50_000.0, 7_500.0)
    assert (eth0.rx_errors_per_s, eth0.tx_errors_per_s) == (2.0, 0.0)
    assert (eth0.rx_drops_per_s, eth0.tx_drops_per_s) == (5.0, 2.0)
    assert (eth0.rx_fifo_errors_per_s, eth0.tx_fifo_errors_per_s) == (1.0, 0.0)
    # sar: full duplex, max(rx, tx) bytes/s * 800 / (1000 * 10**6)
    assert eth0.ifutil_percent == pytest.approx(60 * MIB * 800 / 1e9)
    assert not eth0.idle and not eth0.down


def test_derive_flags_idle_and_down_interfaces() -> None:
    view = {i.name: i for i in derive_network(fixture_sample("t0", 0), fixture_sample("t1", 1), 2.0).interfaces}
    assert view["lo"].idle and not view["lo"].down  # "unknown" operstate is not down
    assert view["docker0"].idle and view["docker0"].down
    assert view["lo"].ifutil_percent is None  # no speed: sar's 0.00 would be a fake zero


def test_vanished_interface_goes_new_one_has_no_rate_yet() -> None:
    view = {i.name: i for i in derive_network(fixture_sample("t0", 0), fixture_sample("t1", 1), 2.0).interfaces}
    assert "gone0" not in view
    assert view["new0"].rx_bytes_per_s is None and view["new0"].rx_packets_per_s is None
    assert not view["new0"].idle


def test_counters_that_go_backwards_give_no_rate() -> None:
    # veth1 was deleted and made again between t0 and t1: its counters restarted
    view = {i.name: i for i in derive_network(fixture_sample("t0", 0), fixture_sample("t1", 1), 2.0).interfaces}
    veth1 = view["veth1"]
    assert veth1.rx_bytes_per_s is None and veth1.tx_bytes_per_s is None
    assert veth1.rx_errors_per_s is None and veth1.ifutil_percent is None
    assert veth1.operstate == "up" and veth1.speed_mbps == 10000


def test_new_interface_under_an_old_name_gives_no_rate_even_when_counters_grew() -> None:
    before = InterfaceCounters("veth9", 100, 1, 0, 0, 0, 0, 0, 0, 100, 1, 0, 0, 0, 0, 0, 0, ifindex=7)
    after = replace(before, rx_bytes=5000, rx_packets=50, ifindex=8)
    assert interface_view(before, after, 1.0).rx_bytes_per_s is None
    assert interface_view(before, replace(after, ifindex=7), 1.0).rx_bytes_per_s == 4900.0


def test_one_error_counter_going_backwards_is_none_alone() -> None:
    before = InterfaceCounters("eth1", 100, 1, 9, 0, 0, 0, 0, 0, 100, 1, 0, 0, 0, 0, 0, 0)
    view = interface_view(before, replace(before, rx_errors=3, rx_bytes=200, rx_packets=2), 1.0)
    assert view.rx_errors_per_s is None
    assert view.rx_bytes_per_s == 100.0


@pytest.mark.parametrize(
    ("rx", "tx", "speed", "duplex", "expected"),
    [
        (1_250_000.0, 250_000.0, 100, "full", 10.0),  # 10 Mb/s of a 100 Mb/s link, the busier way
        (250_000.0, 1_250_000.0, 100, "full", 10.0),
        (1_250_000.0, 250_000.0, 100, "half", 12.0),  # half duplex adds both ways
        (1_250_000.0, 0.0, None, "full", None),
        (1_250_000.0, 0.0, 100, None, None),
    ],
)
def test_ifutil_as_sar_computes_it(rx: float, tx: float, speed: int | None, duplex: str | None, expected: float | None) -> None:
    assert ifutil_percent(rx, tx, speed, duplex) == (pytest.approx(expected) if expected is not None else None)


# --- real: a transfer over a veth pair, against sar ------------------------

TRANSFER_BYTES = 24 * MIB
# paced, so the transfer spans the whole sar window and the two tools'
# windows, a few ms apart at their edges, see the same steady rate
PACE_BYTES_PER_S = 8 * MIB
BYTES_TOLERANCE = 0.02
SAR_TOLERANCE = 0.05


@pytest.fixture
def veth() -> Iterator[VethToHost]:
    require_root_and("ip", "sar")
    with veth_to_host("dev") as link:
        yield link


def sar_average(output: str, interface: str) -> dict[str, float]:
    """The "Average:" row of `sar -n DEV` for one interface, by column name."""
    columns: list[str] = []
    for line in output.splitlines():
        fields = line.split()
        if fields[:1] != ["Average:"]:
            continue
        if "IFACE" in fields:
            columns = fields[1:]
        elif len(fields) > 1 and fields[1] == interface:
            return dict(zip(columns[1:], map(float, fields[2:]), strict=True))
    raise AssertionError(f"no Average line for {interface} in:\n{output}")


def by_name(sample: NetworkSample, name: str) -> InterfaceCounters:
    return next(i for i in sample.interfaces if i.name == name)


def test_transfer_over_veth_counts_n_mib_and_agrees_with_sar(veth: VethToHost) -> None:
    host = NetworkProbe()
    # the namespace's end: its /proc/<pid>/net/dev; sysfs here is this namespace's
    inside = NetworkProbe(proc=veth.ns.proc, sys_class_net=None)
    host.start()
    inside.start()
    env = {**os.environ, "LC_ALL": "C"}
    listener = veth.ns.peer("listen", veth.ns_addr)
    sender: subprocess.Popen[str] | None = None
    sars: list[subprocess.Popen[str]] = []
    try:
        port = wait_ready(listener)
        host0, in0 = host.sample(), inside.sample()
        sender = subprocess.Popen(
            [sys.executable, str(PEER), "send", veth.ns_addr, str(port), str(TRANSFER_BYTES), str(PACE_BYTES_PER_S)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(0.3)
        host_a, in_a = host.sample(), inside.sample()
        sar_cmd = ["sar", "-n", "DEV", "1", "2"]
        sars = [
            subprocess.Popen(sar_cmd, stdout=subprocess.PIPE, text=True, env=env),
            subprocess.Popen(["ip", "netns", "exec", veth.ns.name, *sar_cmd], stdout=subprocess.PIPE, text=True, env=env),
        ]
        host_out, in_out = (s.communicate(timeout=10)[0] for s in sars)
        host_b, in_b = host.sample(), inside.sample()
        sent, err = sender.communicate(timeout=20)
        received, _ = listener.communicate(timeout=5)
        host1, in1 = host.sample(), inside.sample()
    finally:
        kill_all(listener, sender, *sars)
    assert sender.returncode == 0, err
    assert sent.startswith(f"sent {TRANSFER_BYTES} ")
    assert int(received.split()[-1]) == TRANSFER_BYTES

    # N MiB on both ends, over the samples around the whole transfer
    def bytes_over(v_prev: NetworkSample, v_curr: NetworkSample, name: str, way: str) -> tuple[float, float]:
        dt_s = (v_curr.mono_ns - v_prev.mono_ns) / 1e9
        view = next(i for i in derive_network(v_prev, v_curr, dt_s).interfaces if i.name == name)
        rate = view.tx_bytes_per_s if way == "tx" else view.rx_bytes_per_s
        packets = view.tx_packets_per_s if way == "tx" else view.rx_packets_per_s
        assert rate is not None and packets is not None
        return rate * dt_s, packets * dt_s

    for counted, packets in (bytes_over(host0, host1, veth.host_if, "tx"), bytes_over(in0, in1, veth.ns_if, "rx")):
        payload = counted - packets * HEADER_BYTES
        assert abs(payload - TRANSFER_BYTES) <= BYTES_TOLERANCE * TRANSFER_BYTES, (counted, packets)
    # the two ends of a pair see the same packets
    assert by_name(host1, veth.host_if).tx_bytes - by_name(host0, veth.host_if).tx_bytes == (
        by_name(in1, veth.ns_if).rx_bytes - by_name(in0, veth.ns_if).rx_bytes
    )

    # against sar over the same window: kB/s (1024 bytes), packets/s, %ifutil
    dt_host = (host_b.mono_ns - host_a.mono_ns) / 1e9
    ours = next(i for i in derive_network(host_a, host_b, dt_host).interfaces if i.name == veth.host_if)
    sar = sar_average(host_out, veth.host_if)
    assert ours.tx_bytes_per_s is not None and ours.tx_packets_per_s is not None
    assert ours.tx_bytes_per_s / 1024 == pytest.approx(sar["txkB/s"], rel=SAR_TOLERANCE)
    assert ours.tx_packets_per_s == pytest.approx(sar["txpck/s"], rel=SAR_TOLERANCE)
    # veth reports 10000 Mb/s full duplex, so %ifutil is known on this end
    assert ours.ifutil_percent == pytest.approx(sar["%ifutil"], rel=SAR_TOLERANCE, abs=0.01)
    dt_in = (in_b.mono_ns - in_a.mono_ns) / 1e9
    ours_in = next(i for i in derive_network(in_a, in_b, dt_in).interfaces if i.name == veth.ns_if)
    sar_in = sar_average(in_out, veth.ns_if)
    assert ours_in.rx_bytes_per_s is not None
    assert ours_in.rx_bytes_per_s / 1024 == pytest.approx(sar_in["rxkB/s"], rel=SAR_TOLERANCE)
    # paced at 8 MiB/s: sar's rxkB/s is KiB/s, ours in MiB/s is the same / 1024
    assert ours_in.rx_mib_per_s == pytest.approx(PACE_BYTES_PER_S / BYTES_PER_MIB, rel=0.1)


def test_veth_deleted_mid_run_goes_away_and_its_peer_has_no_rate_after_recreation(veth: VethToHost) -> None:
    probe = NetworkProbe()
    before = probe.sample()
    assert veth.host_if in {i.name for i in before.interfaces}
    subprocess.run(["ip", "link", "del", veth.host_if], check=True)
    gone = probe.sample()
    view = derive_network(before, gone, 1.0)
    assert veth.host_if not in {i.name for i in view.interfaces}
    # made again under the same name: a new ifindex, so no rate from the old counters
    subprocess.run(["ip", "link", "add", veth.host_if, "type", "veth", "peer", "name", veth.ns_if,
                    "netns", veth.ns.name], check=True)
    again = probe.sample()
    row = next(i for i in derive_network(before, again, 1.0).interfaces if i.name == veth.host_if)
    assert by_name(again, veth.host_if).ifindex != by_name(before, veth.host_if).ifindex
    assert row.rx_bytes_per_s is None and row.tx_packets_per_s is None
