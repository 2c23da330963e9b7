"""The "net" probe: per-interface traffic counters, as `sar -n DEV` and `sar -n EDEV` read them.

Counters come from /proc/net/dev, the file sysstat's sar reads, so both
tools see the same numbers; /proc/net/dev is per network namespace, so a
probe given another process's proc root (`/proc/<pid>`) sees that
process's namespace. Link state, speed and duplex come from
/sys/class/net/<name>/, which shows the namespace sysfs was mounted in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import read_text

# sar's kB is 1024 bytes (pr_stats.c prints rx_bytes per second / 1024 as
# rxkB/s), so its MB is 1024 * 1024.
BYTES_PER_MIB = 1024 * 1024

# operstate values (RFC 2863, Documentation/ABI/testing/sysfs-class-net)
# that mean the link cannot pass traffic. "unknown" (lo, tun, many virtual
# devices) is not down: such devices carry traffic without reporting state.
DOWN_STATES = frozenset({"down", "lowerlayerdown", "notpresent"})


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    """One /proc/net/dev line: counters since the interface was registered.

    The kernel (net/core/net-procfs.c) folds several driver counters into
    some columns: rx_dropped includes rx_missed_errors, rx_frame_errors is
    length + over + crc + frame errors (so ring overruns show there and
    as rx_fifo_errors), tx_carrier_errors is carrier + aborted + window +
    heartbeat errors.
    """

    name: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    rx_fifo_errors: int
    rx_frame_errors: int
    rx_compressed: int
    rx_multicast: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int
    tx_fifo_errors: int
    tx_collisions: int
    tx_carrier_errors: int
    tx_compressed: int
    # /sys/class/net/<name>/ifindex: a deleted interface re-created under the
    # same name gets a new one, which tells a reset apart from a wrap.
    ifindex: int | None = None
    # /sys/class/net/<name>/operstate ("up", "down", "unknown", ...)
    operstate: str | None = None
    # /sys/class/net/<name>/speed in Mb/s; None where the driver reports
    # -1 or the read fails (EINVAL on a link that is down, lo, virtio).
    speed_mbps: int | None = None
    # /sys/class/net/<name>/duplex: "full" or "half"; None when unknown
    duplex: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkSample:
    """Every interface's counters of one tick."""

    interfaces: tuple[InterfaceCounters, ...]
    # time.monotonic_ns() as /proc/net/dev was read
    mono_ns: int


@dataclass(frozen=True, slots=True)
class InterfaceView:
    """One interface over one interval.

    Rates are counter differences divided by the interval's seconds, as
    sar's S_VALUE does. They are None for an interface first seen in this
    sample, and for one whose byte or packet counters went backwards or
    whose ifindex changed (deleted and re-created, or a driver reset):
    sar then counts from zero (check_net_dev_reg), which shows everything
    since registration as one interval's traffic; orac shows no rate.

    `rx_mib_per_s` is sar's rxkB/s / 1024: sysstat's kB is 1024 bytes, so
    its MB, and this one, is 1048576 bytes. Errors, drops and fifo errors
    per second are sar -n EDEV's rxerr/s, rxdrop/s, rxfifo/s (and tx).

    `ifutil_percent` is sar's %ifutil (sa_common.c compute_ifutil): with
    speed in Mb/s, full duplex max(rx, tx) bytes/s * 800 / (speed * 10**6),
    half duplex (rx + tx) * 800 / (speed * 10**6). sar prints 0.00 where
    the speed or duplex is unknown (it reads the speed only once duplex is
    known); orac gives None there.
    """

    name: str
    operstate: str | None
    speed_mbps: int | None
    rx_bytes_per_s: float | None
    tx_bytes_per_s: float | None
    rx_packets_per_s: float | None
    tx_packets_per_s: float | None
    rx_errors_per_s: float | None
    tx_errors_per_s: float | None
    rx_drops_per_s: float | None
    tx_drops_per_s: float | None
    rx_fifo_errors_per_s: float | None
    tx_fifo_errors_per_s: float | None
    ifutil_percent: float | None
    # no packet either way in the interval (False while no rate is known)
    idle: bool
    down: bool

    @property
    def rx_mib_per_s(self) -> float | None:
        return None if self.rx_bytes_per_s is None else self.rx_bytes_per_s / BYTES_PER_MIB

    @property
    def tx_mib_per_s(self) -> float | None:
        return None if self.tx_bytes_per_s is None else self.tx_bytes_per_s / BYTES_PER_MIB


@dataclass(frozen=True, slots=True)
class NetworkView:
    interfaces: tuple[InterfaceView, ...]


def parse_net_dev(text: str) -> tuple[InterfaceCounters, ...]:
    """Parse /proc/net/dev; the two header lines have no colon.

    The name ends at the first colon, as sar reads it (the kernel allows
    no colon in a name), and a large counter may follow it without a space.
    """
    interfaces = []
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        name = name.strip()
        try:
            values = [int(v) for v in rest.split()]
        except ValueError:
            continue
        if not colon or not name or len(values) < 16:
            continue
        interfaces.append(InterfaceCounters(
            name=name,
            rx_bytes=values[0],
            rx_packets=values[1],
            rx_errors=values[2],
            rx_dropped=values[3],
            rx_fifo_errors=values[4],
            rx_frame_errors=values[5],
            rx_compressed=values[6],
            rx_multicast=values[7],
            tx_bytes=values[8],
            tx_packets=values[9],
            tx_errors=values[10],
            tx_dropped=values[11],
            tx_fifo_errors=values[12],
            tx_collisions=values[13],
            tx_carrier_errors=values[14],
            tx_compressed=values[15],
        ))
    return tuple(interfaces)


def parse_speed_mbps(text: str | None) -> int | None:
    """/sys/class/net/<name>/speed: Mb/s, None for -1 (unknown) or no file."""
    if text is None:
        return None
    try:
        speed = int(text.strip())
    except ValueError:
        return None
    return speed if speed > 0 else None


def parse_duplex(text: str | None) -> str | None:
    duplex = (text or "").strip()
    return duplex if duplex in ("full", "half") else None


def parse_int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def ifutil_percent(rx_bytes_per_s: float, tx_bytes_per_s: float, speed_mbps: int | None, duplex: str | None) -> float | None:
    """sar's %ifutil (compute_ifutil); None where the speed or duplex is unknown."""
    if speed_mbps is None or duplex is None:
        return None
    speed_bps = speed_mbps * 1_000_000
    if duplex == "full":
        return max(rx_bytes_per_s, tx_bytes_per_s) * 800 / speed_bps
    return (rx_bytes_per_s + tx_bytes_per_s) * 800 / speed_bps


def _rate(prev: int | None, curr: int | None, dt_s: float) -> float | None:
    if prev is None or curr is None or curr < prev:
        return None
    return (curr - prev) / dt_s


def _is_reset(prev: InterfaceCounters, curr: InterfaceCounters) -> bool:
    if prev.ifindex is not None and curr.ifindex is not None and prev.ifindex != curr.ifindex:
        return True
    return (
        curr.rx_bytes < prev.rx_bytes or curr.tx_bytes < prev.tx_bytes
        or curr.rx_packets < prev.rx_packets or curr.tx_packets < prev.tx_packets
    )


def interface_view(prev: InterfaceCounters | None, curr: InterfaceCounters, dt_s: float) -> InterfaceView:
    down = curr.operstate in DOWN_STATES
    if prev is None or dt_s <= 0 or _is_reset(prev, curr):
        return InterfaceView(
            curr.name, curr.operstate, curr.speed_mbps,
            None, None, None, None, None, None, None, None, None, None, None,
            idle=False, down=down,
        )
    rx_bytes_s = (curr.rx_bytes - prev.rx_bytes) / dt_s
    tx_bytes_s = (curr.tx_bytes - prev.tx_bytes) / dt_s
    return InterfaceView(
        name=curr.name,
        operstate=curr.operstate,
        speed_mbps=curr.speed_mbps,
        rx_bytes_per_s=rx_bytes_s,
        tx_bytes_per_s=tx_bytes_s,
        rx_packets_per_s=(curr.rx_packets - prev.rx_packets) / dt_s,
        tx_packets_per_s=(curr.tx_packets - prev.tx_packets) / dt_s,
        rx_errors_per_s=_rate(prev.rx_errors, curr.rx_errors, dt_s),
        tx_errors_per_s=_rate(prev.tx_errors, curr.tx_errors, dt_s),
        rx_drops_per_s=_rate(prev.rx_dropped, curr.rx_dropped, dt_s),
        tx_drops_per_s=_rate(prev.tx_dropped, curr.tx_dropped, dt_s),
        rx_fifo_errors_per_s=_rate(prev.rx_fifo_errors, curr.rx_fifo_errors, dt_s),
        tx_fifo_errors_per_s=_rate(prev.tx_fifo_errors, curr.tx_fifo_errors, dt_s),
        ifutil_percent=ifutil_percent(rx_bytes_s, tx_bytes_s, curr.speed_mbps, curr.duplex),
        idle=curr.rx_packets == prev.rx_packets and curr.tx_packets == prev.tx_packets,
        down=down,
    )


def derive_network(prev: NetworkSample, curr: NetworkSample, dt_s: float) -> NetworkView:
    """One view per interface present now; an interface gone since `prev` is dropped."""
    before = {i.name: i for i in prev.interfaces}
    return NetworkView(tuple(interface_view(before.get(i.name), i, dt_s) for i in curr.interfaces))


class NetworkProbe:
    """Samples /proc/net/dev and each interface's link attributes.

    Args:
        proc: The proc root; `/proc/<pid>` reads that process's network
            namespace (/proc/<pid>/net/dev).
        sys_class_net: Where link attributes are read. sysfs shows the
            namespace it was mounted in, so with another namespace's proc
            root pass that namespace's sysfs, or None to leave state,
            speed and duplex unknown rather than read a same-named
            interface of the wrong namespace.
    """

    name: ClassVar[str] = "net"

    def __init__(self, proc: str = "/proc", sys_class_net: str | None = "/sys/class/net") -> None:
        self._proc = proc
        self._sys = sys_class_net

    def start(self) -> None:
        if read_text(f"{self._proc}/net/dev") is None:
            raise ProbeUnavailable(f"{self._proc}/net/dev is not readable", "mount procfs on /proc")

    def sample(self) -> NetworkSample:
        mono_ns = time.monotonic_ns()
        interfaces = parse_net_dev(read_text(f"{self._proc}/net/dev") or "")
        if self._sys is not None:
            interfaces = tuple(self._with_link(i, f"{self._sys}/{i.name}") for i in interfaces)
        return NetworkSample(interfaces, mono_ns)

    @staticmethod
    def _with_link(counters: InterfaceCounters, path: str) -> InterfaceCounters:
        operstate = read_text(f"{path}/operstate")
        return replace(
            counters,
            ifindex=parse_int(read_text(f"{path}/ifindex")),
            operstate=operstate.strip() if operstate else None,
            speed_mbps=parse_speed_mbps(read_text(f"{path}/speed")),
            duplex=parse_duplex(read_text(f"{path}/duplex")),
        )

    def stop(self) -> None:
        pass


NETWORK: ProbeSpec[NetworkSample, NetworkView] = ProbeSpec(NetworkProbe.name, NetworkSample, NetworkView, derive_network, NetworkProbe)
