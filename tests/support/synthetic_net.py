"""Hand-made net, tcp and cgroups samples with known rates, added to synthetic.frames()."""

from __future__ import annotations

import dataclasses

from probes.model.frame import Frame
from probes.sources.cgroups import CgroupCpu, CgroupCpuSample
from probes.sources.kmsg import KernelEvent, KmsgSample
from probes.sources.network import InterfaceCounters, NetworkSample
from probes.sources.tcp import SockStat, TcpCounters, TcpSample
from probes.sources.tcp_events import HIST_SLOTS, ConnectionRetransmits, ProcessConnections, TcpEventsSample
from support.synthetic import PROCESSES, S, frames

MIB = 1024**2
# nginx's cgroup in synthetic.PROCESSES: held at a 20 % quota
THROTTLED_CGROUP = PROCESSES[4][6]


def interface(name: str, t: int, rx_mib: int, tx_mib: int, *, speed: int | None = 10000,
              operstate: str = "up", rx_drops: int = 0, ifindex: int = 2) -> InterfaceCounters:
    """Counters after t seconds of rx_mib and tx_mib MiB a second, 1 KiB packets."""
    rx, tx = 10 * MIB + rx_mib * MIB * t, 20 * MIB + tx_mib * MIB * t
    return InterfaceCounters(
        name, rx, rx // 1024, 0, rx_drops * t, 0, 0, 0, 0, tx, tx // 1024, 0, 0, 0, 0, 0, 0,
        ifindex=ifindex, operstate=operstate, speed_mbps=speed, duplex="full" if speed else None,
    )


def net_sample(t: int) -> NetworkSample:
    return NetworkSample((
        interface("lo", t, 0, 0, speed=None, operstate="unknown", ifindex=1),
        interface("eth0", t, 110, 12, rx_drops=3),
        interface("docker0", t, 0, 0, speed=None, operstate="down", ifindex=3),
        interface("veth3f2a9c1", t, 12, 110, ifindex=4),
    ), (1000 + t) * S)


def tcp_sample(t: int) -> TcpSample:
    counters = TcpCounters(
        active_opens=1000 + 25 * t, passive_opens=5000 + 140 * t, attempt_fails=10 + 2 * t, estab_resets=40 + t,
        curr_estab=212, in_segs=10**6 + 98_000 * t, out_segs=2 * 10**6 + 97_000 * t,
        retrans_segs=500 + 3_000 * t, in_errs=0, out_rsts=70 + 6 * t, listen_overflows=0, listen_drops=4 * t,
        timeouts=9 + 12 * t, syn_retrans=1, lost_retransmits=0, aborts_on_timeout=0,
    )
    sockstat = SockStat(
        sockets_used=410, tcp_inuse=230, tcp_orphan=3, tcp_tw=57, tcp_alloc=241, tcp_mem_pages=96,
        tcp6_inuse=8, udp_inuse=4, udp6_inuse=1,
    )
    states = {"ESTAB": 212, "LISTEN": 14, "TIME-WAIT": 57, "CLOSE-WAIT": 2, "SYN-SENT": 1}
    return TcpSample(counters, sockstat, states, (1000 + t) * S)


def cgroups_sample(t: int) -> CgroupCpuSample:
    return CgroupCpuSample(1, (
        # 20 % quota, used to the full, throttled in 9 of 10 periods for 0.8 s of the second
        CgroupCpu(THROTTLED_CGROUP, 20_000, 100_000, 100 + 10 * t, 80 + 9 * t, 5 * S + 8 * S // 10 * t,
                  30 * S + 2 * S // 10 * t),
        # two CPUs' quota, a quarter of one used, never throttled
        CgroupCpu("/system.slice/postgresql.service", 200_000, 100_000, 50 + 10 * t, 0, 0, 90 * S + S // 4 * t),
    ), (1000 + t) * S)


def kmsg_sample(t: int) -> KmsgSample:
    """A line from before orac started; in the second sample, an OOM kill of nginx's worker."""
    events = [KernelEvent(700, 3 * 86400 * 10**6, 6, 0, "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
                          earlier=True)]
    if t:
        events += [
            KernelEvent(701, (3 * 86400 + 14_700) * 10**6, 6, 0,
                        "oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/system.slice/nginx,task=nginx,pid=1200,uid=33",
                        "oom"),
            KernelEvent(702, (3 * 86400 + 14_700) * 10**6 + 20, 3, 0,
                        "Memory cgroup out of memory: Killed process 1200 (nginx) total-vm:204800kB, anon-rss:49152kB",
                        "oom-kill", pid=1200, comm="nginx", cgroup="/system.slice/nginx"),
        ]
    # read on the records' clock (time since boot): the box is up 3 days, 04:05, as its uptime says
    return KmsgSample(tuple(events), events[-1].seq, 0, 0, (3 * 86400 + 14_700 + t) * S)


def _hist(**slots: int) -> tuple[int, ...]:
    out = [0] * HIST_SLOTS
    for slot, n in slots.items():
        out[int(slot.removeprefix("s"))] = n
    return tuple(out)


def tcp_events_sample(t: int) -> TcpEventsSample:
    """A second's events: curl's connection retransmits 12 times, an accepted one 3; curl connects 20 times."""
    return TcpEventsSample(
        retransmits=(
            ConnectionRetransmits(4, "10.1.0.5", 51234, "93.184.216.34", 443, "ESTAB", 2301, "curl", 12),
            ConnectionRetransmits(6, "2001:db8::5", 8080, "2001:db8::77", 40112, "ESTAB", None, None, 3),
        ),
        processes=(
            # 20 connects, 18 in [16, 32) us and 2 in [1, 2) ms; one refused
            ProcessConnections(2301, "curl", 20, 19, 1, 0, 0, 18 * 20_000 + 2 * 1_500_000, _hist(s14=18, s20=1, s21=1)),
            ProcessConnections(None, None, 0, 0, 0, 2, 140, 0, _hist()),
        ),
        lost={"owner_map_full": 0, "connection_map_full": 0, "process_map_full": 0},
        mono_ns=(1000 + t) * S,
    )


def net_frames() -> list[Frame]:
    return [
        dataclasses.replace(f, samples={**f.samples, "net": net_sample(t), "tcp": tcp_sample(t),
                                        "tcpevents": tcp_events_sample(t),
                                        "cgroups": cgroups_sample(t), "kmsg": kmsg_sample(t)})
        for t, f in enumerate(frames())
    ]
