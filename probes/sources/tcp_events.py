"""The "tcpevents" probe: TCP retransmits per connection and connection lifecycle per process, from eBPF.

What bcc's tcpretrans (retransmits by connection and state) and tcpconnlat
(connect latency, SYN_SENT to ESTABLISHED) measure, on the stable tracepoints
tcp:tcp_retransmit_skb and sock:inet_sock_set_state (tcp_events.bpf.c). The
kernel side aggregates into generation-keyed maps; each `sample()` takes out
the finished generation, so a sample holds the events *of the interval*
since the previous sample.

The process owning a socket is known only for connections this machine
opened while the probe ran: it is recorded at connect(), the one transition
made in the owner's own context. Retransmits and accepted connections are
otherwise the kernel's, in softirq; they are shown with pid None ("-"),
never guessed from the interrupted task.

tcp_retransmit_skb fires once per skb retransmitted (tcpretrans's count),
the kernel's RetransSegs adds that skb's segments: the two agree where each
retransmitted skb is one segment (SACK splits lost segments off), and
RetransSegs is higher where a multi-segment GSO skb goes again whole (a
lost GRO aggregate, a tail-loss probe). Retransmits the kernel failed to
send (the tracepoint's err) are not counted, as RetransSegs does not.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec
from probes.ebpf.maps import COMM_BYTES, MapDrain
from probes.ebpf.probe import EbpfProbe
from probes.ebpf.programs import BpfProgram, LoadedProgram, build_program
from probes.model.histograms import LatencyBucket, log2_quantile_bucket
from probes.sources.tcp import TCP_STATES

SOURCE = "tcp_events.bpf.c"
HIST_SLOTS = 32
# In the order of tcp_events.bpf.c's enum lost_reason.
LOST_REASONS = ("owner_map_full", "connection_map_full", "process_map_full")
OWNER_ENTRIES = 65536
CONNECTION_ENTRIES = 4096
PROCESS_ENTRIES = 4096
AF_INET = 2

# The structs of tcp_events.bpf.c, native byte order; every key ends with its generation.
_CONNECTION_KEY = struct.Struct("=16s16sHHHHII")  # saddr, daddr, family, sport, dport, state, tgid, gen
_CONNECTION = struct.Struct(f"=Q{COMM_BYTES}s")  # retransmits, comm
_PROCESS_KEY = struct.Struct("=II")  # tgid, gen
_PROCESS = struct.Struct(f"=6Q{HIST_SLOTS}I{COMM_BYTES}s")


def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _address(family: int, raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw[:4]) if family == AF_INET else ipaddress.IPv6Address(raw))


@dataclass(frozen=True, slots=True)
class ConnectionRetransmits:
    """Retransmits of one connection in one state in the interval, as tcpretrans lists them.

    `state` is ss's name of the socket's state at the retransmit (ESTAB,
    SYN-SENT, ...). `pid` and `comm` are the process that connected it,
    None where that is not known (accepted, or connected before the probe
    started).
    """

    family: int  # 4 or 6
    saddr: str
    sport: int
    daddr: str
    dport: int
    state: str
    pid: int | None
    comm: str | None
    retransmits: int


@dataclass(frozen=True, slots=True)
class ProcessConnections:
    """Connection events of one process in the interval (pid None: owner not known).

    Attributes:
        connects: connect() calls that sent a SYN (moves to SYN_SENT).
        established: of those, connections that became ESTABLISHED.
        connect_failed: SYN_SENT -> CLOSE: refused, timed out or aborted.
        closed_from_established: ESTABLISHED -> CLOSE, without the FIN
            handshake: a reset received or sent (an abort); the tracepoint
            does not tell which.
        accepted: SYN_RECV -> ESTABLISHED, passive connections (their
            owner is never known, so these are in the pid None row).
        latency_total_ns, latency_hist: SYN_SENT -> ESTABLISHED times of
            the connections whose connect the probe saw; log2 buckets, slot
            i counts [2**i, 2**(i+1)) ns.
    """

    pid: int | None
    comm: str | None
    connects: int
    established: int
    connect_failed: int
    closed_from_established: int
    accepted: int
    latency_total_ns: int
    latency_hist: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TcpEventsSample:
    """Every TCP event the probe saw since the previous sample."""

    retransmits: tuple[ConnectionRetransmits, ...]
    processes: tuple[ProcessConnections, ...]
    # reason (LOST_REASONS) -> events in the interval; see tcp_events.bpf.c
    lost: dict[str, int]
    # time.monotonic_ns() as counting was switched to the next generation
    mono_ns: int | None = None


def tcp_events_program() -> BpfProgram:
    """The probe's BPF program and options; pure apart from reading the source file."""
    return build_program(
        SOURCE,
        {
            "OWNER_ENTRIES": OWNER_ENTRIES,
            "CONNECTION_ENTRIES": CONNECTION_ENTRIES,
            "PROCESS_ENTRIES": PROCESS_ENTRIES,
            "HIST_SLOTS": HIST_SLOTS,
        },
    )


def parse_connections(keys: bytes, values: bytes, n: int) -> list[ConnectionRetransmits]:
    out = []
    for i in range(n):
        saddr, daddr, family, sport, dport, state, tgid, _ = _CONNECTION_KEY.unpack_from(keys, i * _CONNECTION_KEY.size)
        count, comm = _CONNECTION.unpack_from(values, i * _CONNECTION.size)
        out.append(ConnectionRetransmits(
            4 if family == AF_INET else 6, _address(family, saddr), sport, _address(family, daddr), dport,
            TCP_STATES.get(state, str(state)), tgid or None, _comm(comm) if tgid else None, count,
        ))
    return out


def parse_processes(keys: bytes, values: bytes, n: int) -> list[ProcessConnections]:
    out = []
    for i in range(n):
        tgid, _ = _PROCESS_KEY.unpack_from(keys, i * _PROCESS_KEY.size)
        connects, established, total_ns, failed, closed, accepted, *rest = _PROCESS.unpack_from(
            values, i * _PROCESS.size)
        hist, comm = rest[:HIST_SLOTS], rest[HIST_SLOTS]
        out.append(ProcessConnections(
            tgid or None, _comm(comm) if tgid else None, connects, established, failed, closed, accepted,
            total_ns, tuple(hist),
        ))
    return out


class TcpEventsProbe(EbpfProbe):
    """Counts TCP retransmits by connection and connection events by process with eBPF."""

    name: ClassVar[str] = "tcpevents"
    uses_tracefs: ClassVar[bool] = True  # classic tracepoints
    kernel_lost_reasons: ClassVar[tuple[str, ...]] = LOST_REASONS

    def __init__(self) -> None:
        super().__init__(None)

    def program(self) -> BpfProgram:
        return tcp_events_program()

    def open_maps(self, bpf: LoadedProgram) -> None:
        self._connections = MapDrain(bpf["connections"])
        self._processes = MapDrain(bpf["processes"])

    def sample(self) -> TcpEventsSample:
        self.require_running()
        mono_ns = time.monotonic_ns()
        done = self.next_generation()
        return TcpEventsSample(
            tuple(parse_connections(*self._connections.take(done))),
            tuple(parse_processes(*self._processes.take(done))),
            self.lost_in_interval(),
            mono_ns,
        )


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionRetransmitRate:
    """One connection's retransmits: tcpretrans's count over the interval, / t."""

    family: int
    saddr: str
    sport: int
    daddr: str
    dport: int
    state: str
    pid: int | None
    comm: str | None
    retransmits: int
    retransmits_per_s: float

    def endpoints(self) -> str:
        """source > destination, as tcpretrans prints them."""
        return f"{endpoint(self.family, self.saddr, self.sport)} > {endpoint(self.family, self.daddr, self.dport)}"


def endpoint(family: int, addr: str, port: int) -> str:
    """addr:port; [v6]:port as ss writes IPv6 endpoints, so the port is not read as part of the address."""
    return f"[{addr}]:{port}" if family == 6 else f"{addr}:{port}"


@dataclass(frozen=True, slots=True)
class ProcessConnectRate:
    """One process's connection events / t, and its connect latency (tcpconnlat's).

    Attributes:
        connects_per_s: ProcessConnections.connects / t.
        connect_failed_per_s, closed_from_established_per_s,
            accepted_per_s: those counts / t.
        mean_latency_ns: latency_total_ns / connections timed; None
            without any.
        p50_latency_bucket, p99_latency_bucket: the log2 bucket holding
            the median and the 99th percentile connect latency.
    """

    pid: int | None
    comm: str | None
    connects_per_s: float
    connect_failed_per_s: float
    closed_from_established_per_s: float
    accepted_per_s: float
    connects: int
    mean_latency_ns: float | None
    p50_latency_bucket: LatencyBucket | None
    p99_latency_bucket: LatencyBucket | None


@dataclass(frozen=True, slots=True)
class TcpEventsView:
    """Connections by retransmits/s, processes by connects/s; totals of every row."""

    connections: tuple[ConnectionRetransmitRate, ...]
    processes: tuple[ProcessConnectRate, ...]
    retransmits_per_s: float
    connects_per_s: float
    lost: dict[str, int]


def _process_rate(rows: Iterable[ProcessConnections], dt_s: float) -> ProcessConnectRate:
    rows = list(rows)
    hist = [sum(r.latency_hist[slot] for r in rows) for slot in range(HIST_SLOTS)]
    timed = sum(hist)
    connects = sum(r.connects for r in rows)
    return ProcessConnectRate(
        pid=rows[0].pid,
        comm=rows[0].comm,
        connects_per_s=connects / dt_s,
        connect_failed_per_s=sum(r.connect_failed for r in rows) / dt_s,
        closed_from_established_per_s=sum(r.closed_from_established for r in rows) / dt_s,
        accepted_per_s=sum(r.accepted for r in rows) / dt_s,
        connects=connects,
        mean_latency_ns=sum(r.latency_total_ns for r in rows) / timed if timed else None,
        p50_latency_bucket=log2_quantile_bucket(hist, 0.50),
        p99_latency_bucket=log2_quantile_bucket(hist, 0.99),
    )


def derive_tcp_events(prev: TcpEventsSample, curr: TcpEventsSample, dt_s: float) -> TcpEventsView:
    """Rates of one interval.

    The probe empties its maps every tick, so `curr` alone covers the
    interval; `prev` is taken for the signature all derive functions share.
    """
    connections = sorted(
        (ConnectionRetransmitRate(c.family, c.saddr, c.sport, c.daddr, c.dport, c.state, c.pid, c.comm,
                                  c.retransmits, c.retransmits / dt_s) for c in curr.retransmits),
        key=lambda c: (-c.retransmits, c.saddr, c.sport, c.daddr, c.dport, c.state),
    )
    by_pid: dict[int | None, list[ProcessConnections]] = defaultdict(list)
    for p in curr.processes:
        by_pid[p.pid].append(p)
    processes = sorted(
        (_process_rate(rows, dt_s) for rows in by_pid.values()),
        key=lambda p: (-p.connects_per_s, -p.accepted_per_s, p.pid or 0),
    )
    return TcpEventsView(
        connections=tuple(connections),
        processes=tuple(processes),
        retransmits_per_s=sum(c.retransmits_per_s for c in connections),
        connects_per_s=sum(p.connects_per_s for p in processes),
        lost=dict(curr.lost),
    )


TCP_EVENTS: ProbeSpec[TcpEventsSample, TcpEventsView] = ProbeSpec(
    TcpEventsProbe.name, TcpEventsSample, TcpEventsView, derive_tcp_events, TcpEventsProbe
)
