"""The "blockio" probe: block request latency per device and per issuing process, from eBPF.

What bcc's biolatency (per device, `-D`) and biotop measure, on the stable
tracepoints block:block_rq_issue and block:block_rq_complete (block_io.bpf.c):
a request's latency is the time from its issue to the driver to its
completion, the device's own service time (iostat's await also counts the
time queued in the kernel before issue). The kernel side aggregates per
(device, operation) and per (issuing process, operation) into generation-keyed
maps; each `sample()` takes out the finished generation, so a sample holds the
requests *completed in the interval* since the previous sample. Device numbers
are turned into names (/sys/dev/block) at sample time, so recordings replay
on any machine.
"""

from __future__ import annotations

import os
import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec
from probes.ebpf.maps import MapDrain, name_the_unnamed, parse_comms, percpu_entries
from probes.ebpf.probe import EbpfProbe
from probes.ebpf.programs import BpfProgram, LoadedProgram, build_program
from probes.model.histograms import LatencyBucket, log2_quantile_bucket

SOURCE = "block_io.bpf.c"
HIST_SLOTS = 32
# In the order of block_io.bpf.c's enum op and enum lost_reason.
OPS = ("read", "write", "discard", "other")
LOST_REASONS = (
    "inflight_map_full",
    "complete_without_issue",
    "issue_replaced",
    "device_map_full",
    "process_map_full",
    "comm_map_full",
)
# Requests in flight on the whole machine at once: an NVMe queue is 1024 deep
# at most, and a box has a handful of busy devices.
INFLIGHT_ENTRIES = 16384
DEVICE_ENTRIES = 1024
PROCESS_ENTRIES = 4096

# The structs of block_io.bpf.c, native byte order; every key ends with its generation.
_KEY = struct.Struct("=III")  # dev or tgid, op, gen
_STATS = struct.Struct(f"=QQQ{HIST_SLOTS}I")  # requests, bytes, total_ns, hist
_COMM_KEY = struct.Struct("=II")  # tgid, gen

# The kernel's dev_t (MINORBITS = 20), as the tracepoints carry it.
MINOR_BITS = 20


def device_name(major: int, minor: int, sys: str = "/sys") -> str:
    """The kernel's name of a block device (as /proc/diskstats has it), or "MAJOR:MINOR" once it is gone."""
    try:
        target = os.readlink(f"{sys}/dev/block/{major}:{minor}")
    except OSError:
        return f"{major}:{minor}"
    return os.path.basename(target).replace("!", "/")


@dataclass(frozen=True, slots=True)
class BlockIoCounts:
    """Requests of one kind completed in the interval: on one device, or issued by one process.

    `op` is "read", "write", "discard" or "other" (flushes and the like).
    """

    op: str
    requests: int
    bytes: int
    latency_total_ns: int
    # log2 buckets: slot i counts requests that took [2**i, 2**(i+1)) ns
    # from issue to completion (slot 0 also 0 and 1 ns); the last slot takes
    # everything longer
    latency_hist: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeviceBlockIo:
    device: str  # the kernel's name (sda, loop3), "MAJOR:MINOR" if it was gone when sampled
    major: int
    minor: int
    counts: BlockIoCounts


@dataclass(frozen=True, slots=True)
class ProcessBlockIo:
    pid: int  # the process (thread group) that issued the requests
    counts: BlockIoCounts


@dataclass(frozen=True, slots=True)
class BlockIoSample:
    """Every request the probe saw complete since the previous sample."""

    devices: tuple[DeviceBlockIo, ...]
    processes: tuple[ProcessBlockIo, ...]
    # pid -> process name (comm) as the kernel had it when the pid issued a request
    comms: dict[int, str]
    # reason (LOST_REASONS) -> requests in the interval; see block_io.bpf.c
    lost: dict[str, int]
    # time.monotonic_ns() as counting was switched to the next generation
    mono_ns: int | None = None


def block_io_program() -> BpfProgram:
    """The probe's BPF program and options; pure apart from reading the source file."""
    return build_program(
        SOURCE,
        {
            "INFLIGHT_ENTRIES": INFLIGHT_ENTRIES,
            "DEVICE_ENTRIES": DEVICE_ENTRIES,
            "PROCESS_ENTRIES": PROCESS_ENTRIES,
            "HIST_SLOTS": HIST_SLOTS,
        },
    )


def _op_name(op: int) -> str:
    return OPS[op] if op < len(OPS) else "other"


def parse_stats(keys: bytes, values: bytes, n: int) -> list[tuple[int, BlockIoCounts]]:
    """A stats map's entries, summed over CPUs: (device number or tgid, counts) for each with requests."""
    out = []
    for (who, op, _), fields in percpu_entries(keys, values, n, _KEY, _STATS):
        requests, nbytes, total_ns, *hist = fields
        if requests:
            out.append((who, BlockIoCounts(_op_name(op), requests, nbytes, total_ns, tuple(hist))))
    return out


class BlockIoProbe(EbpfProbe):
    """Times every block request on the machine with eBPF, by device and by issuing process."""

    name: ClassVar[str] = "blockio"
    uses_tracefs: ClassVar[bool] = True  # classic tracepoints
    kernel_lost_reasons: ClassVar[tuple[str, ...]] = LOST_REASONS

    def __init__(self, sys: str = "/sys") -> None:
        super().__init__(None)
        self._sys = sys
        # dev_t -> name, of the devices that completed requests last tick
        self._names: dict[int, str] = {}

    def program(self) -> BpfProgram:
        return block_io_program()

    def open_maps(self, bpf: LoadedProgram) -> None:
        self._devices = MapDrain(bpf["device_stats"])
        self._processes = MapDrain(bpf["process_stats"])
        self._comms = MapDrain(bpf["comms"])

    def _device(self, dev: int, counts: BlockIoCounts) -> DeviceBlockIo:
        major, minor = dev >> MINOR_BITS, dev & ((1 << MINOR_BITS) - 1)
        name = self._names.get(dev)
        if name is None:
            name = device_name(major, minor, self._sys)
            if ":" not in name:
                self._names[dev] = name
        return DeviceBlockIo(name, major, minor, counts)

    def sample(self) -> BlockIoSample:
        self.require_running()
        mono_ns = time.monotonic_ns()
        done = self.next_generation()
        comms = parse_comms(*self._comms.take(done), _COMM_KEY)
        devices = tuple(self._device(dev, c) for dev, c in parse_stats(*self._devices.take(done)))
        processes = tuple(ProcessBlockIo(pid, c) for pid, c in parse_stats(*self._processes.take(done)))
        # A number idle for a tick may be another device's when next seen
        # (one removed, another added): it is looked up again then.
        seen = {d.major << MINOR_BITS | d.minor for d in devices}
        self._names = {dev: name for dev, name in self._names.items() if dev in seen}
        name_the_unnamed(comms, (p.pid for p in processes))
        return BlockIoSample(devices, processes, comms, self.lost_in_interval(), mono_ns)


# ---- derived view -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockIoRate:
    """Requests completed in an interval, of one device or one issuing process.

    Attributes:
        requests_per_s: requests completed / t (every operation).
        read_requests_per_s, write_requests_per_s: of reads, of writes.
        read_bytes_per_s, write_bytes_per_s: their bytes (the requests'
            size at issue) / t.
        mean_latency_ns: total issue-to-completion time / requests; None
            without requests.
        p50_latency_bucket, p99_latency_bucket: the log2 bucket holding the
            median and the 99th percentile (biolatency's histogram, in ns).
        latency_hist: requests per log2 bucket (BlockIoCounts.latency_hist).
    """

    requests_per_s: float
    read_requests_per_s: float
    write_requests_per_s: float
    read_bytes_per_s: float
    write_bytes_per_s: float
    mean_latency_ns: float | None
    p50_latency_bucket: LatencyBucket | None
    p99_latency_bucket: LatencyBucket | None
    latency_hist: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeviceLatency:
    device: str
    major: int
    minor: int
    rate: BlockIoRate


@dataclass(frozen=True, slots=True)
class ProcessBlockIoRate:
    pid: int
    comm: str
    rate: BlockIoRate


@dataclass(frozen=True, slots=True)
class BlockIoView:
    devices: tuple[DeviceLatency, ...]  # by name
    processes: tuple[ProcessBlockIoRate, ...]  # most requests first
    requests_per_s: float
    lost: Mapping[str, int]  # requests lost in the interval, by reason

    def device(self, name: str) -> DeviceLatency | None:
        return next((d for d in self.devices if d.device == name), None)

    def process(self, pid: int) -> ProcessBlockIoRate | None:
        return next((p for p in self.processes if p.pid == pid), None)


def block_io_rate(counts: Iterable[BlockIoCounts], dt_s: float) -> BlockIoRate:
    """The rates of requests completed over `dt_s` seconds, all operations together."""
    requests: dict[str, int] = defaultdict(int)
    nbytes: dict[str, int] = defaultdict(int)
    total_ns = 0
    hist = [0] * HIST_SLOTS
    for c in counts:
        requests[c.op] += c.requests
        nbytes[c.op] += c.bytes
        total_ns += c.latency_total_ns
        for slot, n in enumerate(c.latency_hist[:HIST_SLOTS]):
            hist[slot] += n
    all_requests = sum(requests.values())
    return BlockIoRate(
        requests_per_s=all_requests / dt_s,
        read_requests_per_s=requests["read"] / dt_s,
        write_requests_per_s=requests["write"] / dt_s,
        read_bytes_per_s=nbytes["read"] / dt_s,
        write_bytes_per_s=nbytes["write"] / dt_s,
        mean_latency_ns=total_ns / all_requests if all_requests else None,
        p50_latency_bucket=log2_quantile_bucket(hist, 0.50),
        p99_latency_bucket=log2_quantile_bucket(hist, 0.99),
        latency_hist=tuple(hist),
    )


def derive_block_io(prev: BlockIoSample, curr: BlockIoSample, dt_s: float) -> BlockIoView:
    """Rates and latency percentiles of one interval.

    The probe empties its maps every tick, so `curr` alone covers the
    interval; `prev` is taken for the signature all derive functions share.
    """
    by_device: dict[tuple[str, int, int], list[BlockIoCounts]] = defaultdict(list)
    for d in curr.devices:
        by_device[d.device, d.major, d.minor].append(d.counts)
    by_pid: dict[int, list[BlockIoCounts]] = defaultdict(list)
    for p in curr.processes:
        by_pid[p.pid].append(p.counts)
    devices = tuple(
        DeviceLatency(name, major, minor, block_io_rate(counts, dt_s))
        for (name, major, minor), counts in sorted(by_device.items())
    )
    processes = sorted(
        (ProcessBlockIoRate(pid, curr.comms.get(pid, "?"), block_io_rate(counts, dt_s)) for pid, counts in by_pid.items()),
        key=lambda p: (-p.rate.requests_per_s, p.pid),
    )
    return BlockIoView(
        devices=devices,
        processes=tuple(processes),
        requests_per_s=sum(d.rate.requests_per_s for d in devices),
        lost=dict(curr.lost),
    )


BLOCK_IO: ProbeSpec[BlockIoSample, BlockIoView] = ProbeSpec(
    BlockIoProbe.name, BlockIoSample, BlockIoView, derive_block_io, BlockIoProbe
)
