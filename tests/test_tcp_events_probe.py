"""The "tcpevents" probe: its maps' parsing and derive, and real retransmits and connects (root)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ebpf import lost_reasons_in, start
from support.netns import Namespace, NamespacePair, kill_all, namespace_pair, require_root_and, wait_ready
from support.synthetic import S

from probes.model.frame import Frame
from probes.registry import spec_named
from probes.sources.tcp import parse_snmp_tables
from probes.sources.tcp_events import (
    HIST_SLOTS,
    LOST_REASONS,
    TCP_EVENTS,
    ConnectionRetransmits,
    ProcessConnections,
    TcpEventsProbe,
    TcpEventsSample,
    derive_tcp_events,
    parse_connections,
    parse_processes,
    tcp_events_program,
)
from probes.store.dump import dump
from probes.store.reader import Recording
from probes.store.writer import Recorder

REPO = Path(__file__).resolve().parent.parent
NO_LOSS = dict.fromkeys(LOST_REASONS, 0)
MIB = 1 << 20


def hist(**slots: int) -> tuple[int, ...]:
    out = [0] * HIST_SLOTS
    for slot, n in slots.items():
        out[int(slot.removeprefix("s"))] = n
    return tuple(out)


def comm(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


# --- without root ------------------------------------------------------------


def test_program_attaches_both_tracepoints_and_names_its_losses_in_order() -> None:
    program = tcp_events_program()
    assert "TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)" in program.text
    assert "TRACEPOINT_PROBE(sock, inet_sock_set_state)" in program.text
    assert f"-DHIST_SLOTS={HIST_SLOTS}" in program.cflags
    assert lost_reasons_in(program.text) == LOST_REASONS


def test_registered_as_a_system_wide_probe() -> None:
    assert spec_named("tcpevents") is TCP_EVENTS and TCP_EVENTS.make is TcpEventsProbe


def test_parse_connections_ipv4_ipv6_and_an_unknown_owner() -> None:
    key = struct.Struct("=16s16sHHHHII")
    value = struct.Struct("=Q16s")
    v6 = socket.inet_pton(socket.AF_INET6, "fd00::1"), socket.inet_pton(socket.AF_INET6, "fd00::2")
    keys = (key.pack(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 2, 40000, 5201, 1, 77, 3)
            + key.pack(*v6, 10, 443, 50000, 4, 0, 3))
    values = value.pack(5, comm("curl")) + value.pack(2, b"\0" * 16)
    assert parse_connections(keys, values, 2) == [
        ConnectionRetransmits(4, "10.0.0.1", 40000, "10.0.0.2", 5201, "ESTAB", 77, "curl", 5),
        ConnectionRetransmits(6, "fd00::1", 443, "fd00::2", 50000, "FIN-WAIT-1", None, None, 2),
    ]


def test_parse_processes() -> None:
    key = struct.Struct("=II")
    value = struct.Struct(f"=6Q{HIST_SLOTS}I16s")
    h = hist(s14=3, s15=1)
    keys = key.pack(77, 1) + key.pack(0, 1)
    values = value.pack(4, 4, 100_000, 0, 1, 0, *h, comm("curl")) + value.pack(0, 0, 0, 0, 0, 9, *hist(), b"")
    assert parse_processes(keys, values, 2) == [
        ProcessConnections(77, "curl", 4, 4, 0, 1, 0, 100_000, h),
        ProcessConnections(None, None, 0, 0, 0, 0, 9, 0, hist()),
    ]


def test_derive_ranks_connections_and_processes_and_gives_latency_buckets() -> None:
    curr = TcpEventsSample(
        retransmits=(
            ConnectionRetransmits(4, "10.0.0.1", 1, "10.0.0.2", 80, "ESTAB", None, None, 2),
            ConnectionRetransmits(4, "10.0.0.1", 2, "10.0.0.2", 80, "ESTAB", 9, "wget", 10),
        ),
        processes=(
            ProcessConnections(9, "wget", 10, 9, 1, 0, 0, 9 * 50_000, hist(s15=9)),
            ProcessConnections(None, None, 0, 0, 0, 2, 20, 0, hist()),
        ),
        lost={**NO_LOSS, "owner_map_full": 1},
    )
    view = derive_tcp_events(curr, curr, 2.0)
    assert [(c.sport, c.retransmits_per_s) for c in view.connections] == [(2, 5.0), (1, 1.0)]
    assert view.retransmits_per_s == 6.0 and view.connects_per_s == 5.0
    wget, unknown = view.processes
    assert (wget.pid, wget.comm, wget.connects_per_s, wget.connect_failed_per_s) == (9, "wget", 5.0, 0.5)
    assert wget.mean_latency_ns == 50_000
    assert wget.p50_latency_bucket is not None and wget.p50_latency_bucket.low_ns == 1 << 15
    assert (unknown.pid, unknown.accepted_per_s, unknown.closed_from_established_per_s) == (None, 10.0, 1.0)
    assert unknown.p50_latency_bucket is None and unknown.mean_latency_ns is None
    assert view.lost["owner_map_full"] == 1


def test_recorded_and_dumped_as_csv_and_json(tmp_path: Path) -> None:
    path = tmp_path / "tcpevents.orac"
    conn = ConnectionRetransmits(4, "10.0.0.1", 40000, "10.0.0.2", 5201, "ESTAB", 77, "curl", 3)
    proc = ProcessConnections(77, "curl", 2, 2, 0, 0, 0, 2 * 40_000, hist(s15=2))
    with Recorder(path, interval_s=1.0, probes=["tcpevents"]) as recorder:
        for t in range(3):
            sample = TcpEventsSample((conn,), (proc,), dict(NO_LOSS), mono_ns=(1000 + t) * S)
            recorder.append(Frame(wall_ns=(1_764_000_000 + t) * S, mono_ns=(1000 + t) * S,
                                  samples={"tcpevents": sample}, unavailable={}))
    frames = [frame for _, frame in Recording(path).iter_frames(range(3))]
    assert frames[2].samples["tcpevents"].retransmits == (conn,)

    out = io.StringIO()
    assert dump(Recording(path), "csv", out=out, table="tcpevents") == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["kind"], r["sport"], r["pid"], r["comm"]) for r in rows[:2]] == [
        ("connection", "40000", "77", "curl"), ("process", "", "77", "curl"),
    ]
    assert float(rows[0]["retransmits_per_s"]) == 3.0
    assert int(rows[1]["p50_latency_bucket"]) == 1 << 15

    out = io.StringIO()
    dump(Recording(path), "json", out=out)
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["tcpevents"]["connections"][0]["daddr"] == "10.0.0.2"


def test_unprivileged_it_says_why_it_cannot_run_and_what_to_do() -> None:
    script = (
        "from probes.contract import ProbeUnavailable\n"
        "from probes.sources.tcp_events import TcpEventsProbe\n"
        "try:\n"
        "    TcpEventsProbe().start()\n"
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
    if "bcc" in out[0]:
        pytest.skip(f"bcc is not installed here: {out[0]}")
    assert out == ["eBPF needs root, or CAP_BPF and CAP_PERFMON", "run `sudo orac`"]


# --- real TCP (root) -----------------------------------------------------------

TRANSFER_BYTES = 16 * MIB
DROP_PERCENT = 5
RETRANS_TOLERANCE = 0.10


@pytest.fixture(scope="module")
def probe() -> Iterator[TcpEventsProbe]:
    p = start(TcpEventsProbe())
    yield p
    p.stop()


@pytest.fixture
def pair() -> Iterator[NamespacePair]:
    require_root_and("ip", "nft")
    with namespace_pair("tev") as made:
        yield made


def retrans_segs(ns: Namespace) -> int:
    """/proc/net/snmp's RetransSegs as a process inside the namespace reads it."""
    return parse_snmp_tables(ns.exec("cat", "/proc/net/snmp"))["Tcp"]["RetransSegs"]


# Unique local addresses, on the test's own veth pair inside its namespaces only.
V6_ADDRESSES = ("fd00:203::1", "fd00:203::2")


def addresses_for(pair: NamespacePair, family: int) -> tuple[str, str]:
    """The pair's (a, b) addresses of `family`, IPv6 turned on for the pair's veth ends first where asked."""
    if family == 4:
        return pair.a_addr, pair.b_addr
    for ns, ifname, addr in ((pair.a, pair.a_if, V6_ADDRESSES[0]), (pair.b, pair.b_if, V6_ADDRESSES[1])):
        ns.exec("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=0")
        # nodad: usable at once, no duplicate detection to wait out
        ns.exec("ip", "-6", "addr", "add", f"{addr}/64", "dev", ifname, "nodad")
    return V6_ADDRESSES


@pytest.mark.parametrize("family", [4, 6])
def test_dropped_packets_show_the_connection_and_the_kernels_retransmit_count(
    probe: TcpEventsProbe, pair: NamespacePair, family: int
) -> None:
    a_addr, b_addr = addresses_for(pair, family)
    table = f"orac_test_tcpevents_{os.getpid()}"
    # The tracepoint fires once per skb retransmitted, RetransSegs counts its
    # segments: skbs of one segment each make the two counts one.
    pair.a.exec("ip", "link", "set", "dev", pair.a_if, "gso_max_segs", "1")
    listener = pair.b.peer("listen", b_addr)
    sender: subprocess.Popen[str] | None = None
    try:
        port = wait_ready(listener)
        # ~5 % of what reaches the listener's port is dropped, in its namespace only
        pair.b.drop_share(table, port, DROP_PERCENT)
        kernel0 = retrans_segs(pair.a)
        before = probe.sample()
        sender = pair.a.peer("send", b_addr, str(port), str(TRANSFER_BYTES))
        sent, err = sender.communicate(timeout=60)
        listener.communicate(timeout=5)
        after = probe.sample()
        kernel = retrans_segs(pair.a) - kernel0
    finally:
        kill_all(listener, sender)
        pair.b.remove_table(table)
    assert sender.returncode == 0, err
    view = derive_tcp_events(before, after, 1.0)
    # Other tests' namespaces may use the same addresses: the port is ours alone.
    ours = [c for c in view.connections if (c.saddr, c.daddr, c.dport) == (a_addr, b_addr, port)]
    assert ours, view.connections
    # connected while the probe ran, by the sender itself (ip netns exec execs it)
    assert {c.pid for c in ours} == {sender.pid} and {c.family for c in ours} == {family}
    assert len({c.sport for c in ours}) == 1
    counted = sum(c.retransmits for c in ours)
    assert kernel > 0
    assert counted == pytest.approx(kernel, rel=RETRANS_TOLERANCE), (counted, kernel, ours)
    socket_retrans = int(sent.split()[-1])
    assert counted == pytest.approx(socket_retrans, rel=RETRANS_TOLERANCE)


CONNECTS = 50

CONNECTOR = """
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
for _ in range(n):
    socket.create_connection(("127.0.0.1", port)).close()
print("done", flush=True)
"""


def test_n_connects_are_the_processes_with_a_plausible_latency(probe: TcpEventsProbe) -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=CONNECTS)
    port = server.getsockname()[1]
    accepted: list[int] = []

    def accept() -> None:
        for _ in range(CONNECTS):
            conn, _ = server.accept()
            conn.close()
            accepted.append(1)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    connector = subprocess.Popen([sys.executable, "-c", CONNECTOR, str(port), str(CONNECTS)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        before = probe.sample()
        out, _ = connector.communicate("go\n", timeout=60)
        acceptor.join(timeout=10)
        after = probe.sample()
    finally:
        kill_all(connector)
        server.close()
    assert out.strip() == "done" and len(accepted) == CONNECTS
    view = derive_tcp_events(before, after, 1.0)
    mine = [p for p in view.processes if p.pid == connector.pid]
    assert len(mine) == 1, view.processes
    row = mine[0]
    assert row.comm is not None and row.comm.startswith("python")
    assert row.connects == CONNECTS and row.connect_failed_per_s == 0
    # loopback: the SYN-ACK comes back in the connect() call's own softirq,
    # microseconds; under a loaded box still well under 100 ms
    assert row.p50_latency_bucket is not None and row.p99_latency_bucket is not None
    assert 1_000 <= row.p50_latency_bucket.low_ns < 100_000_000
    assert row.mean_latency_ns is not None and 1_000 <= row.mean_latency_ns < 100_000_000
    # this process accepted them: the owner of an accepted socket is never known
    unknown = [p for p in view.processes if p.pid is None]
    assert unknown and unknown[0].accepted_per_s >= CONNECTS


def test_a_refused_connect_is_a_failed_connect(probe: TcpEventsProbe) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    before = probe.sample()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port))
    after = probe.sample()
    mine = [p for p in derive_tcp_events(before, after, 1.0).processes if p.pid == os.getpid()]
    assert mine and mine[0].connects == 1 and mine[0].connect_failed_per_s == 1.0
    assert re.match(r"python|pytest", mine[0].comm or "")


def test_an_abort_is_a_close_from_established_on_both_ends(probe: TcpEventsProbe) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    before = probe.sample()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    # SO_LINGER with no time: close() sends a reset instead of a FIN
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    with pytest.raises(ConnectionResetError):
        accepted.recv(1)
    accepted.close()
    server.close()
    after = probe.sample()
    rows = {p.pid: p for p in derive_tcp_events(before, after, 1.0).processes if p.pid in (os.getpid(), None)}
    # the aborting end, whose connect the probe saw, and the end the reset reached, whose owner it cannot know
    assert rows[os.getpid()].closed_from_established_per_s == 1.0
    assert rows[None].closed_from_established_per_s >= 1.0
