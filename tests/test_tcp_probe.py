"""The "tcp" probe: snmp/netstat/sockstat parsing on fixtures, and real retransmits made by an nftables rule in a test namespace."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.netns import (
    Namespace,
    NamespacePair,
    kill_all,
    namespace_pair,
    require_root_and,
    wait_ready,
)

from probes.contract import ProbeUnavailable
from probes.sources.tcp import (
    TCP_STATES,
    SocketSummary,
    SockStat,
    TcpProbe,
    TcpSample,
    count_tcp_states,
    derive_tcp,
    parse_snmp_tables,
    parse_sockstat,
    parse_tcp_counters,
    retrans_percent,
    socket_summary,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tcp"
T0 = FIXTURES / "t0" / "net"
MIB = 1 << 20


def fixture_sample(t: str) -> TcpSample:
    return TcpProbe(proc=str(FIXTURES / t)).sample()


# --- parsing ---------------------------------------------------------------


def test_parse_snmp_tables_pairs_headers_with_values() -> None:
    tables = parse_snmp_tables((T0 / "snmp").read_text())
    assert set(tables) == {"Ip", "Icmp", "Tcp", "Udp", "UdpLite"}
    assert tables["Tcp"]["MaxConn"] == -1  # signed, unlike the counters
    assert tables["Tcp"]["RetransSegs"] == 500
    assert tables["Udp"]["InDatagrams"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "Tcp: ActiveOpens PassiveOpens\n",  # values cut off
        "Tcp: ActiveOpens PassiveOpens\nTcp: 1\n",  # one value short
        "Tcp: ActiveOpens PassiveOpens\nTcp: ActiveOpens PassiveOpens\n",
        "Tcp: ActiveOpens PassiveOpens\nUdp: 1 2\n",
        "",
    ],
)
def test_parse_snmp_tables_skips_malformed_pairs(text: str) -> None:
    assert "Tcp" not in parse_snmp_tables(text)


def test_parse_tcp_counters_fixture() -> None:
    c = parse_tcp_counters((T0 / "snmp").read_text(), (T0 / "netstat").read_text())
    assert (c.active_opens, c.passive_opens, c.attempt_fails, c.estab_resets) == (1000, 2000, 30, 40)
    assert (c.curr_estab, c.in_segs, c.out_segs, c.retrans_segs, c.in_errs, c.out_rsts) == (12, 1_000_000, 900_000, 500, 2, 70)
    assert (c.listen_overflows, c.listen_drops, c.timeouts, c.syn_retrans) == (7, 9, 50, 5)


def test_missing_netstat_leaves_tcpext_counters_none() -> None:
    c = parse_tcp_counters((T0 / "snmp").read_text(), "")
    assert c.retrans_segs == 500
    assert (c.listen_overflows, c.listen_drops, c.timeouts) == (None, None, None)


def test_parse_sockstat_and_sockstat6() -> None:
    s = parse_sockstat((T0 / "sockstat").read_text(), (T0 / "sockstat6").read_text())
    assert s == SockStat(
        sockets_used=140, tcp_inuse=8, tcp_orphan=0, tcp_tw=3, tcp_alloc=10, tcp_mem_pages=25,
        tcp6_inuse=2, udp_inuse=4, udp6_inuse=1,
    )


def test_no_ipv6_counts_as_no_ipv6_sockets_as_ss_does() -> None:
    s = parse_sockstat((T0 / "sockstat").read_text(), None)
    assert s.tcp6_inuse is None
    counters = parse_tcp_counters((T0 / "snmp").read_text(), "")
    # ss -s: closed = alloc - (inuse + inuse6 - tw) = 10 - (8 + 0 - 3)
    assert socket_summary(counters, s) == SocketSummary(total=13, estab=12, closed=5, orphaned=0, timewait=3)


def test_count_tcp_states_fixture() -> None:
    states = count_tcp_states((T0 / "tcp").read_text(), (T0 / "tcp6").read_text())
    # ss's names; the time-wait and request-socket lines have the short layout
    assert states == {"LISTEN": 3, "ESTAB": 4, "TIME-WAIT": 1, "CLOSE-WAIT": 1, "SYN-RECV": 1}


def test_count_tcp_states_skips_malformed_lines() -> None:
    header = "  sl  local_address rem_address   st tx_queue\n"
    assert count_tcp_states(header + "   0: 0100007F:0016\n   1: a b ZZ c\n   2: a b 0A c\n") == {"LISTEN": 1}


def test_probe_without_states_reads_no_socket_lines() -> None:
    assert TcpProbe(proc=str(FIXTURES / "t0"), states=False).sample().states is None


def test_states_are_read_every_few_seconds_and_carry_their_time(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(T0, tmp_path / "net")
    probe = TcpProbe(proc=str(tmp_path), states_every_s=3600)
    first = probe.sample()
    assert first.states is not None and first.states["LISTEN"] == 3
    # every socket gone: the counters are read again, the states not yet
    header = (tmp_path / "net" / "tcp").read_text().splitlines()[0]
    for name in ("tcp", "tcp6"):
        (tmp_path / "net" / name).write_text(header + "\n")
    second = probe.sample()
    assert second.states == first.states and second.states_mono_ns == first.mono_ns
    view = derive_tcp(first, second, 1.0)
    assert view.states_age_s == pytest.approx((second.mono_ns - first.mono_ns) / 1e9)
    fresh = TcpProbe(proc=str(tmp_path), states_every_s=0).sample()
    assert fresh.states == {} and fresh.states_mono_ns == fresh.mono_ns


def test_sock_diag_counts_the_states_proc_net_tcp_lists() -> None:
    import socket

    from probes.host.sock_diag import tcp_state_counts

    # Sockets of known states on loopback: a listener, a connection's two ends,
    # a connection closed by this side first (TIME-WAIT) and one half-closed by the peer.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    opened = []
    try:
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = listener.accept()
            opened += [client, server]
        opened[0].close()  # active close: TIME-WAIT once the peer closes too
        opened[1].close()
        opened[3].close()  # the peer of opened[2] closed: it is in CLOSE-WAIT
        time.sleep(0.1)
        for _ in range(5):
            from_files = count_tcp_states(Path("/proc/net/tcp").read_text(), Path("/proc/net/tcp6").read_text())
            from_netlink = {TCP_STATES.get(state, "UNKNOWN"): n for state, n in tcp_state_counts().items()}
            if from_files == from_netlink:
                break
            time.sleep(0.2)  # another process's socket changed between the two readings
        assert from_netlink == from_files
        assert from_netlink["LISTEN"] >= 1 and from_netlink["ESTAB"] >= 2
        assert from_netlink["TIME-WAIT"] >= 1 and from_netlink["CLOSE-WAIT"] >= 1, from_netlink
        assert TcpProbe().sample().states == from_netlink
    finally:
        for sock in [listener, *opened]:
            sock.close()


def test_probe_on_real_proc_needs_no_privilege() -> None:
    probe = TcpProbe()
    probe.start()
    sample = probe.sample()
    assert sample.counters.out_segs is not None and sample.counters.listen_drops is not None
    assert sample.sockstat.tcp_inuse is not None and sample.states is not None


def test_start_without_snmp_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable) as info:
        TcpProbe(proc=str(tmp_path)).start()
    assert "snmp" in info.value.reason and info.value.remedy


# --- derive ----------------------------------------------------------------


def test_derive_gives_sar_tcp_and_etcp_figures() -> None:
    view = derive_tcp(fixture_sample("t0"), fixture_sample("t1"), 2.0)
    # sar -n TCP: active/s passive/s iseg/s oseg/s
    assert (view.active_opens_per_s, view.passive_opens_per_s) == (10.0, 50.0)
    assert (view.in_segs_per_s, view.out_segs_per_s) == (20_000.0, 19_500.0)
    # sar -n ETCP: atmptf/s estres/s retrans/s isegerr/s orsts/s
    assert (view.attempt_fails_per_s, view.estab_resets_per_s) == (1.0, 0.5)
    assert (view.retrans_segs_per_s, view.in_errs_per_s, view.out_rsts_per_s) == (500.0, 1.0, 5.0)
    # 1000 retransmitted of 39000 new + 1000 retransmitted segments sent
    assert view.retrans_percent == pytest.approx(2.5)
    assert (view.listen_overflows_per_s, view.listen_drops_per_s, view.timeouts_per_s) == (5.0, 6.0, 2.0)
    # ss -s on t1: total = alloc + tw, closed = alloc - (inuse + inuse6 - tw)
    assert view.sockets == SocketSummary(total=16, estab=15, closed=5, orphaned=1, timewait=4)
    assert view.states == {"LISTEN": 3, "ESTAB": 4, "TIME-WAIT": 1, "CLOSE-WAIT": 1, "SYN-RECV": 1}


def test_counter_going_backwards_gives_no_rate() -> None:
    prev, curr = fixture_sample("t0"), fixture_sample("t1")
    reset = replace(curr, counters=replace(curr.counters, retrans_segs=10, active_opens=None))
    view = derive_tcp(prev, reset, 2.0)
    assert view.retrans_segs_per_s is None and view.retrans_percent is None
    assert view.active_opens_per_s is None  # missing, not zero
    assert view.in_segs_per_s == 20_000.0


def test_retrans_percent_is_none_when_nothing_was_sent() -> None:
    c = fixture_sample("t0").counters
    assert retrans_percent(c, c) is None


# --- real: retransmits made by dropping packets in a test namespace --------

TRANSFER_BYTES = 16 * MIB
DROP_PERCENT = 5
RETRANS_TOLERANCE = 0.10


@pytest.fixture
def pair() -> Iterator[NamespacePair]:
    require_root_and("ip", "nft", "ss")
    with namespace_pair("tcp") as made:
        yield made


def snmp_tcp_in(ns: Namespace) -> dict[str, int]:
    """/proc/net/snmp's Tcp counters as a process inside the namespace reads them."""
    return parse_snmp_tables(ns.exec("cat", "/proc/net/snmp"))["Tcp"]


def ss_summary(text: str) -> SocketSummary:
    match = re.search(r"TCP:\s+(\d+) \(estab (\d+), closed (\d+), orphaned (\d+), timewait (\d+)\)", text)
    assert match, text
    return SocketSummary(*map(int, match.groups()))


def test_dropped_packets_raise_retransmits_as_the_namespace_counts_them(pair: NamespacePair) -> None:
    sender_side = TcpProbe(proc=pair.a.proc, states_every_s=0)
    listener_side = TcpProbe(proc=pair.b.proc)
    sender_side.start()
    listener_side.start()
    table = f"orac_test_{os.getpid()}"
    listener = pair.b.peer("listen", pair.b_addr)
    sender: subprocess.Popen[str] | None = None
    try:
        port = wait_ready(listener)
        # ~5 % of what reaches the listener's port is dropped, in its namespace only
        pair.b.drop_share(table, port, DROP_PERCENT)
        quiet0 = sender_side.sample()
        time.sleep(0.3)
        quiet1 = sender_side.sample()
        kernel0 = snmp_tcp_in(pair.a)
        a0, b0 = sender_side.sample(), listener_side.sample()
        sender = pair.a.peer("send", pair.b_addr, str(port), str(TRANSFER_BYTES))
        sent, err = sender.communicate(timeout=30)
        received, _ = listener.communicate(timeout=5)
        a1, b1 = sender_side.sample(), listener_side.sample()
        kernel1 = snmp_tcp_in(pair.a)
        dropped = pair.b.exec("nft", "list", "table", "inet", table)
    finally:
        kill_all(listener, sender)
        pair.b.remove_table(table)
    assert sender.returncode == 0, err
    assert int(received.split()[-1]) == TRANSFER_BYTES
    drops = re.search(r"counter packets (\d+)", dropped)
    assert drops is not None and int(drops.group(1)) > 0, dropped

    # ~0 before: the namespace is new and quiet
    quiet = derive_tcp(quiet0, quiet1, (quiet1.mono_ns - quiet0.mono_ns) / 1e9)
    assert quiet.retrans_segs_per_s == 0.0

    dt_s = (a1.mono_ns - a0.mono_ns) / 1e9
    view = derive_tcp(a0, a1, dt_s)
    assert view.retrans_segs_per_s is not None and view.retrans_segs_per_s > 0
    assert view.retrans_percent is not None and view.retrans_percent > 0
    ours = view.retrans_segs_per_s * dt_s
    # what /proc/net/snmp says inside the namespace, read by a process there
    kernel = kernel1["RetransSegs"] - kernel0["RetransSegs"]
    assert ours == pytest.approx(kernel, rel=RETRANS_TOLERANCE)
    # and the sending socket's own count (tcp_info's tcpi_total_retrans),
    # the only connection in that namespace
    socket_retrans = int(sent.split()[-1])
    assert ours == pytest.approx(socket_retrans, rel=RETRANS_TOLERANCE)
    # one connection: active/s on the sending side, passive/s on the listening one
    assert view.active_opens_per_s is not None and round(view.active_opens_per_s * dt_s) == 1
    listen_view = derive_tcp(b0, b1, (b1.mono_ns - b0.mono_ns) / 1e9)
    assert listen_view.passive_opens_per_s is not None
    assert round(listen_view.passive_opens_per_s * (b1.mono_ns - b0.mono_ns) / 1e9) == 1

    # the sender closed first, so its socket waits in TIME-WAIT: as ss sees it
    after = sender_side.sample()
    assert after.states == {"TIME-WAIT": 1}
    listed = Counter(line.split()[0] for line in pair.a.exec("ss", "-tanH").splitlines())
    assert listed == after.states
    for _ in range(5):
        # alloc and orphan count every namespace's sockets, so another
        # process on the box may move them between two reads: compare a
        # reading of ss that two equal probe readings surround
        first = sender_side.sample()
        before = socket_summary(first.counters, first.sockstat)
        ss = ss_summary(pair.a.exec("ss", "-s"))
        again = sender_side.sample()
        if socket_summary(again.counters, again.sockstat) == before:
            assert ss == before
            assert before.timewait == 1 and before.estab == 0
            break
    else:
        pytest.fail("the machine's TCP socket count never held still over an `ss -s`")

