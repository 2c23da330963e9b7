"""The verdict's network, TCP, cgroup and kernel log rules from fixed frames, at their thresholds' edges.

The views are tests/support/synthetic_net.py's (eth0 at 110 MiB/s of a
10 Gb/s link with 3 drops a second, TCP retransmitting 3 % with 4 listen
drops a second, nginx's cgroup throttled in 9 of 10 periods at its quota,
an OOM kill of nginx), with one figure changed a test at a time.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from support.synthetic_net import THROTTLED_CGROUP, net_frames

from probes.contract import Views
from probes.model.verdict import KMSG_RECENT_S, Cell, State, verdict
from probes.model.views import derive_frame
from probes.sources.kmsg import KernelEvent

FRAMES = net_frames()
BASE = derive_frame(*FRAMES)
WALL_NS = FRAMES[1].wall_ns


def views(**changes: Any) -> Views:
    out = dict(BASE)
    for name, fields in changes.items():
        out[name] = replace(out[name], **fields) if isinstance(fields, dict) else fields
    return Views(out)


def cells(v: Views, prefix: str) -> list[Cell]:
    return [c for c in verdict(v, wall_ns=WALL_NS) if c.resource.startswith(prefix)]


def eth0(**fields: Any) -> Views:
    net = BASE["net"]
    return views(net=replace(net, interfaces=tuple(
        replace(i, **fields) if i.name == "eth0" else i for i in net.interfaces)))


# --- network interfaces -------------------------------------------------------------


def test_each_busy_interface_has_a_cell() -> None:
    found = cells(BASE, "net")
    assert [c.resource for c in found] == ["net eth0", "net veth3f2a9c1"]
    assert found[0].summary == "eth0 warning: 3 drops/s"
    assert found[1].state is State.OK and found[1].summary == "veth3f2a9c1 ok: 110.0 MiB/s tx"


@pytest.mark.parametrize(
    ("drops", "errors", "util", "state"),
    [
        (0.0, 0.0, 9.0, State.OK),
        (0.99, 0.0, 9.0, State.OK),
        (1.0, 0.0, 9.0, State.WARNING),
        (99.0, 0.0, 9.0, State.WARNING),
        (100.0, 0.0, 9.0, State.SATURATED),
        (0.0, 1.0, 9.0, State.WARNING),
        (0.0, 10.0, 9.0, State.ERROR),
        (0.0, 0.0, 79.9, State.OK),
        (0.0, 0.0, 80.0, State.WARNING),
        (0.0, 0.0, 100.0, State.WARNING),
    ],
)
def test_interface_drops_errors_and_util(drops: float, errors: float, util: float, state: State) -> None:
    v = eth0(rx_drops_per_s=drops, tx_drops_per_s=0.0, rx_errors_per_s=errors, ifutil_percent=util)
    assert cells(v, "net eth0")[0].state is state


def test_overruns_count_as_drops() -> None:
    v = eth0(rx_drops_per_s=0.0, rx_fifo_errors_per_s=60.0, tx_fifo_errors_per_s=40.0)
    assert cells(v, "net eth0")[0].summary == "eth0 saturated: 100 drops/s"


def test_idle_interfaces_are_one_ok_cell() -> None:
    net = BASE["net"]
    idle = views(net=replace(net, interfaces=tuple(replace(i, idle=True) for i in net.interfaces)))
    assert [(c.resource, c.state, c.summary) for c in cells(idle, "net")] == [("net", State.OK, "net ok: idle")]


def test_loopback_has_a_cell_only_when_it_drops() -> None:
    net = BASE["net"]
    lo = next(i for i in net.interfaces if i.name == "lo")
    busy = replace(lo, idle=False, rx_bytes_per_s=1e6)
    assert not cells(views(net=replace(net, interfaces=(busy,))), "net lo")
    dropping = replace(busy, rx_drops_per_s=5.0)
    assert cells(views(net=replace(net, interfaces=(dropping,))), "net lo")[0].state is State.WARNING


# --- TCP ------------------------------------------------------------------------------


def test_tcp_retransmits_and_listen_drops() -> None:
    c = cells(BASE, "tcp")[0]
    assert (c.state, c.summary) == (State.WARNING, "TCP warning: retrans 3.0 %, 4 listen drops/s")


@pytest.mark.parametrize(
    ("retrans", "sent", "drops", "state"),
    [
        (0.99, 1000.0, 0.0, State.OK),
        (1.0, 1000.0, 0.0, State.WARNING),
        (4.99, 1000.0, 0.0, State.WARNING),
        (5.0, 1000.0, 0.0, State.SATURATED),
        # 5 % of a handful of segments: one lost packet, not a path in trouble
        (5.0, 99.0, 0.0, State.OK),
        (0.0, 1000.0, 0.99, State.OK),
        (0.0, 1000.0, 1.0, State.WARNING),
        (0.0, 1000.0, 10.0, State.SATURATED),
    ],
)
def test_tcp_edges(retrans: float, sent: float, drops: float, state: State) -> None:
    v = views(tcp={"retrans_percent": retrans, "out_segs_per_s": sent, "retrans_segs_per_s": 0.0,
                   "listen_drops_per_s": drops})
    assert cells(v, "tcp")[0].state is state


def test_listen_overflows_stand_in_for_drops_the_kernel_does_not_count() -> None:
    v = views(tcp={"retrans_percent": 0.0, "listen_drops_per_s": None, "listen_overflows_per_s": 12.0})
    assert cells(v, "tcp")[0].state is State.SATURATED


# --- cgroups ----------------------------------------------------------------------------


def test_a_cgroup_throttled_at_its_quota_is_saturated_and_names_its_busiest_process() -> None:
    [c] = cells(BASE, "cgroup")
    assert c.resource == f"cgroup {THROTTLED_CGROUP}"
    assert c.state is State.SATURATED
    assert c.summary == "docker-3f2a9c1b8e7d saturated: throttled 90 % of periods, 0.20 of 0.20 CPUs"
    assert c.contributor is not None and (c.contributor.pid, c.contributor.name) == (1200, "nginx")


def cgroup(periods: float | None, used: float | None) -> Views:
    view = BASE["cgroups"]
    first = replace(view.cgroups[0], throttled_periods_percent=periods, usage_of_quota_percent=used)
    return views(cgroups=replace(view, cgroups=(first, *view.cgroups[1:])))


@pytest.mark.parametrize(
    ("periods", "used", "state"),
    [
        (24.9, 100.0, None),
        (25.0, 100.0, State.WARNING),
        (49.9, 100.0, State.WARNING),
        (50.0, 90.0, State.SATURATED),
        # throttled in bursts, far from its quota over the interval
        (50.0, 89.9, State.WARNING),
        (None, None, None),
    ],
)
def test_cgroup_edges(periods: float | None, used: float | None, state: State | None) -> None:
    assert [c.state for c in cells(cgroup(periods, used), "cgroup")] == ([] if state is None else [state])


# --- the kernel's log --------------------------------------------------------------------


def kernel_log(*events: KernelEvent, new: tuple[KernelEvent, ...] = (), read_s: float = 1001.0) -> Views:
    return views(kmsg={"events": (*events, *new), "new_events": new, "mono_ns": int(read_s * 1e9)})


def oom(seq: int, ts_s: float, earlier: bool = False) -> KernelEvent:
    return KernelEvent(seq, int(ts_s * 1e6), 3, 0, "Out of memory: Killed process 812 (java)", "oom-kill",
                       earlier, pid=812, comm="java")


def test_an_oom_kill_in_the_interval_is_an_error_with_its_time_and_victim() -> None:
    c = cells(kernel_log(new=(oom(9, 1000.5),)), "kmsg")[0]
    at = time.strftime("%H:%M:%S", time.localtime((WALL_NS - 500_000_000) / 1e9))
    assert (c.state, c.summary) == (State.ERROR, f"OOM kill {at}: java (pid 812)")
    # the victim is gone: nothing to open but the log's pane
    assert c.contributor is None and c.pane == "kmsg"


@pytest.mark.parametrize(
    ("age_s", "state"), [(KMSG_RECENT_S - 1, State.ERROR), (KMSG_RECENT_S + 1, State.OK)],
)
def test_an_error_stays_for_some_minutes(age_s: float, state: State) -> None:
    c = cells(kernel_log(oom(9, 1001.0 - age_s, earlier=True)), "kmsg")[0]
    assert c.state is state


@pytest.mark.parametrize(
    ("kind", "state"),
    [("hung-task", State.ERROR), ("io-error", State.ERROR), ("xid", State.ERROR), ("segfault", State.OK), ("", State.OK)],
)
def test_which_kinds_are_errors(kind: str, state: State) -> None:
    event = KernelEvent(9, 1000 * 10**6, 3, 0, "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus", kind, xid=79)
    assert cells(kernel_log(new=(event,)), "kmsg")[0].state is state


def test_a_hung_task_names_the_live_process() -> None:
    event = KernelEvent(9, 1000 * 10**6, 3, 0, "INFO: task postgres:978 blocked for more than 120 seconds.",
                        "hung-task", pid=978, comm="postgres")
    c = cells(kernel_log(oom(8, 999.0), new=(event,)), "kmsg")[0]
    assert c.summary.startswith("hung task ") and c.summary.endswith(": postgres (pid 978) (+1 more)")
    assert c.contributor is not None and c.contributor.pid == 978


def test_without_the_frame_time_the_kernel_clock_is_shown() -> None:
    c = next(c for c in verdict(kernel_log(new=(oom(9, 1000.0),))) if c.resource == "kmsg")
    assert c.summary == "OOM kill [1000 s]: java (pid 812)"

