"""The USE-method verdict: for each resource, is it ok, saturated or failing, and who is doing it.

Brendan Gregg's USE method asks of every resource its utilisation, its
saturation and its errors. Utilisation alone is no diagnosis (a CPU at
100 % with nothing waiting is a CPU doing its job), so a cell's state comes
from saturation and error signals only, and utilisation is shown beside
them. One tick's Views in, one Cell per resource out; replay derives the
same views from a recorded frame, so its verdict is the one that was true
then.

A resource is one rule object in RESOURCES: a new probe (network
interfaces, TCP retransmits, cgroup throttling, the kernel's log) plugs in
as one more entry. Each rule reads its thresholds from THRESHOLDS by name,
and every threshold carries its reason (README "The verdict" repeats them).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from probes.contract import Views
from probes.host.nvml_events import GpuEvent
from probes.model.histograms import LatencyBucket
from probes.sources.cgroups import CGROUPS, CgroupCpuView
from probes.sources.disks import DISKS, DiskView
from probes.sources.gpu import GPU, GpuDeviceView
from probes.sources.kmsg import KINDS, KMSG, KernelEvent, KmsgView
from probes.sources.network import NETWORK, InterfaceView
from probes.sources.offcpu import OFFCPU, OffCpuView
from probes.sources.process_io import PROCESS_IO
from probes.sources.processes import PROCESSES, ProcessesView, short_cgroup
from probes.sources.system import SYSTEM
from probes.sources.tcp import TCP
from probes.sources.tcp_events import TCP_EVENTS, ConnectionRetransmitRate, TcpEventsView


class State(enum.IntEnum):
    """A cell's state, worst last; the value names it in JSON."""

    NO_DATA = 0
    OK = 1
    WARNING = 2
    SATURATED = 3
    ERROR = 4

    @property
    def word(self) -> str:
        return self.name.lower().replace("_", " ")


@dataclass(frozen=True, slots=True)
class Threshold:
    """Where a signal turns a resource to warning, saturated or error (None: it never does alone).

    A value at or above a level has it; with `above`, only a value above it.
    """

    warning: float | None
    saturated: float | None
    unit: str
    reason: str
    error: float | None = None
    above: bool = False

    def state(self, value: float | None) -> State:
        """The state `value` earns; NO_DATA for no value."""
        if value is None:
            return State.NO_DATA
        for level, state in ((self.error, State.ERROR), (self.saturated, State.SATURATED), (self.warning, State.WARNING)):
            if level is not None and (value > level if self.above else value >= level):
                return state
        return State.OK


MIB = 1 << 20
MS = 1_000_000

# The defaults, after Gregg's USE checklist for Linux
# (https://www.brendangregg.com/USEmethod/use-linux.html) where it names a
# figure, and PSI's documentation (Documentation/accounting/psi.rst) for
# pressure. The config file (probes.config) overrides entries by key and
# passes the result to verdict(); the rules read nothing else.
THRESHOLDS: Mapping[str, Threshold] = MappingProxyType({
    "cpu.runnable_per_cpu": Threshold(
        1.5, 2.0, "runnable tasks per CPU",
        "vmstat's r above the CPU count means tasks queue for a CPU (Gregg); one instant's count "
        "jumps, so saturation needs twice as many runnable as CPUs. orac's own reading thread is not counted",
    ),
    "cpu.rq_p99_ms": Threshold(
        4.0, 16.0, "ms, run-queue latency p99",
        "runqlat: a task that is ready waits for a CPU; a p99 of several ms (CFS slices are ~3 ms) "
        "means tasks wait behind others, over 16 ms a frame or a request misses its deadline",
    ),
    "cpu.psi_some_percent": Threshold(
        20.0, 60.0, "% of the interval some task waited for a CPU",
        "PSI cpu some: the share of time runnable tasks had no CPU; most of the interval is saturation",
    ),
    "memory.psi_some_percent": Threshold(
        10.0, 40.0, "% of the interval some task stalled on memory",
        "PSI memory some: time lost to reclaim, swap-in and refaults of evicted pages",
    ),
    "memory.psi_full_percent": Threshold(
        2.0, 10.0, "% of the interval every task stalled on memory",
        "PSI memory full: nothing ran for want of memory (thrashing); oomd-style killers act on this",
    ),
    "memory.swap_in_per_s": Threshold(
        1.0, 256.0, "pages swapped in per second",
        "vmstat si non-zero is memory saturation (Gregg): the working set does not fit; 256 pages (1 MiB) a second is thrashing",
    ),
    "memory.major_faults_per_s": Threshold(
        500.0, None, "major faults per second",
        "pages read from disk on touch (sar -B majflt/s); bursts are normal as programs start, and alone "
        "they cannot tell swap from a cold file, so at most a warning",
    ),
    "disk.aqu_sz": Threshold(
        1.0, 1.0, "requests in flight (iostat aqu-sz)", above=True,
        reason="avgqu-sz above 1 means requests wait behind each other (Gregg): a warning; saturated "
        "only while the device is also busy at disk.util_percent, as the disks pane marks it",
    ),
    "disk.util_percent": Threshold(
        None, 90.0, "% of the interval busy (iostat %util)",
        "with a queue, a device busy nearly all the interval is the bottleneck; alone it is not "
        "(an SSD serves many requests at once at 100 %)",
    ),
    "disk.await_ms": Threshold(
        50.0, 500.0, "ms per request (iostat r_await, w_await)",
        "a spinning disk serves in ~10 ms and an SSD in under 1; 50 ms is slow for any device, half a "
        "second is a stall users see",
    ),
    "gpu.ecc_corrected_new": Threshold(
        1.0, None, "corrected ECC errors in the interval",
        "corrected errors are repaired, but new ones on a running GPU are memory wearing out",
    ),
    "gpu.ecc_uncorrected_new": Threshold(
        None, None, "uncorrected ECC errors in the interval", error=1.0,
        reason="data was lost: the application on that GPU may have computed garbage",
    ),
    "net.errors_per_s": Threshold(
        1.0, None, "receive and transmit errors per second (sar -n EDEV rxerr/s + txerr/s)", error=10.0,
        reason="errors are bad frames, CRC and carrier faults (Gregg: ifconfig errors): a few are a flaky "
        "cable or NIC, ten a second is a link losing traffic",
    ),
    "net.drops_per_s": Threshold(
        1.0, 100.0, "packets dropped or overrun per second (rxdrop/s + txdrop/s + rxfifo/s + txfifo/s)",
        "drops and FIFO overruns are network saturation (Gregg: ifconfig overruns, dropped): a ring or "
        "backlog full; a hundred a second is traffic lost to a queue",
    ),
    "net.util_percent": Threshold(
        80.0, None, "% of the link speed (sar %ifutil)",
        "a link near its speed queues soon (Gregg: throughput against the known maximum); judged at most "
        "a warning, the drops say when it does queue",
    ),
    "tcp.retrans_percent": Threshold(
        1.0, 5.0, "% of segments sent that were retransmits",
        "retransmits are TCP's sign of loss or congestion on the path (Gregg: nstat TcpRetransSegs); "
        "1 % slows throughput, 5 % stalls connections. Judged only with TCP_MIN_SEGMENTS_PER_S sent",
    ),
    "tcp.listen_drops_per_s": Threshold(
        1.0, 10.0, "SYNs dropped at a listener per second (TcpExt ListenDrops, overflows included)",
        "a full accept or SYN queue: the server does not accept fast enough, clients retry after 1 s "
        "or more (Gregg: listen overflows are software-resource saturation)",
    ),
    "cgroup.throttled_periods_percent": Threshold(
        25.0, 50.0, "% of the quota periods in which the quota ran out",
        "CFS throttling is a cgroup's CPU saturation (Gregg: throttled time in cpu.stat): a quarter of "
        "periods is latency added to its requests; most of the interval at its quota is saturated",
    ),
    "cgroup.usage_of_quota_percent": Threshold(
        None, 90.0, "% of the CPU quota used",
        "throttled periods alone can be bursts inside a mostly idle cgroup; saturated only while it also "
        "uses nearly all its quota",
    ),
    "kmsg.errors": Threshold(
        None, None, "OOM kills, hung tasks, I/O, filesystem and lockup errors, GPU Xids in the last KMSG_RECENT_S",
        error=1.0,
        reason="each is a failure the kernel saw (Gregg: errors in dmesg): a process killed or stuck, "
        "data not written, a GPU fault; kept for some minutes so a person who looks late still sees it",
    ),
})

# Below this many segments sent a second one retransmit is a large share of nothing.
TCP_MIN_SEGMENTS_PER_S = 100.0
# How long a kernel log error keeps the log's cell at error.
KMSG_RECENT_S = 300
# The kernel log kinds (probes.sources.kmsg.KINDS) that are errors in the verdict;
# segfaults and traps are a program's bug, not the machine's.
KMSG_ERROR_KINDS = frozenset({"oom-kill", "hung-task", "io-error", "fs-error", "xid", "soft-lockup"})

# NVML clocks-event reasons (probes.sources.gpu) that mean a GPU is held
# back; the others (idle, application clocks, sync boost, display) are
# settings, not trouble.
GPU_THROTTLE_STATES: Mapping[str, State] = MappingProxyType({
    # hardware protecting itself: clocks cut hard, work slows a lot
    "HW slowdown": State.SATURATED,
    "HW thermal slowdown": State.SATURATED,
    "HW power brake slowdown": State.SATURATED,
    # the driver keeping to its power or thermal limits: a GPU at its limit
    "SW power cap": State.WARNING,
    "SW thermal slowdown": State.WARNING,
})


@dataclass(frozen=True, slots=True)
class Contributor:
    """The process most responsible for a cell's state, and the figure that says so."""

    pid: int
    name: str
    figure: str


@dataclass(frozen=True, slots=True)
class Cell:
    """One resource's verdict.

    `summary` is the figure that earned the state, in a few words;
    `short` the same in fewer, for a narrow screen. `pane` names the probe
    whose pane explains the resource.
    """

    resource: str
    label: str
    state: State
    summary: str
    short: str
    contributor: Contributor | None = None
    pane: str | None = None


class Rule(Protocol):
    """One kind of resource: the cells it has in one tick's views; `wall_ns` is the tick's time, when known."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]: ...


def _worst(signals: Sequence[tuple[State, str]]) -> tuple[State, list[str]]:
    """The worst state among measured signals, and the figures of those past ok, worst first
    (all of them when every one is ok)."""
    measured = [s for s in signals if s[0] is not State.NO_DATA]
    if not measured:
        return State.NO_DATA, []
    measured.sort(key=lambda s: -s[0])
    state = measured[0][0]
    return state, [figure for level, figure in measured if level > State.OK or state is State.OK]


def _ms(ns: float) -> str:
    ms = ns / MS
    return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


def _bucket(bucket: LatencyBucket) -> str:
    high = "" if bucket.high_ns is None else f"-{_ms(bucket.high_ns)}"
    return f"{_ms(bucket.low_ns)}{high} ms"


def _bytes_per_s(value: float) -> str:
    return f"{value / MIB:.1f} MiB/s" if value >= MIB else f"{value / 1024:.0f} KiB/s"


def _size(value: int) -> str:
    return f"{value / (1 << 30):.1f} GiB" if value >= 1 << 30 else f"{value / MIB:.0f} MiB"


def _no_data(resource: str, label: str, why: str) -> Cell:
    return Cell(resource, label, State.NO_DATA, f"{label}: no data ({why})", "no data")


def _name(processes: ProcessesView | None, pid: int, fallback: str) -> str:
    if processes is not None:
        for p in processes.processes:
            if p.pid == pid:
                return p.name
    return fallback


class CpuRule:
    """All CPUs together: run-queue latency, runnable tasks per CPU, PSI cpu."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        system = views.get(SYSTEM)
        if system is None:
            return [_no_data("cpu", "CPU", "the cpu probe has no view")]
        offcpu = views.get(OFFCPU)
        cpus = len(system.cpus) or 1
        signals: list[tuple[State, str]] = []
        if offcpu is not None and offcpu.rq_p99_bucket is not None:
            # The p99 is only known to lie in its log2 bucket: judged by the bucket's floor.
            bucket = offcpu.rq_p99_bucket
            signals.append((thresholds["cpu.rq_p99_ms"].state(bucket.low_ns / MS), f"run queue p99 {_bucket(bucket)}"))
        if system.procs_running is not None:
            runnable = max(0, system.procs_running - 1)
            signals.append(
                (thresholds["cpu.runnable_per_cpu"].state(runnable / cpus), f"{runnable} runnable on {cpus} CPUs")
            )
        share = system.pressure_share.get("cpu")
        if share is not None:
            signals.append((thresholds["cpu.psi_some_percent"].state(share.some_percent),
                            f"waiting {share.some_percent:.0f} % (PSI)"))
        state, figures = _worst(signals)
        busy = f"{system.cpu_total.busy_percent:.0f} % busy"
        if state is State.NO_DATA:
            return [Cell("cpu", "CPU", state, f"CPU: {busy}, no saturation signal", busy)]
        shown = figures[:2] if state > State.OK else [busy, *figures[:1]]
        return [Cell(
            "cpu", "CPU", state, f"CPU {state.word}: {', '.join(shown)}", shown[0],
            self._contributor(views.get(PROCESSES), offcpu), SYSTEM.name,
        )]

    @staticmethod
    def _contributor(processes: ProcessesView | None, offcpu: OffCpuView | None) -> Contributor | None:
        """The process using most CPU (a queue's cause, where its waiters are its victims), with its own wait."""
        waits = {p.pid: p for p in offcpu.processes} if offcpu is not None else {}
        if processes is not None:
            busiest = max(
                (p for p in processes.processes if p.cpu_percent), key=lambda p: p.cpu_percent or 0.0, default=None,
            )
            if busiest is not None:
                figure = f"{busiest.cpu_percent:.0f} % CPU"
                own = waits.get(busiest.pid)
                if own is not None and own.rq_p99_bucket is not None:
                    figure += f", waits p99 {_bucket(own.rq_p99_bucket)}"
                return Contributor(busiest.pid, busiest.name, figure)
        waited = [p for p in waits.values() if p.rq_mean_ns is not None]
        if not waited:
            return None
        top = max(waited, key=lambda p: (p.rq_mean_ns or 0.0) * sum(p.rq_hist))
        return Contributor(top.pid, _name(processes, top.pid, top.comm), f"waited {_ms((top.rq_mean_ns or 0.0) * sum(top.rq_hist))} ms for a CPU")


class MemoryRule:
    """Memory: PSI memory, swap-ins and major faults; the largest resident process."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        system = views.get(SYSTEM)
        if system is None:
            return [_no_data("memory", "mem", "the cpu probe has no view")]
        signals: list[tuple[State, str]] = []
        share = system.pressure_share.get("memory")
        if share is not None:
            signals.append((thresholds["memory.psi_some_percent"].state(share.some_percent),
                            f"stalled {share.some_percent:.0f} % (PSI)"))
            if share.full_percent is not None:
                signals.append((thresholds["memory.psi_full_percent"].state(share.full_percent),
                                f"all stalled {share.full_percent:.0f} %"))
        if system.swap_in_pages_per_s is not None:
            signals.append((thresholds["memory.swap_in_per_s"].state(system.swap_in_pages_per_s),
                            f"swap-in {system.swap_in_pages_per_s:.0f} pages/s"))
        if system.major_page_faults_per_s is not None:
            signals.append((thresholds["memory.major_faults_per_s"].state(system.major_page_faults_per_s),
                            f"{system.major_page_faults_per_s:.0f} major faults/s"))
        state, figures = _worst(signals)
        used = (
            f"{100 * system.memory_used_bytes / system.memory_total_bytes:.0f} % used"
            if system.memory_total_bytes else "size unknown"
        )
        if state is State.NO_DATA:
            return [Cell("memory", "mem", state, f"memory: {used}, no saturation signal", used)]
        shown = figures[:2] if state > State.OK else [used]
        return [Cell(
            "memory", "mem", state, f"memory {state.word}: {', '.join(shown)}", shown[0],
            self._contributor(views.get(PROCESSES)), SYSTEM.name,
        )]

    @staticmethod
    def _contributor(processes: ProcessesView | None) -> Contributor | None:
        if processes is None or not processes.processes:
            return None
        top = max(processes.processes, key=lambda p: p.rss_bytes)
        return Contributor(top.pid, top.name, f"RSS {_size(top.rss_bytes)}")


class DisksRule:
    """Each whole disk with I/O in the interval: aqu-sz, await, with %util; the top I/O process."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        disks = views.get(DISKS)
        if disks is None:
            return [_no_data("disks", "disks", "the disks probe has no view")]
        busy = [d for d in disks.active if d.rates is not None]
        if not busy:
            return [Cell("disks", "disks", State.OK, "disks ok: idle", "idle", pane=DISKS.name)]
        contributor = self._contributor(views)
        return [self._cell(d, thresholds, contributor) for d in busy]

    @staticmethod
    def _cell(disk: DiskView, thresholds: Mapping[str, Threshold], contributor: Contributor | None) -> Cell:
        rates = disk.rates
        assert rates is not None
        queue = thresholds["disk.aqu_sz"]
        util = thresholds["disk.util_percent"]
        queued = queue.state(rates.queue_size)
        if queued is State.SATURATED and util.state(rates.util_percent) is not State.SATURATED:
            queued = State.WARNING
        awaits = [a for a in (rates.read_await_ms, rates.write_await_ms) if a is not None]
        signals = [(queued, f"aqu-sz {rates.queue_size:.1f}")]
        if awaits:
            signals.append((thresholds["disk.await_ms"].state(max(awaits)), f"await {max(awaits):.0f} ms"))
        state = _worst(signals)[0]
        figures = [f"{rates.util_percent:.0f} % util", *(figure for _, figure in signals)]
        name = disk.dm_name or disk.name
        return Cell(
            f"disk {disk.name}", name, state, f"{name} {state.word}: {', '.join(figures[:3])}",
            ", ".join(figures[:2]) if state > State.OK else figures[0], contributor, DISKS.name,
        )

    @staticmethod
    def _contributor(views: Views) -> Contributor | None:
        """The process reading and writing most bytes: /proc/PID/io does not say to which disk,
        so with several busy disks it is each one's most likely cause, not a certain one."""
        io = views.get(PROCESS_IO)
        if io is None or not io.rates:
            return None
        pid, rates = max(io.rates.items(), key=lambda item: item[1].read_bytes_per_s + item[1].write_bytes_per_s)
        total = rates.read_bytes_per_s + rates.write_bytes_per_s
        if total <= 0:
            return None
        verb = "writes" if rates.write_bytes_per_s >= rates.read_bytes_per_s else "reads"
        return Contributor(pid, _name(views.get(PROCESSES), pid, str(pid)),
                           f"{verb} {_bytes_per_s(max(rates.write_bytes_per_s, rates.read_bytes_per_s))}")


class GpusRule:
    """Each GPU: faults (lost, Xid, NVLink down, PCIe link narrowed, memory rows), throttle reasons and
    ECC errors, with its SM activity (GPM) or NVML's busy figure; its busiest process.

    No GPU view (no NVIDIA GPU or driver here) is no resource, not a grey cell on every box.
    """

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        gpu = views.get(GPU)
        if gpu is None:
            return []
        # faults of the last KMSG_RECENT_S, as the kernel log's cell keeps them: a person who looks late still sees them
        now_ns = wall_ns if wall_ns is not None else time.time_ns()
        faults = [e for e in gpu.recent_faults if now_ns - e.wall_ns <= KMSG_RECENT_S * 1e9]
        return [self._cell(d, views, thresholds, faults) for d in gpu.devices]

    @staticmethod
    def _faults(device: GpuDeviceView, events: Sequence[GpuEvent]) -> list[tuple[State, str]]:
        """What is broken, not slow: a GPU off the bus, an Xid, a link down or narrowed, memory rows."""
        faults: list[tuple[State, str]] = []
        if device.lost:
            faults.append((State.ERROR, "fell off the bus (NVML: GPU lost)"))
        faults.extend(
            (State.ERROR, f"Xid {e.data}") for e in events if e.kind == "Xid" and e.gpu_index == device.index
        )
        down = [link.link for link in device.nvlinks if link.active is False]
        if down:
            faults.append((State.ERROR, f"NVLink {', '.join(map(str, down))} down"))
        if device.remap_failed:
            faults.append((State.ERROR, "memory row remapping failed"))
        elif device.remap_pending:
            faults.append((State.WARNING, "memory row remap pending: reset the GPU"))
        width, widest = device.pcie_link_width, device.pcie_link_width_max
        if width is not None and widest and width < widest:
            faults.append((State.WARNING, f"PCIe link x{width} of x{widest}"))
        return faults

    def _cell(
        self, device: GpuDeviceView, views: Views, thresholds: Mapping[str, Threshold], events: Sequence[GpuEvent]
    ) -> Cell:
        label = f"GPU{device.index}"
        signals: list[tuple[State, str]] = self._faults(device, events)
        if device.throttle_reasons is not None:
            held = [(GPU_THROTTLE_STATES[r], r) for r in device.throttle_reasons if r in GPU_THROTTLE_STATES]
            signals.extend(held or [(State.OK, "not throttled")])
        for key, count, words in (
            ("gpu.ecc_uncorrected_new", device.ecc_uncorrected_new, "uncorrected ECC errors"),
            ("gpu.ecc_corrected_new", device.ecc_corrected_new, "corrected ECC errors"),
        ):
            if count is not None:
                signals.append((thresholds[key].state(count), f"{count} {words}"))
        state, figures = _worst(signals)
        gpm = device.gpm.sm_activity_percent if device.gpm is not None else None
        if gpm is not None:
            sm = f"{gpm:.0f} % SM active"
        else:
            # NVML's figure: the share of time a kernel ran, not how much of the SMs it used
            sm = f"{device.sm_util_percent} % busy" if device.sm_util_percent is not None else "SM unknown"
        if state is State.NO_DATA:
            return Cell(f"gpu {device.index}", label, state, f"{label}: {sm}, NVML reports no throttle or ECC state", "no data")
        shown = figures[:2] if state > State.OK else [sm]
        return Cell(
            f"gpu {device.index}", label, state, f"{label} {state.word}: {', '.join(shown)}", shown[0],
            self._contributor(device.index, views), GPU.name,
        )

    @staticmethod
    def _contributor(index: int, views: Views) -> Contributor | None:
        gpu = views.get(GPU)
        assert gpu is not None
        mine = [p for p in gpu.processes if p.gpu_index == index]
        if not mine:
            return None
        top = max(mine, key=lambda p: (p.sm_util_percent or 0.0, p.gpu_memory_bytes or 0))
        name = _name(views.get(PROCESSES), top.pid, str(top.pid))
        if top.sm_util_percent:
            return Contributor(top.pid, name, f"{top.sm_util_percent:.0f} % SM")
        return Contributor(top.pid, name, f"{_size(top.gpu_memory_bytes or 0)} GPU memory")


class NetworkRule:
    """Each interface with traffic in the interval: errors, drops and overruns, with %ifutil."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        network = views.get(NETWORK)
        if network is None:
            return []
        cells = [self._cell(i, thresholds) for i in network.interfaces if not i.idle and not i.down]
        # Loopback cannot saturate a link: only its drops and errors earn it a cell.
        cells = [c for c in cells if c.label != "lo" or c.state > State.OK]
        return cells or [Cell("net", "net", State.OK, "net ok: idle", "idle", pane=NETWORK.name)]

    @staticmethod
    def _cell(interface: InterfaceView, thresholds: Mapping[str, Threshold]) -> Cell:
        signals: list[tuple[State, str]] = []
        errors = _sum(interface.rx_errors_per_s, interface.tx_errors_per_s)
        if errors is not None:
            signals.append((thresholds["net.errors_per_s"].state(errors), f"{errors:.0f} errors/s"))
        drops = _sum(interface.rx_drops_per_s, interface.tx_drops_per_s,
                     interface.rx_fifo_errors_per_s, interface.tx_fifo_errors_per_s)
        if drops is not None:
            signals.append((thresholds["net.drops_per_s"].state(drops), f"{drops:.0f} drops/s"))
        if interface.ifutil_percent is not None:
            signals.append((thresholds["net.util_percent"].state(interface.ifutil_percent),
                            f"{interface.ifutil_percent:.0f} % util"))
        state, figures = _worst(signals)
        rx, tx = interface.rx_bytes_per_s or 0.0, interface.tx_bytes_per_s or 0.0
        traffic = f"{_bytes_per_s(max(rx, tx))} {'rx' if rx >= tx else 'tx'}"
        shown = figures[:2] if state > State.OK else [traffic]
        return Cell(f"net {interface.name}", interface.name, state, f"{interface.name} {state.word}: {', '.join(shown)}",
                    shown[0], pane=NETWORK.name)


def _sum(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class TcpRule:
    """TCP as a whole: retransmits as a share of segments sent, listen queue drops; the connection retransmitting most.

    The connection comes from the tcpevents probe (eBPF): its process is the
    cell's contributor when the probe saw it connect; otherwise the summary
    names the connection alone.
    """

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        tcp = views.get(TCP)
        if tcp is None:
            return []
        signals: list[tuple[State, str]] = []
        sent = _sum(tcp.out_segs_per_s, tcp.retrans_segs_per_s)
        if tcp.retrans_percent is not None and sent is not None and sent >= TCP_MIN_SEGMENTS_PER_S:
            signals.append((thresholds["tcp.retrans_percent"].state(tcp.retrans_percent),
                            f"retrans {tcp.retrans_percent:.1f} %"))
        drops = tcp.listen_drops_per_s if tcp.listen_drops_per_s is not None else tcp.listen_overflows_per_s
        if drops is not None:
            signals.append((thresholds["tcp.listen_drops_per_s"].state(drops), f"{drops:.0f} listen drops/s"))
        state, figures = _worst(signals)
        estab = f"{tcp.sockets.estab} estab" if tcp.sockets.estab is not None else "quiet"
        if state is State.NO_DATA:
            return [Cell("tcp", "TCP", State.OK, f"TCP ok: {estab}", estab, pane=TCP.name)]
        shown = figures[:2] if state > State.OK else [estab]
        contributor = None
        worst = self._worst_connection(views.get(TCP_EVENTS)) if state > State.OK else None
        if worst is not None:
            figure = f"{worst.retransmits_per_s:.0f} retrans/s {worst.endpoints()}"
            if worst.pid is not None:
                contributor = Contributor(worst.pid, worst.comm or "?", figure)
            else:
                shown.append(figure)
        return [Cell("tcp", "TCP", state, f"TCP {state.word}: {', '.join(shown)}", shown[0], contributor, TCP.name)]

    @staticmethod
    def _worst_connection(events: TcpEventsView | None) -> ConnectionRetransmitRate | None:
        if events is None:
            return None
        return max(events.connections, key=lambda c: c.retransmits_per_s, default=None)


class CgroupsRule:
    """Each cgroup with a CPU quota that throttling held back; none when no cgroup was."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        cgroups = views.get(CGROUPS)
        if cgroups is None:
            return []
        cells = [self._cell(c, views.get(PROCESSES), thresholds) for c in cgroups.cgroups]
        return sorted((c for c in cells if c.state > State.OK), key=lambda c: -c.state)

    @staticmethod
    def _cell(cgroup: CgroupCpuView, processes: ProcessesView | None, thresholds: Mapping[str, Threshold]) -> Cell:
        throttled = thresholds["cgroup.throttled_periods_percent"].state(cgroup.throttled_periods_percent)
        at_quota = thresholds["cgroup.usage_of_quota_percent"].state(cgroup.usage_of_quota_percent)
        if throttled is State.SATURATED and at_quota is not State.SATURATED:
            throttled = State.WARNING
        name = short_cgroup(cgroup.path)
        figures = [f"throttled {cgroup.throttled_periods_percent or 0:.0f} % of periods",
                   f"{cgroup.usage_cpus or 0:.2f} of {cgroup.quota_cpus:.2f} CPUs"]
        contributor = None
        if processes is not None:
            # The process view names cgroups as short_cgroup does.
            mine = [p for p in processes.processes if p.cgroup == name and p.cpu_percent]
            busiest = max(mine, key=lambda p: p.cpu_percent or 0.0, default=None)
            if busiest is not None:
                contributor = Contributor(busiest.pid, busiest.name, f"{busiest.cpu_percent:.0f} % CPU")
        return Cell(f"cgroup {cgroup.path}", name, throttled, f"{name} {throttled.word}: {', '.join(figures)}",
                    figures[0], contributor, CGROUPS.name)


class KernelLogRule:
    """The kernel's log: an error the kernel reported in the interval or the last KMSG_RECENT_S."""

    def cells(self, views: Views, thresholds: Mapping[str, Threshold], wall_ns: int | None) -> list[Cell]:
        kmsg = views.get(KMSG)
        if kmsg is None:
            return []
        new = {e.seq for e in kmsg.new_events}
        since_us = kmsg.mono_ns // 1000 - KMSG_RECENT_S * 1_000_000
        errors = [e for e in kmsg.events if e.kind in KMSG_ERROR_KINDS and (e.seq in new or e.ts_us >= since_us)]
        state = thresholds["kmsg.errors"].state(len(errors))
        if state is State.OK:
            return [Cell("kmsg", "kernel", state, "kernel log ok: no errors", "no errors", pane=KMSG.name)]
        last = errors[-1]
        figure = f"{KINDS[last.kind]} {self._when(last, kmsg, wall_ns)}{self._who(last)}"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        processes = views.get(PROCESSES)
        alive = processes is not None and last.pid is not None and any(p.pid == last.pid for p in processes.processes)
        contributor = (
            Contributor(last.pid, last.comm or str(last.pid), KINDS[last.kind])
            if alive and last.pid is not None else None
        )
        return [Cell("kmsg", "kernel", state, f"{figure}{more}", figure, contributor, KMSG.name)]

    @staticmethod
    def _when(event: KernelEvent, kmsg: KmsgView, wall_ns: int | None) -> str:
        if wall_ns is None:
            return f"[{event.ts_us / 1e6:.0f} s]"
        return time.strftime("%H:%M:%S", time.localtime(kmsg.wall_ns_of(event, wall_ns) / 1e9))

    @staticmethod
    def _who(event: KernelEvent) -> str:
        if event.comm is not None and event.pid is not None:
            return f": {event.comm} (pid {event.pid})"
        if event.xid is not None:
            return f": Xid {event.xid}"
        return f": {event.message[:40]}"


# In the order the strip shows them.
RESOURCES: tuple[Rule, ...] = (
    CpuRule(), MemoryRule(), DisksRule(), NetworkRule(), TcpRule(), GpusRule(), CgroupsRule(), KernelLogRule(),
)


def verdict(
    views: Views, thresholds: Mapping[str, Threshold] = THRESHOLDS, wall_ns: int | None = None,
) -> tuple[Cell, ...]:
    """Every resource's cell for one tick, in RESOURCES' order; `wall_ns` (the frame's) puts
    kernel log errors at a time of day."""
    return tuple(cell for rule in RESOURCES for cell in rule.cells(views, thresholds, wall_ns))


def as_json(cells: Sequence[Cell]) -> list[dict[str, object]]:
    """The cells as `orac snapshot --json` and `orac dump` write them."""
    return [
        {
            "resource": c.resource,
            "state": c.state.name.lower(),
            "summary": c.summary,
            "contributor": None if c.contributor is None else {
                "pid": c.contributor.pid, "name": c.contributor.name, "figure": c.contributor.figure,
            },
        }
        for c in cells
    ]

