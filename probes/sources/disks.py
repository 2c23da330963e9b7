"""The "disks" probe: sysstat's `iostat -xz` from /proc/diskstats and /sys/block.

One read of /proc/diskstats gives every block device's cumulative counters
(the same ones iostat reads from /sys/block/DEV/stat, one file per device);
/sys/block says which are whole disks and which partitions, read again only
when the set of devices changes. `derive_disks` turns two samples into
iostat's figures with sysstat 12.6's own formulas (rd_stats.c
compute_ext_disk_stats and iostat.c write_ext_stat), so a figure can be
checked against `iostat -dxz -m DEV 1` on the same box.

/proc/diskstats fields after major, minor and name (Documentation/admin-
guide/iostats.rst), 11 on every kernel since 2.6.25, 15 from 4.18 (discards),
17 from 5.5 (flushes):

    reads completed, reads merged, sectors read, ms reading,
    writes completed, writes merged, sectors written, ms writing,
    I/Os in flight, ms doing I/O, weighted ms doing I/O,
    discards completed, discards merged, sectors discarded, ms discarding,
    flushes completed, ms flushing

Sectors are always 512 bytes here, whatever the device's own sector size.
The counts and sectors are `unsigned long` (64 bits on a 64-bit kernel) and
only ever grow while the device exists; the ms fields are `unsigned int` and
wrap at 2^32 ms, which the weighted time of a busy queue reaches within a day
(a queue 64 deep: 18.6 hours), so their differences are taken modulo 2^32,
as sysstat's unsigned arithmetic does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import read_text

SECTOR_BYTES = 512
MIB = 1 << 20
# The ms fields are u32 in the kernel (see the module docstring).
MS_WRAP = 1 << 32

# A disk busy at least this share of the interval...
SATURATED_UTIL_PERCENT = 90.0
# ...with more than this many requests queued or in service on average
# (aqu-sz). %util alone says a device was never idle, not that it was full:
# an SSD, NVMe or RAID serves many requests at once and is far from its limit
# at 100 %. Requests waiting behind each other on top of it (aqu-sz above 1)
# is what makes a device the bottleneck.
SATURATED_QUEUE = 1.0

# Device kinds by name prefix, the kernel's names for each driver's disks;
# the first prefix that matches wins. A partition has its disk's kind.
KIND_PREFIXES: tuple[tuple[str, str], ...] = (
    ("loop", "loop"),
    ("zram", "zram"),
    ("ram", "ram"),
    ("dm-", "dm"),
    ("md", "md"),
    ("nvme", "nvme"),
    ("sd", "sd"),
    ("vd", "vd"),
    ("xvd", "xvd"),
    ("hd", "hd"),
    ("mmcblk", "mmc"),
    ("sr", "sr"),
    ("nbd", "nbd"),
    ("rbd", "rbd"),
    ("drbd", "drbd"),
    ("bcache", "bcache"),
    ("fd", "fd"),
)


def kind_of(name: str) -> str:
    """The device's kind (loop, ram, zram, dm, md, nvme, sd, vd...) from its name; "other" when unknown."""
    for prefix, kind in KIND_PREFIXES:
        if name.startswith(prefix):
            return kind
    return "other"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a device sits: its kind, its disk when it is a partition, its device-mapper name."""

    kind: str
    parent: str | None = None
    dm_name: str | None = None


@dataclass(frozen=True, slots=True)
class DiskCounters:
    """One /proc/diskstats line: a device's cumulative counters since it appeared.

    The discard fields are None on kernels before 4.18 and the flush fields
    before 5.5 (14- and 18-field lines): unknown, not zero.
    """

    name: str
    major: int
    minor: int
    read_ios: int
    read_merges: int
    read_sectors: int
    read_time_ms: int
    write_ios: int
    write_merges: int
    write_sectors: int
    write_time_ms: int
    # requests issued to the driver and not yet completed, now (a gauge)
    in_flight: int
    # ms during which at least one request was in flight
    io_time_ms: int
    # sum over requests of the ms each spent in flight (time x queue depth)
    weighted_time_ms: int
    discard_ios: int | None = None
    discard_merges: int | None = None
    discard_sectors: int | None = None
    discard_time_ms: int | None = None
    flush_ios: int | None = None
    flush_time_ms: int | None = None
    kind: str = "other"
    # the whole disk this partition is on; None for a whole disk
    parent: str | None = None
    # a device-mapper device's name (vg0-root), as `iostat -N` shows it
    dm_name: str | None = None


@dataclass(frozen=True, slots=True)
class DisksSample:
    """Every block device's counters at one tick."""

    devices: tuple[DiskCounters, ...]
    # time.monotonic_ns() as /proc/diskstats was read: the rates divide by
    # the time between two samples' readings (probes.model.views.covered_s)
    mono_ns: int | None = None


def parse_diskstats(text: str, placements: Mapping[str, Placement] | None = None) -> tuple[DiskCounters, ...]:
    """Every device of /proc/diskstats text, in the kernel's order.

    Lines of 14, 18 and 20 fields are read (more are accepted, the extra
    ignored, as sysstat does). The 7-field partition lines of kernels before
    2.6.25 carry no times, so no `-x` figure can come from them: skipped, as
    `iostat -x` skips them. A device missing from `placements` is taken for a
    whole disk with the kind its name says.
    """
    devices = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 14:
            continue
        try:
            v = [int(x) for x in f[3:20]]
            major, minor = int(f[0]), int(f[1])
        except ValueError:
            continue
        name = f[2]
        place = placements.get(name) if placements else None
        if place is None:
            place = Placement(kind_of(name))
        has_discard = len(v) >= 15
        has_flush = len(v) >= 17
        devices.append(DiskCounters(
            name=name, major=major, minor=minor,
            read_ios=v[0], read_merges=v[1], read_sectors=v[2], read_time_ms=v[3],
            write_ios=v[4], write_merges=v[5], write_sectors=v[6], write_time_ms=v[7],
            in_flight=v[8], io_time_ms=v[9], weighted_time_ms=v[10],
            discard_ios=v[11] if has_discard else None,
            discard_merges=v[12] if has_discard else None,
            discard_sectors=v[13] if has_discard else None,
            discard_time_ms=v[14] if has_discard else None,
            flush_ios=v[15] if has_flush else None,
            flush_time_ms=v[16] if has_flush else None,
            kind=place.kind, parent=place.parent, dm_name=place.dm_name,
        ))
    return tuple(devices)


def read_placements(names: list[str], sys: str = "/sys") -> dict[str, Placement]:
    """Each device's Placement from sysfs.

    A whole disk has a directory in /sys/block; a partition's
    /sys/class/block entry has a `partition` file and links into its disk's
    directory. sysfs spells a '/' of a name (cciss/c0d0) as '!'. Without
    /sys every device is taken for a whole disk.
    """
    out: dict[str, Placement] = {}
    for name in names:
        sysname = name.replace("/", "!")
        if os.path.isdir(f"{sys}/block/{sysname}"):
            dm = (read_text(f"{sys}/block/{sysname}/dm/name") or "").strip()
            out[name] = Placement(kind_of(name), None, dm or None)
            continue
        entry = f"{sys}/class/block/{sysname}"
        if os.path.exists(f"{entry}/partition"):
            parent = os.path.basename(os.path.dirname(os.path.realpath(entry))).replace("!", "/")
            out[name] = Placement(kind_of(parent), parent)
        else:
            out[name] = Placement(kind_of(name))
    return out


class DisksProbe:
    """Samples every block device's I/O counters from /proc/diskstats."""

    name: ClassVar[str] = "disks"

    def __init__(self, proc: str = "/proc", sys: str = "/sys") -> None:
        self._proc = proc
        self._sys = sys
        # the (name, major, minor) of every device when placements were read
        self._known: tuple[tuple[str, int, int], ...] = ()
        self._placements: dict[str, Placement] = {}

    def start(self) -> None:
        if read_text(f"{self._proc}/diskstats") is None:
            raise ProbeUnavailable(
                f"{self._proc}/diskstats is not readable",
                "mount procfs on /proc (in a container, share the host's /proc)",
            )

    def sample(self) -> DisksSample:
        mono_ns = time.monotonic_ns()
        text = read_text(f"{self._proc}/diskstats") or ""
        devices = parse_diskstats(text, self._placements)
        known = tuple((d.name, d.major, d.minor) for d in devices)
        if known != self._known:
            # A device came or went (a loop attached, a partition table
            # re-read): ask sysfs again, and only then.
            self._placements = read_placements([d.name for d in devices], self._sys)
            self._known = known
            devices = parse_diskstats(text, self._placements)
        return DisksSample(devices, mono_ns)

    def stop(self) -> None:
        self._known = ()
        self._placements = {}


@dataclass(frozen=True, slots=True)
class DiskRates:
    """One device's `iostat -x` figures over an interval (sysstat 12.6).

    Δ is the increase of a /proc/diskstats counter between the two samples,
    t the seconds between their readings; ms counters' Δ is taken modulo
    2^32. Each figure's iostat column and formula:

    Attributes:
        reads_per_s: r/s = Δ reads completed / t.
        writes_per_s: w/s = Δ writes completed / t.
        read_mib_per_s: rMB/s of `iostat -m` = Δ sectors read / 2048 / t.
            iostat's "MB" is MiB: 2048 sectors of 512 bytes.
        write_mib_per_s: wMB/s = Δ sectors written / 2048 / t.
        read_await_ms: r_await = Δ ms reading / Δ reads completed: the
            mean time from issue to completion, queueing included. None when
            no read completed (iostat prints 0.00 there).
        write_await_ms: w_await = Δ ms writing / Δ writes completed; None
            when no write completed.
        queue_size: aqu-sz = Δ weighted ms / (t x 1000): the mean number of
            requests in flight.
        util_percent: %util = Δ ms doing I/O / (t x 1000) x 100: the share
            of the interval with at least one request in flight. Not capped
            at 100, as iostat does not cap it.
        discards_per_s: d/s = Δ discards completed / t; None before 4.18.
        discard_mib_per_s: dMB/s = Δ sectors discarded / 2048 / t.
        discard_await_ms: d_await = Δ ms discarding / Δ discards completed.
        flushes_per_s: f/s = Δ flushes completed / t; None before 5.5.
        flush_await_ms: f_await = Δ ms flushing / Δ flushes completed.
    """

    reads_per_s: float
    writes_per_s: float
    read_mib_per_s: float
    write_mib_per_s: float
    read_await_ms: float | None
    write_await_ms: float | None
    queue_size: float
    util_percent: float
    discards_per_s: float | None
    discard_mib_per_s: float | None
    discard_await_ms: float | None
    flushes_per_s: float | None
    flush_await_ms: float | None


@dataclass(frozen=True, slots=True)
class DiskView:
    """A device's row: its identity, its rates, and whether the pane shows it.

    `rates` is None when the device has no comparable earlier reading: it
    is new, or it was re-created (a counter that only grows went back, or
    its device number changed), so no rate is known for this interval.
    `idle` is `iostat -z`'s test: no read, write, discard or flush completed
    in the interval (or, with no rates, none ever); the pane hides idle
    devices. `saturated`: util_percent >= SATURATED_UTIL_PERCENT with
    queue_size > SATURATED_QUEUE (see those constants).
    """

    name: str
    kind: str
    major: int
    minor: int
    dm_name: str | None
    # the whole disk this partition is on; None for a whole disk
    parent: str | None
    in_flight: int
    rates: DiskRates | None
    idle: bool
    saturated: bool
    # a whole disk's partitions, in the kernel's order
    partitions: tuple[DiskView, ...] = ()


@dataclass(frozen=True, slots=True)
class DisksView:
    """Whole disks, each with its partitions folded under it."""

    disks: tuple[DiskView, ...]

    @property
    def active(self) -> tuple[DiskView, ...]:
        """The disks `iostat -z` would print: those not idle in the interval."""
        return tuple(d for d in self.disks if not d.idle)


# Counters that only grow while a device exists; one that went back means
# the device was removed and created again under the same name.
_GROWING = (
    "read_ios", "read_merges", "read_sectors", "write_ios", "write_merges", "write_sectors",
    "discard_ios", "discard_merges", "discard_sectors", "flush_ios",
)


def comparable(prev: DiskCounters, curr: DiskCounters) -> bool:
    """Whether two readings are of the same device's life, so their differences are its I/O.

    sysstat, on a device whose counters went back, counts from zero; that
    is right only if it was re-created just after the earlier reading, so
    here there is no rate for that interval instead.
    """
    if (prev.major, prev.minor) != (curr.major, curr.minor):
        return False
    for field in _GROWING:
        before, after = getattr(prev, field), getattr(curr, field)
        if before is not None and after is not None and after < before:
            return False
    return True


def _delta(prev: int | None, curr: int | None) -> int | None:
    return None if prev is None or curr is None else curr - prev


def _ms(prev: int, curr: int) -> int:
    return (curr - prev) % MS_WRAP


def _ms_or_none(prev: int | None, curr: int | None) -> int | None:
    return None if prev is None or curr is None else _ms(prev, curr)


def _per(ms: int | None, ios: int | None) -> float | None:
    # No request completed: no mean time (iostat prints 0.00).
    return ms / ios if ms is not None and ios else None


def disk_rates(prev: DiskCounters, curr: DiskCounters, dt_s: float) -> DiskRates:
    """iostat -x's figures for one device between two comparable readings (see DiskRates)."""
    reads = curr.read_ios - prev.read_ios
    writes = curr.write_ios - prev.write_ios
    discards = _delta(prev.discard_ios, curr.discard_ios)
    flushes = _delta(prev.flush_ios, curr.flush_ios)
    discard_sectors = _delta(prev.discard_sectors, curr.discard_sectors)
    sectors_to_mib_per_s = SECTOR_BYTES / MIB / dt_s
    interval_ms = dt_s * 1000.0
    return DiskRates(
        reads_per_s=reads / dt_s,
        writes_per_s=writes / dt_s,
        read_mib_per_s=(curr.read_sectors - prev.read_sectors) * sectors_to_mib_per_s,
        write_mib_per_s=(curr.write_sectors - prev.write_sectors) * sectors_to_mib_per_s,
        read_await_ms=_per(_ms(prev.read_time_ms, curr.read_time_ms), reads),
        write_await_ms=_per(_ms(prev.write_time_ms, curr.write_time_ms), writes),
        queue_size=_ms(prev.weighted_time_ms, curr.weighted_time_ms) / interval_ms,
        util_percent=_ms(prev.io_time_ms, curr.io_time_ms) / interval_ms * 100.0,
        discards_per_s=None if discards is None else discards / dt_s,
        discard_mib_per_s=None if discard_sectors is None else discard_sectors * sectors_to_mib_per_s,
        discard_await_ms=_per(_ms_or_none(prev.discard_time_ms, curr.discard_time_ms), discards),
        flushes_per_s=None if flushes is None else flushes / dt_s,
        flush_await_ms=_per(_ms_or_none(prev.flush_time_ms, curr.flush_time_ms), flushes),
    )


def _never_did_io(d: DiskCounters) -> bool:
    return not (d.read_ios or d.write_ios or d.discard_ios or d.flush_ios)


def disk_view(prev: DiskCounters | None, curr: DiskCounters, dt_s: float) -> DiskView:
    """One device's row; `prev` is its reading in the earlier sample, None when it had none."""
    rates = disk_rates(prev, curr, dt_s) if prev is not None and dt_s > 0 and comparable(prev, curr) else None
    if rates is None:
        idle = _never_did_io(curr)
    else:
        # iostat -z: no request of any kind completed in the interval.
        idle = not (rates.reads_per_s or rates.writes_per_s or rates.discards_per_s or rates.flushes_per_s)
    saturated = (
        rates is not None
        and rates.util_percent >= SATURATED_UTIL_PERCENT
        and rates.queue_size > SATURATED_QUEUE
    )
    return DiskView(
        name=curr.name, kind=curr.kind, major=curr.major, minor=curr.minor, dm_name=curr.dm_name,
        parent=curr.parent, in_flight=curr.in_flight, rates=rates, idle=idle, saturated=saturated,
    )


def derive_disks(prev: DisksSample, curr: DisksSample, dt_s: float) -> DisksView:
    """Every device of `curr` with its rates since `prev`, partitions folded under their disks.

    A device only in `prev` (detached, removed) is simply not in the view.
    A partition whose disk is not in the sample is listed as a disk.
    """
    before = {d.name: d for d in prev.devices}
    views = [disk_view(before.get(d.name), d, dt_s) for d in curr.devices]
    names = {v.name for v in views}
    partitions: dict[str, list[DiskView]] = {}
    for v in views:
        if v.parent is not None and v.parent in names:
            partitions.setdefault(v.parent, []).append(v)
    disks = []
    for v in views:
        if v.parent is not None and v.parent in names:
            continue
        parts = partitions.get(v.name)
        disks.append(replace(v, partitions=tuple(parts)) if parts else v)
    return DisksView(tuple(disks))


DISKS: ProbeSpec[DisksSample, DisksView] = ProbeSpec(DisksProbe.name, DisksSample, DisksView, derive_disks, DisksProbe)
