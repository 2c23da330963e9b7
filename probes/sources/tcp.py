"""The "tcp" probe: the kernel's TCP counters, as `sar -n TCP,ETCP` and `ss -s` read them.

/proc/net/snmp gives the RFC 1213 Tcp counters sar reads (rd_stats.c
read_net_tcp and read_net_etcp), /proc/net/netstat the Linux TcpExt ones
(listen queue overflows, timeouts), /proc/net/sockstat and sockstat6 the
socket totals `ss -s` prints, and sock_diag (as ss) each socket's state. All
of them are per network namespace: a probe given another process's proc
root (`/proc/<pid>`) sees that process's namespace, its socket states from
/proc/<pid>/net/tcp and tcp6 (sock_diag answers for orac's own).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import read_text
from probes.host.sock_diag import tcp_state_counts

# /proc/net/snmp "Tcp:" columns -> TcpCounters fields
TCP_COLUMNS = {
    "ActiveOpens": "active_opens",
    "PassiveOpens": "passive_opens",
    "AttemptFails": "attempt_fails",
    "EstabResets": "estab_resets",
    "CurrEstab": "curr_estab",
    "InSegs": "in_segs",
    "OutSegs": "out_segs",
    "RetransSegs": "retrans_segs",
    "InErrs": "in_errs",
    "OutRsts": "out_rsts",
}
# /proc/net/netstat "TcpExt:" columns -> TcpCounters fields
TCPEXT_COLUMNS = {
    "ListenOverflows": "listen_overflows",
    "ListenDrops": "listen_drops",
    "TCPTimeouts": "timeouts",
    "TCPSynRetrans": "syn_retrans",
    "TCPLostRetransmit": "lost_retransmits",
    "TCPAbortOnTimeout": "aborts_on_timeout",
}

# /proc/net/tcp's `st` column (include/net/tcp_states.h) -> the names ss
# prints, so a count can be checked with `ss -tan state <name>`. The kernel
# shows a request socket (TCP_NEW_SYN_RECV inside) as SYN_RECV there.
TCP_STATES = {
    0x01: "ESTAB",
    0x02: "SYN-SENT",
    0x03: "SYN-RECV",
    0x04: "FIN-WAIT-1",
    0x05: "FIN-WAIT-2",
    0x06: "TIME-WAIT",
    0x07: "UNCONN",
    0x08: "CLOSE-WAIT",
    0x09: "LAST-ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
    0x0C: "SYN-RECV",
}


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """Cumulative TCP counters of one network namespace; None where the kernel lacks one.

    Counts of segments, connections or events since boot (or since the
    namespace was made), except `curr_estab`, a count of connections now in
    ESTABLISHED or CLOSE-WAIT (RFC 1213 tcpCurrEstab).
    """

    active_opens: int | None
    passive_opens: int | None
    attempt_fails: int | None
    estab_resets: int | None
    curr_estab: int | None
    in_segs: int | None
    out_segs: int | None
    retrans_segs: int | None
    in_errs: int | None
    out_rsts: int | None
    listen_overflows: int | None
    listen_drops: int | None
    timeouts: int | None
    syn_retrans: int | None
    lost_retransmits: int | None
    aborts_on_timeout: int | None


@dataclass(frozen=True, slots=True)
class SockStat:
    """/proc/net/sockstat and sockstat6, the lines `ss -s` reads (misc/ss.c get_sockstat).

    `tcp_inuse` and `tcp6_inuse` are sockets in the hash tables (listening
    and connected, not time-wait); `tcp_alloc` is every TCP socket
    allocated, `tcp_orphan` those no process holds, `tcp_tw` time-wait ones.
    `tcp_alloc` and `tcp_orphan` count the whole machine, the others this
    namespace. `tcp_mem_pages` is pages of socket buffers. None where the
    file or a field is missing (no IPv6: no sockstat6).
    """

    sockets_used: int | None
    tcp_inuse: int | None
    tcp_orphan: int | None
    tcp_tw: int | None
    tcp_alloc: int | None
    tcp_mem_pages: int | None
    tcp6_inuse: int | None
    udp_inuse: int | None
    udp6_inuse: int | None


@dataclass(frozen=True, slots=True)
class TcpSample:
    counters: TcpCounters
    sockstat: SockStat
    # ss state name -> sockets in it, IPv4 and IPv6 together, from
    # /proc/net/tcp and tcp6; None when the probe does not read them
    states: Mapping[str, int] | None
    # time.monotonic_ns() as /proc/net/snmp was read
    mono_ns: int
    # time.monotonic_ns() as the states were read, which is not every sample
    # (see TcpProbe); None in recordings made before they were read apart
    states_mono_ns: int | None = None


@dataclass(frozen=True, slots=True)
class SocketSummary:
    """The "TCP:" line of `ss -s`, computed as misc/ss.c print_summary does.

    total = alloc + tw; estab = CurrEstab from /proc/net/snmp (ESTABLISHED
    and CLOSE-WAIT); closed = alloc - (inuse + inuse6 - tw); orphaned =
    orphan; timewait = tw. None where an input is missing.
    """

    total: int | None
    estab: int | None
    closed: int | None
    orphaned: int | None
    timewait: int | None


@dataclass(frozen=True, slots=True)
class TcpView:
    """TCP over one interval, with sar's names for its figures.

    Each rate is the counter's difference divided by the interval's
    seconds, as sar's S_VALUE does: `sar -n TCP` active/s (ActiveOpens),
    passive/s (PassiveOpens), iseg/s (InSegs), oseg/s (OutSegs); `sar -n
    ETCP` atmptf/s (AttemptFails), estres/s (EstabResets), retrans/s
    (RetransSegs), isegerr/s (InErrs), orsts/s (OutRsts). A counter that
    went backwards gives None (sar's unsigned difference would show a huge
    number). Listen overflows and drops are TcpExt ListenOverflows (accept
    queue full) and ListenDrops (every SYN dropped at a listener, overflows
    included), as `nstat` names them.

    `retrans_percent` = 100 * RetransSegs / (OutSegs + RetransSegs) over
    the interval: the share of all segments sent that were retransmitted.
    Linux's OutSegs leaves retransmissions out (tcp_output.c counts a
    segment there only when it carries new data or no data), so the two
    together are every segment sent. None when nothing was sent.
    """

    active_opens_per_s: float | None
    passive_opens_per_s: float | None
    in_segs_per_s: float | None
    out_segs_per_s: float | None
    attempt_fails_per_s: float | None
    estab_resets_per_s: float | None
    retrans_segs_per_s: float | None
    in_errs_per_s: float | None
    out_rsts_per_s: float | None
    retrans_percent: float | None
    listen_overflows_per_s: float | None
    listen_drops_per_s: float | None
    timeouts_per_s: float | None
    sockets: SocketSummary
    states: Mapping[str, int] | None
    # seconds between the states' reading and the counters' (0 when read together)
    states_age_s: float = 0.0


def parse_snmp_tables(text: str) -> dict[str, dict[str, int]]:
    """Parse /proc/net/snmp or /proc/net/netstat: "Proto: names" then "Proto: values".

    A header whose next line is not its values (a cut-off read, a
    malformed file) is skipped rather than misread.
    """
    tables: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for names_line, values_line in pairwise(lines):
        proto, colon, names = names_line.partition(":")
        vproto, vcolon, values = values_line.partition(":")
        if not colon or not vcolon or proto != vproto:
            continue
        try:
            numbers = [int(v) for v in values.split()]
        except ValueError:
            # two header lines in a row: the values are missing
            continue
        keys = names.split()
        if len(keys) == len(numbers):
            tables[proto] = dict(zip(keys, numbers))
    return tables


def parse_tcp_counters(snmp_text: str, netstat_text: str) -> TcpCounters:
    tcp = parse_snmp_tables(snmp_text).get("Tcp", {})
    ext = parse_snmp_tables(netstat_text).get("TcpExt", {})
    fields: dict[str, int | None] = {field: tcp.get(column) for column, field in TCP_COLUMNS.items()}
    fields.update({field: ext.get(column) for column, field in TCPEXT_COLUMNS.items()})
    return TcpCounters(**fields)


def parse_sockstat(text: str, text6: str | None) -> SockStat:
    """Parse sockstat ("TCP: inuse 3 orphan 0 tw 1 alloc 5 mem 2") and sockstat6."""
    rows: dict[str, dict[str, int]] = {}
    for line in f"{text}\n{text6 or ''}".splitlines():
        proto, _, rest = line.partition(":")
        words = rest.split()
        try:
            rows[proto.strip()] = {k: int(v) for k, v in zip(words[::2], words[1::2])}
        except ValueError:
            continue
    return SockStat(
        sockets_used=rows.get("sockets", {}).get("used"),
        tcp_inuse=rows.get("TCP", {}).get("inuse"),
        tcp_orphan=rows.get("TCP", {}).get("orphan"),
        tcp_tw=rows.get("TCP", {}).get("tw"),
        tcp_alloc=rows.get("TCP", {}).get("alloc"),
        tcp_mem_pages=rows.get("TCP", {}).get("mem"),
        tcp6_inuse=rows.get("TCP6", {}).get("inuse"),
        udp_inuse=rows.get("UDP", {}).get("inuse"),
        udp6_inuse=rows.get("UDP6", {}).get("inuse"),
    )


def count_tcp_states(*texts: str) -> dict[str, int]:
    """Sockets per ss state name from /proc/net/tcp and tcp6 texts (the 4th column, hex)."""
    counts: dict[str, int] = {}
    for text in texts:
        for line in text.splitlines()[1:]:
            fields = line.split(None, 4)
            if len(fields) < 4:
                continue
            try:
                state = TCP_STATES.get(int(fields[3], 16), "UNKNOWN")
            except ValueError:
                continue
            counts[state] = counts.get(state, 0) + 1
    return counts


def socket_summary(counters: TcpCounters, s: SockStat) -> SocketSummary:
    """ss -s's TCP line (print_summary), from the sample's counters.

    ss counts a missing sockstat6 (no IPv6) as no IPv6 sockets; so does this.
    """
    total = closed = None
    if s.tcp_alloc is not None and s.tcp_tw is not None:
        total = s.tcp_alloc + s.tcp_tw
        if s.tcp_inuse is not None:
            closed = s.tcp_alloc - (s.tcp_inuse + (s.tcp6_inuse or 0) - s.tcp_tw)
    return SocketSummary(total, counters.curr_estab, closed, s.tcp_orphan, s.tcp_tw)


def _rate(prev: int | None, curr: int | None, dt_s: float) -> float | None:
    if prev is None or curr is None or curr < prev or dt_s <= 0:
        return None
    return (curr - prev) / dt_s


def retrans_percent(prev: TcpCounters, curr: TcpCounters) -> float | None:
    """100 * RetransSegs / (OutSegs + RetransSegs) over the interval (TcpView)."""
    if prev.retrans_segs is None or curr.retrans_segs is None or prev.out_segs is None or curr.out_segs is None:
        return None
    retrans = curr.retrans_segs - prev.retrans_segs
    out = curr.out_segs - prev.out_segs
    if retrans < 0 or out < 0 or retrans + out == 0:
        return None
    return 100.0 * retrans / (retrans + out)


def derive_tcp(prev: TcpSample, curr: TcpSample, dt_s: float) -> TcpView:
    p, c = prev.counters, curr.counters
    return TcpView(
        active_opens_per_s=_rate(p.active_opens, c.active_opens, dt_s),
        passive_opens_per_s=_rate(p.passive_opens, c.passive_opens, dt_s),
        in_segs_per_s=_rate(p.in_segs, c.in_segs, dt_s),
        out_segs_per_s=_rate(p.out_segs, c.out_segs, dt_s),
        attempt_fails_per_s=_rate(p.attempt_fails, c.attempt_fails, dt_s),
        estab_resets_per_s=_rate(p.estab_resets, c.estab_resets, dt_s),
        retrans_segs_per_s=_rate(p.retrans_segs, c.retrans_segs, dt_s),
        in_errs_per_s=_rate(p.in_errs, c.in_errs, dt_s),
        out_rsts_per_s=_rate(p.out_rsts, c.out_rsts, dt_s),
        retrans_percent=retrans_percent(p, c),
        listen_overflows_per_s=_rate(p.listen_overflows, c.listen_overflows, dt_s),
        listen_drops_per_s=_rate(p.listen_drops, c.listen_drops, dt_s),
        timeouts_per_s=_rate(p.timeouts, c.timeouts, dt_s),
        sockets=socket_summary(c, curr.sockstat),
        states=curr.states,
        states_age_s=0.0 if curr.states_mono_ns is None else max(0.0, (curr.mono_ns - curr.states_mono_ns) / 1e9),
    )


class TcpProbe:
    """Samples TCP counters, socket totals and (optionally) socket states.

    Args:
        proc: The proc root; `/proc/<pid>` reads that process's network
            namespace.
        states: Also count sockets per state (sock_diag, as ss; for another
            proc root /proc/net/tcp and tcp6).
        states_every_s: Read those at most this often; samples between
            carry the last reading and its time. The kernel makes those
            files by walking every bucket of the TCP hash tables, which are
            sized by memory, not by sockets: with one socket on a 24 GiB VM
            a read of both took 9 ms of system time, most of the probe's
            cost at a 1 s interval (sock_diag: 1.7 ms). A line per socket (about 150 bytes)
            comes on top, megabytes a read with a hundred thousand
            connections. The counters and `ss -s` totals cost the same on
            any box and are read every sample.
    """

    name: ClassVar[str] = "tcp"

    def __init__(self, proc: str = "/proc", states: bool = True, states_every_s: float = 5.0) -> None:
        self._proc = proc
        self._states = states
        self._states_every_ns = int(states_every_s * 1e9)
        self._last_states: Mapping[str, int] | None = None
        self._states_mono_ns: int | None = None
        # sock_diag answers for this process's network namespace: the default proc root's only
        self._netlink = os.path.realpath(proc) == os.path.realpath("/proc")

    def start(self) -> None:
        if read_text(f"{self._proc}/net/snmp") is None:
            raise ProbeUnavailable(
                f"{self._proc}/net/snmp is not readable",
                "mount procfs on /proc (a kernel built without CONFIG_INET has no TCP counters)",
            )

    def sample(self) -> TcpSample:
        net = f"{self._proc}/net"
        mono_ns = time.monotonic_ns()
        counters = parse_tcp_counters(read_text(f"{net}/snmp") or "", read_text(f"{net}/netstat") or "")
        sockstat = parse_sockstat(read_text(f"{net}/sockstat") or "", read_text(f"{net}/sockstat6"))
        if self._states and (
            self._states_mono_ns is None or mono_ns - self._states_mono_ns >= self._states_every_ns
        ):
            self._last_states = self._read_states(net)
            self._states_mono_ns = mono_ns
        return TcpSample(counters, sockstat, self._last_states, mono_ns, self._states_mono_ns)

    def _read_states(self, net: str) -> dict[str, int]:
        """Sockets per ss state: from sock_diag in orac's own namespace (a fifth of the files' cost), else the files."""
        if self._netlink:
            try:
                return {TCP_STATES.get(state, "UNKNOWN"): n for state, n in tcp_state_counts().items()}
            except OSError:
                self._netlink = False
        return count_tcp_states(read_text(f"{net}/tcp") or "", read_text(f"{net}/tcp6") or "")

    def stop(self) -> None:
        pass


TCP: ProbeSpec[TcpSample, TcpView] = ProbeSpec(TcpProbe.name, TcpSample, TcpView, derive_tcp, TcpProbe)
