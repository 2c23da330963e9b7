"""The "gpu" probe: NVIDIA GPUs and the processes using them, from NVML.

NVML comes through nvidia-ml-py (`import pynvml`), imported in `start()` so
that importing `probes` never needs it. NVML is initialised once per probe
and the device handles are cached; samples hold plain values only, never a
handle. All queries run on the collector thread, never `nvidia-smi`.

Every field is asked on its own: a GPU that has no fan, no ECC or no MIG
answers NotSupported for that field only, which becomes None ("-" on screen,
never 0) while the other fields still arrive. An unsupported field stays
unsupported while the driver runs, so it is not asked again.

Raw versus derived: NVML's utilization figures (device SM and memory
controller busy %, per-process SM %) are already rates over NVML's own
sampling window, so they are carried as they are; `derive_gpu` only converts
units, decodes bit masks and turns the ECC counters, which only grow, into
errors per interval.

PIDs and PID namespaces
-----------------------
The process table shows the PIDs of the procfs orac reads. NVIDIA's kernel
module translates each PID it reports into the caller's PID namespace
(`os_find_ns_pid` in the open kernel modules) and leaves out processes the
caller cannot see. So when orac's /proc belongs to orac's own namespace (on
the host, or in a container with its own /proc) NVML's PIDs are already the
PIDs the user sees, and the mapping is the identity at no cost.

They differ when /proc belongs to an outer namespace than orac's own (a
host's /proc bind-mounted into a container, `unshare --pid` without a new
/proc). Then `NSpid:` in /proc/PID/status lists the process's PID in each
namespace from /proc's one inwards: the first entry is the PID the user
sees, and the entry at orac's depth (one less than the entries of
/proc/self/status) is the one NVML reports. `NvmlPidMap` maps one to the
other; a PID it cannot find there (a driver too old to translate reports the
host's PIDs, which in this case are already the first entry) is kept as it is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.gpm import MIG_GPM, GpmReader, GpmSample
from probes.host.nvml_events import SERIOUS, GpuEvent, NvmlEventWatcher
from probes.host.procfs import read_text

if TYPE_CHECKING:
    from types import ModuleType

# Bits of nvmlDeviceGetCurrentClocksEventReasons (formerly ...ThrottleReasons),
# as nvml.h and pynvml define them; local so decoding needs no pynvml (replay).
CLOCKS_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x0000000000000001, "GPU idle"),
    (0x0000000000000002, "applications clocks setting"),
    (0x0000000000000004, "SW power cap"),
    (0x0000000000000008, "HW slowdown"),
    (0x0000000000000010, "sync boost"),
    (0x0000000000000020, "SW thermal slowdown"),
    (0x0000000000000040, "HW thermal slowdown"),
    (0x0000000000000080, "HW power brake slowdown"),
    (0x0000000000000100, "display clocks setting"),
)
_KNOWN_REASONS_MASK = sum(bit for bit, _ in CLOCKS_EVENT_REASONS)

# NVML's "no value" markers: NVML_VALUE_NOT_AVAILABLE as unsigned long long
# (a process's memory, e.g. under WDDM; nvidia-ml-py >= 11 turns it into None
# itself, older bindings do not) and the GPU/compute instance id of a process
# when MIG is off.
VALUE_NOT_AVAILABLE_ULL = 2**64 - 1
INSTANCE_ID_INVALID = 0xFFFFFFFF

# nvml.h constants the probe passes to NVML.
_NVML_TEMPERATURE_GPU = 0
_NVML_CLOCK_SM = 1
_NVML_CLOCK_MEM = 2
_NVML_PCIE_UTIL_TX_BYTES = 0
_NVML_PCIE_UTIL_RX_BYTES = 1
_NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
_NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
_NVML_VOLATILE_ECC = 0
_NVML_DEVICE_MIG_ENABLE = 1
_NVML_NVLINK_MAX_LINKS = 36
# NVML_NVLINK_ERROR_DL_REPLAY, _RECOVERY, _CRC_FLIT, _CRC_DATA
_NVLINK_ERROR_COUNTERS = (0, 1, 2, 3)
# NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, _DOUBLE_BIT_ECC_ERROR
_PAGE_RETIREMENT_CAUSES = (0, 1)
# How long a GPU fault stays in the samples, and how many at most.
FAULTS_KEPT_S = 600
MAX_FAULTS = 16
# NVLink state and errors change slowly and cost 5 NVML calls a link (18 links on an H100): every 5th tick.
NVLINK_EVERY = 5
# nvidia-ml-py's NVML_PERF_POLICY_*: what nvmlDeviceGetViolationStatus counts time held back by
PERF_POLICIES: dict[int, str] = {
    0: "power",
    1: "thermal",
    2: "sync boost",
    3: "board limit",
    4: "low utilization",
    5: "reliability",
}
# (NVML_PERF_POLICY_TOTAL_APP_CLOCKS and _TOTAL_BASE_CLOCKS are totals of the time below those
# clocks for any reason, not causes: left out, as they would read as more causes beside these.)

DRIVER_REMEDY = "install the NVIDIA driver, which provides libnvidia-ml.so.1 (check with `nvidia-smi`)"


@dataclass(frozen=True, slots=True)
class MigInstanceSample:
    """One MIG device (a compute instance inside a GPU instance)."""

    gpu_instance_id: int | None
    compute_instance_id: int | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    # NVML's utilization of this instance's own handle; most GPUs refuse it
    sm_util_percent: int | None
    memory_util_percent: int | None
    # GPM's figures for its GPU instance (compute instances of one GPU instance share them)
    gpm: GpmSample | None = None


@dataclass(frozen=True, slots=True)
class GpuProcessSample:
    """One process holding a context on one GPU."""

    # in the PID namespace of orac's /proc, as the process table shows it
    pid: int
    # "compute", "graphics" or "compute+graphics"
    type: str
    gpu_memory_bytes: int | None
    # mean of NVML's per-process SM samples newer than the previous tick's;
    # None when NVML has none (or cannot sample processes on this GPU)
    sm_util_percent: float | None
    # the MIG instance the process runs in; None without MIG
    gpu_instance_id: int | None
    compute_instance_id: int | None


@dataclass(frozen=True, slots=True)
class ViolationCounter:
    """nvmlDeviceGetViolationStatus for one policy: time the clocks were held back, since the driver loaded."""

    policy: int  # PERF_POLICIES' key
    reference_us: int  # NVML's timestamp of the reading
    violation_ns: int  # cumulative


@dataclass(frozen=True, slots=True)
class NvLinkSample:
    """One NVLink of a GPU: up or not, and its error counters since the driver loaded."""

    link: int
    active: bool | None
    replay_errors: int | None  # NVML_NVLINK_ERROR_DL_REPLAY
    recovery_errors: int | None  # NVML_NVLINK_ERROR_DL_RECOVERY
    crc_errors: int | None  # flit and data CRC errors together


@dataclass(frozen=True, slots=True)
class GpuDeviceSample:
    """One GPU at one tick. None: NVML cannot give that field for this GPU."""

    index: int
    name: str
    uuid: str
    # busy % over NVML's own window (1/6 s to 1 s, by product)
    sm_util_percent: int | None
    memory_util_percent: int | None  # memory controller (bandwidth) busy
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: int | None
    power_draw_mw: int | None
    power_limit_mw: int | None  # the enforced limit
    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    fan_percent: int | None
    # NVML's PCIe throughput over its last 20 ms window, in KB/s (1024 bytes)
    pcie_rx_kb_per_s: int | None
    pcie_tx_kb_per_s: int | None
    # counters since the driver loaded: they only grow
    ecc_corrected_volatile: int | None
    ecc_uncorrected_volatile: int | None
    # raw nvmlClocksEventReason bits; decode_throttle_reasons gives words
    throttle_reasons_mask: int | None
    mig_enabled: bool | None
    mig_instances: tuple[MigInstanceSample, ...]
    processes: tuple[GpuProcessSample, ...]
    # time this device's NVML queries took this tick
    nvml_time_ns: int
    # GPM's figures over the interval (Hopper and newer); None in recordings made before orac read GPM
    gpm: GpmSample | None = None
    # the PCIe link now and at most (a GPU lowers its generation when idle; a narrower link is a fault)
    pcie_link_gen: int | None = None
    pcie_link_gen_max: int | None = None
    pcie_link_width: int | None = None
    pcie_link_width_max: int | None = None
    violations: tuple[ViolationCounter, ...] = ()
    # memory rows the GPU remapped to spares (Ampere and newer); a pending remap needs a GPU reset
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failed: bool | None = None
    # before Ampere, pages retired instead (nvmlDeviceGetRetiredPages): for many single-bit errors,
    # for a double-bit one; a pending retirement needs a reboot or GPU reset
    retired_pages_single_bit: int | None = None
    retired_pages_double_bit: int | None = None
    retire_pending: bool | None = None
    # its NVLinks (none without NVLink), read every NVLINK_EVERY ticks: the same tuple in between
    nvlinks: tuple[NvLinkSample, ...] = ()
    # NVML said the GPU is lost (fell off the bus): the None fields are that, not "not supported"
    lost: bool = False


@dataclass(frozen=True, slots=True)
class GpuSample:
    driver_version: str | None
    devices: tuple[GpuDeviceSample, ...]
    # time all NVML queries of the tick took together
    nvml_time_ns: int
    # NVML's events (Xid, ECC, clock and power-state changes) since the previous sample
    events: tuple[GpuEvent, ...] = ()
    # GPU index (ALL_GPUS: every GPU) -> why it sends no events
    events_unavailable: dict[int, str] = field(default_factory=dict)
    # the faults among them (Xid, double-bit ECC, GPU lost) of the last FAULTS_KEPT_S, oldest first:
    # carried by every sample, so that a screen, a replay and the verdict show them for minutes
    recent_faults: tuple[GpuEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class GpuDeviceView:
    index: int
    name: str
    uuid: str
    sm_util_percent: int | None
    memory_util_percent: int | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: int | None
    power_draw_w: float | None
    power_limit_w: float | None
    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    fan_percent: int | None
    pcie_rx_bytes_per_s: int | None
    pcie_tx_bytes_per_s: int | None
    ecc_corrected_volatile: int | None
    ecc_uncorrected_volatile: int | None
    # errors counted since the previous sample
    ecc_corrected_new: int | None
    ecc_uncorrected_new: int | None
    # active reasons in words; () none, None: NVML cannot say
    throttle_reasons: tuple[str, ...] | None
    mig_enabled: bool | None
    mig_instances: tuple[MigInstanceSample, ...]
    nvml_time_ns: int
    gpm: GpmSample | None = None
    pcie_link_gen: int | None = None
    pcie_link_gen_max: int | None = None
    pcie_link_width: int | None = None
    pcie_link_width_max: int | None = None
    # policy words -> percent of the interval the clocks were held back for it (those the driver counts)
    held_back_percent: dict[str, float] = field(default_factory=dict)
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failed: bool | None = None
    retired_pages_single_bit: int | None = None
    retired_pages_double_bit: int | None = None
    retire_pending: bool | None = None
    nvlinks: tuple[NvLinkSample, ...] = ()
    lost: bool = False


@dataclass(frozen=True, slots=True)
class GpuProcessView:
    """A GPU process; the app joins it with the host's process by pid."""

    pid: int
    gpu_index: int
    type: str
    gpu_memory_bytes: int | None
    sm_util_percent: float | None
    gpu_instance_id: int | None
    compute_instance_id: int | None


@dataclass(frozen=True, slots=True)
class GpuView:
    driver_version: str | None
    devices: tuple[GpuDeviceView, ...]
    # by GPU, then most GPU memory first
    processes: tuple[GpuProcessView, ...]
    nvml_time_ns: int
    events: tuple[GpuEvent, ...] = ()  # those of the interval, oldest first
    events_unavailable: dict[int, str] = field(default_factory=dict)
    recent_faults: tuple[GpuEvent, ...] = ()

    def memory_by_pid(self) -> dict[int, int]:
        """GPU memory each process holds on all GPUs together (for the process table)."""
        total: dict[int, int] = {}
        for p in self.processes:
            if p.gpu_memory_bytes is not None:
                total[p.pid] = total.get(p.pid, 0) + p.gpu_memory_bytes
        return total


def decode_throttle_reasons(mask: int) -> list[str]:
    """The reasons in an nvmlClocksEventReason mask, in words.

    Bits this orac does not know (newer drivers add some) are kept as one
    "other (0x...)" entry rather than dropped.
    """
    words = [word for bit, word in CLOCKS_EVENT_REASONS if mask & bit]
    unknown = mask & ~_KNOWN_REASONS_MASK
    if unknown:
        words.append(f"other (0x{unknown:x})")
    return words


def _new_count(prev: int | None, curr: int | None) -> int | None:
    if prev is None or curr is None:
        return None
    # The volatile counters restart from 0 when the driver reloads.
    return curr - prev if curr >= prev else curr


def _held_back(prev: tuple[ViolationCounter, ...], curr: tuple[ViolationCounter, ...]) -> dict[str, float]:
    """Percent of the time between two readings each policy held the clocks back, over NVML's own clock."""
    before = {v.policy: v for v in prev}
    held = {}
    for v in curr:
        old = before.get(v.policy)
        if old is None or v.reference_us <= old.reference_us or v.violation_ns < old.violation_ns:
            continue  # the first reading, or the driver reloaded
        share = (v.violation_ns - old.violation_ns) / ((v.reference_us - old.reference_us) * 1000) * 100
        held[PERF_POLICIES.get(v.policy, f"policy {v.policy}")] = min(share, 100.0)
    return held


def derive_gpu(prev: GpuSample, curr: GpuSample, dt_s: float) -> GpuView:
    """Units for people, throttle words, ECC errors of the interval.

    Utilization is NVML's own rate and is passed through; `dt_s` is not
    needed because the only counters (ECC) are shown as counts, not rates.
    """
    before = {d.uuid: d for d in prev.devices}
    devices = []
    processes: list[GpuProcessView] = []
    for d in curr.devices:
        old = before.get(d.uuid)
        devices.append(
            GpuDeviceView(
                index=d.index,
                name=d.name,
                uuid=d.uuid,
                sm_util_percent=d.sm_util_percent,
                memory_util_percent=d.memory_util_percent,
                memory_used_bytes=d.memory_used_bytes,
                memory_total_bytes=d.memory_total_bytes,
                temperature_c=d.temperature_c,
                power_draw_w=None if d.power_draw_mw is None else d.power_draw_mw / 1000,
                power_limit_w=None if d.power_limit_mw is None else d.power_limit_mw / 1000,
                sm_clock_mhz=d.sm_clock_mhz,
                memory_clock_mhz=d.memory_clock_mhz,
                fan_percent=d.fan_percent,
                pcie_rx_bytes_per_s=None if d.pcie_rx_kb_per_s is None else d.pcie_rx_kb_per_s * 1024,
                pcie_tx_bytes_per_s=None if d.pcie_tx_kb_per_s is None else d.pcie_tx_kb_per_s * 1024,
                ecc_corrected_volatile=d.ecc_corrected_volatile,
                ecc_uncorrected_volatile=d.ecc_uncorrected_volatile,
                ecc_corrected_new=_new_count(old.ecc_corrected_volatile if old else None, d.ecc_corrected_volatile),
                ecc_uncorrected_new=_new_count(old.ecc_uncorrected_volatile if old else None, d.ecc_uncorrected_volatile),
                throttle_reasons=(
                    None if d.throttle_reasons_mask is None else tuple(decode_throttle_reasons(d.throttle_reasons_mask))
                ),
                mig_enabled=d.mig_enabled,
                mig_instances=d.mig_instances,
                nvml_time_ns=d.nvml_time_ns,
                gpm=d.gpm,
                pcie_link_gen=d.pcie_link_gen,
                pcie_link_gen_max=d.pcie_link_gen_max,
                pcie_link_width=d.pcie_link_width,
                pcie_link_width_max=d.pcie_link_width_max,
                held_back_percent=_held_back(old.violations if old else (), d.violations),
                remapped_rows_correctable=d.remapped_rows_correctable,
                remapped_rows_uncorrectable=d.remapped_rows_uncorrectable,
                remap_pending=d.remap_pending,
                remap_failed=d.remap_failed,
                retired_pages_single_bit=d.retired_pages_single_bit,
                retired_pages_double_bit=d.retired_pages_double_bit,
                retire_pending=d.retire_pending,
                nvlinks=d.nvlinks,
                lost=d.lost,
            )
        )
        ordered = sorted(d.processes, key=lambda p: (-(p.gpu_memory_bytes or -1), p.pid))
        processes.extend(
            GpuProcessView(
                pid=p.pid,
                gpu_index=d.index,
                type=p.type,
                gpu_memory_bytes=p.gpu_memory_bytes,
                sm_util_percent=p.sm_util_percent,
                gpu_instance_id=p.gpu_instance_id,
                compute_instance_id=p.compute_instance_id,
            )
            for p in ordered
        )
    return GpuView(
        curr.driver_version, tuple(devices), tuple(processes), curr.nvml_time_ns, curr.events, curr.events_unavailable,
        curr.recent_faults,
    )


def parse_nspid(status_text: str) -> tuple[int, ...]:
    """The `NSpid:` entries of /proc/PID/status, outermost namespace first.

    Empty when the line is missing (kernels before 4.1).
    """
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            return tuple(int(v) for v in line.split()[1:])
    return ()


class NvmlPidMap:
    """NVML's PIDs (orac's namespace) -> PIDs of orac's /proc; see the module docstring."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        # How many namespaces orac is below /proc's one: 0 in the usual case.
        self.depth = max(0, len(parse_nspid(read_text(f"{proc}/self/status") or "")) - 1)
        self._known: dict[int, int] = {}

    def translate(self, nvml_pids: Iterable[int]) -> dict[int, int]:
        """Map each NVML pid.

        /proc is scanned at most once per call, and only when a pid is not
        known yet or its process has gone; a pid found nowhere is kept.
        """
        if self.depth == 0:
            return {pid: pid for pid in nvml_pids}
        out = {}
        scanned = False
        for nvml_pid in nvml_pids:
            pid = self._known.get(nvml_pid)
            # A remembered pid may since have exited and been reused.
            if pid is None or not self._still(pid, nvml_pid):
                if not scanned:
                    self._known = self._scan()
                    scanned = True
                pid = self._known.get(nvml_pid)
            out[nvml_pid] = nvml_pid if pid is None else pid
        return out

    def _nspid(self, pid: int | str) -> tuple[int, ...]:
        return parse_nspid(read_text(f"{self._proc}/{pid}/status") or "")

    def _still(self, pid: int, nvml_pid: int) -> bool:
        nspid = self._nspid(pid)
        return len(nspid) > self.depth and nspid[self.depth] == nvml_pid

    def _scan(self) -> dict[int, int]:
        known = {}
        for entry in os.listdir(self._proc):
            if entry.isdigit():
                nspid = self._nspid(entry)
                if len(nspid) > self.depth:
                    known[nspid[self.depth]] = nspid[0]
        return known


class _Device:
    """What the probe keeps per GPU between ticks (never in a sample)."""

    __slots__ = (
        "gpm", "handle", "index", "last_seen_us", "lost", "mig_gpm", "mig_was", "name", "nvlinks", "ticks",
        "unsupported", "uuid",
    )

    def __init__(self, index: int, handle: Any, name: str, uuid: str) -> None:
        self.gpm: GpmReader | None = None
        # GPU instance id -> its GPM reader, while that instance exists
        self.mig_gpm: dict[int, GpmReader] = {}
        self.mig_was: bool | None = None  # MIG mode at the previous tick
        self.lost = False
        # the last NVLink reading, and the ticks sampled (NVLinks are read every NVLINK_EVERY)
        self.nvlinks: tuple[NvLinkSample, ...] = ()
        self.ticks = 0
        self.index = index
        self.handle = handle
        self.name = name
        self.uuid = uuid
        # fields NVML said this GPU does not support: not asked again
        self.unsupported: set[str] = set()
        # newest per-process utilization sample seen, NVML's CPU timestamp in
        # µs: passing it back asks only for samples taken since
        self.last_seen_us = 0


class _ProcessAcc:
    """One NVML pid's entries in a GPU's process lists, merged."""

    __slots__ = ("compute_instance_id", "gpu_instance_id", "memory", "types")

    def __init__(self) -> None:
        self.types: list[str] = []
        self.memory: int | None = None
        self.gpu_instance_id: int | None = None
        self.compute_instance_id: int | None = None


def _instance_id(value: int | None) -> int | None:
    return None if value is None or value == INSTANCE_ID_INVALID else value


class GpuProbe:
    """Samples every NVIDIA GPU NVML sees, and the processes on them."""

    name: ClassVar[str] = "gpu"

    def __init__(self, proc: str = "/proc", sys_root: str = "/sys") -> None:
        self._sys_root = sys_root
        self._nvml: ModuleType | None = None
        self._devices: list[_Device] = []
        self._driver_version: str | None = None
        self._clocks_event_reasons: Callable[[Any], int] | None = None
        self._process_queries: list[tuple[str, Callable[[Any], Any]]] = []
        self._pids = NvmlPidMap(proc)
        self._events: NvmlEventWatcher | None = None
        # the same tuple from one sample to the next while it does not change (a recording stores it once)
        self._faults: tuple[GpuEvent, ...] = ()

    # lifecycle

    def start(self) -> None:
        if self._nvml is not None:
            return
        try:
            import pynvml
        except ImportError:
            raise self._absent() or ProbeUnavailable(
                "nvidia-ml-py is not installed (no pynvml module)", "`pip install nvidia-ml-py`"
            ) from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            missing_driver = isinstance(exc, (pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded))
            raise (missing_driver and self._absent()) or _unavailable(pynvml, exc) from None
        try:
            self._devices = self._open_devices(pynvml)
            self._driver_version = self._driver(pynvml)
            self._process_queries = self._choose_process_queries(pynvml, self._devices[0].handle)
            for dev in self._devices:
                dev.gpm = GpmReader(pynvml, dev.handle)
            self._events = NvmlEventWatcher(pynvml, [dev.handle for dev in self._devices])
            self._events.start()
        except BaseException:
            pynvml.nvmlShutdown()
            raise
        # Renamed in driver 535; older bindings have only the old name, and
        # an older driver refuses the new one (handled in _throttle_mask).
        self._clocks_event_reasons = getattr(
            pynvml, "nvmlDeviceGetCurrentClocksEventReasons", pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        self._nvml = pynvml

    def _absent(self) -> ProbeUnavailable | None:
        """Nothing to watch: a missing driver on a machine with no NVIDIA GPU is no fault."""
        if nvidia_pci_devices(self._sys_root):
            return None
        return ProbeUnavailable("no NVIDIA GPU in this machine", absent=True)

    @staticmethod
    def _driver(nvml: ModuleType) -> str | None:
        try:
            version: str = nvml.nvmlSystemGetDriverVersion()
        except nvml.NVMLError:
            return None
        return version

    @staticmethod
    def _choose_process_queries(nvml: ModuleType, handle: Any) -> list[tuple[str, Callable[[Any], Any]]]:
        """The process list calls this driver has.

        The unversioned names call the _v3 C functions, which older drivers
        lack; the bindings then raise NVMLLibraryMismatchError (not an
        NVMLError) and the _v2 calls give the same fields.
        """
        try:
            nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except getattr(nvml, "NVMLLibraryMismatchError", ()):
            return [
                ("compute", nvml.nvmlDeviceGetComputeRunningProcesses_v2),
                ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses_v2),
            ]
        except nvml.NVMLError:
            pass
        return [
            ("compute", nvml.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses),
        ]

    @staticmethod
    def _open_devices(nvml: ModuleType) -> list[_Device]:
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise _unavailable(nvml, exc) from None
        if count == 0:
            raise ProbeUnavailable(
                "no NVIDIA GPU found",
                "the driver sees no GPU: check `nvidia-smi -L`; in a container, start it with the GPUs (`--gpus all`)",
            )
        devices = []
        first_error: Exception | None = None
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                uuid = nvml.nvmlDeviceGetUUID(handle)
            except nvml.NVMLError as exc:
                # One GPU lost or forbidden (cgroups) must not hide the others.
                first_error = first_error or exc
                continue
            devices.append(_Device(index, handle, name, uuid))
        if not devices:
            assert first_error is not None
            raise _unavailable(nvml, first_error)
        return devices

    def stop(self) -> None:
        if self._nvml is None:
            return
        nvml, self._nvml = self._nvml, None
        if self._events is not None:
            self._events.stop()
            self._events = None
        for dev in self._devices:
            for reader in (dev.gpm, *dev.mig_gpm.values()):
                if reader is not None:
                    reader.close()
        self._devices = []
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            # The driver went away under us; nothing is left to release.
            pass

    # sampling

    def sample(self) -> GpuSample:
        if self._nvml is None:
            raise ProbeUnavailable("the gpu probe was not started", "please report this as a bug")
        devices = tuple(self._sample_device(self._nvml, dev) for dev in self._devices)
        watcher = self._events
        events = watcher.take() if watcher is not None else ()
        now_ns = time.time_ns()
        faults = [e for e in self._faults if now_ns - e.wall_ns <= FAULTS_KEPT_S * 1e9]
        faults.extend(e for e in events if e.kind in SERIOUS)
        if len(faults) != len(self._faults) or events:
            self._faults = tuple(faults[-MAX_FAULTS:])
        return GpuSample(
            self._driver_version, devices, sum(d.nvml_time_ns for d in devices),
            events, dict(watcher.unavailable) if watcher is not None else {}, self._faults,
        )

    def _sample_device(self, nvml: ModuleType, dev: _Device) -> GpuDeviceSample:
        h = dev.handle
        get = self._get
        start_ns = time.perf_counter_ns()
        util = get(dev, "utilization", nvml.nvmlDeviceGetUtilizationRates, h)
        memory = get(dev, "memory", nvml.nvmlDeviceGetMemoryInfo, h)
        temperature = get(dev, "temperature", nvml.nvmlDeviceGetTemperature, h, _NVML_TEMPERATURE_GPU)
        power = get(dev, "power", nvml.nvmlDeviceGetPowerUsage, h)
        power_limit = get(dev, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit, h)
        sm_clock = get(dev, "sm_clock", nvml.nvmlDeviceGetClockInfo, h, _NVML_CLOCK_SM)
        memory_clock = get(dev, "memory_clock", nvml.nvmlDeviceGetClockInfo, h, _NVML_CLOCK_MEM)
        fan = get(dev, "fan", nvml.nvmlDeviceGetFanSpeed, h)
        pcie_rx = get(dev, "pcie_rx", nvml.nvmlDeviceGetPcieThroughput, h, _NVML_PCIE_UTIL_RX_BYTES)
        pcie_tx = get(dev, "pcie_tx", nvml.nvmlDeviceGetPcieThroughput, h, _NVML_PCIE_UTIL_TX_BYTES)
        ecc_corrected = get(
            dev, "ecc_corrected", nvml.nvmlDeviceGetTotalEccErrors, h,
            _NVML_MEMORY_ERROR_TYPE_CORRECTED, _NVML_VOLATILE_ECC,
        )
        ecc_uncorrected = get(
            dev, "ecc_uncorrected", nvml.nvmlDeviceGetTotalEccErrors, h,
            _NVML_MEMORY_ERROR_TYPE_UNCORRECTED, _NVML_VOLATILE_ECC,
        )
        throttle = self._throttle_mask(nvml, dev)
        mig_mode = get(dev, "mig_mode", nvml.nvmlDeviceGetMigMode, h)
        mig_enabled = None if mig_mode is None else mig_mode[0] == _NVML_DEVICE_MIG_ENABLE
        running: dict[int, _ProcessAcc] = {}
        mig: tuple[MigInstanceSample, ...] = ()
        if mig_enabled:
            # In MIG mode the GPU's own handle lists processes only for root;
            # each MIG device's handle lists its own for anyone.
            mig, handles = self._mig_instances(nvml, dev)
            for mig_handle in handles:
                self._running(dev, mig_handle, "mig.", running)
        else:
            self._running(dev, h, "", running)
        sm_by_pid = self._process_sm(nvml, dev)
        if mig_enabled != dev.mig_was:
            # MIG mode changed: the whole-GPU reader's last sample is of the other mode,
            # and instances of a GPU no longer in MIG mode give their samples back.
            dev.mig_was = mig_enabled
            if dev.gpm is not None:
                dev.gpm.restart()
            if not mig_enabled:
                for reader in dev.mig_gpm.values():
                    reader.close()
                dev.mig_gpm.clear()
        if dev.gpm is not None and mig_enabled and not dev.gpm.unavailable:
            # A GPU in MIG mode is measured by GPU instance (on its MIG lines), not as a whole.
            gpm: GpmSample | None = GpmSample(problem=MIG_GPM)
        else:
            gpm = dev.gpm.read() if dev.gpm is not None else None
        link = [
            get(dev, key, query, h)
            for key, query in (
                ("pcie_gen", nvml.nvmlDeviceGetCurrPcieLinkGeneration),
                ("pcie_gen_max", nvml.nvmlDeviceGetGpuMaxPcieLinkGeneration),
                ("pcie_width", nvml.nvmlDeviceGetCurrPcieLinkWidth),
                ("pcie_width_max", nvml.nvmlDeviceGetMaxPcieLinkWidth),
            )
        ]
        remapped = get(dev, "remapped_rows", nvml.nvmlDeviceGetRemappedRows, h)
        retired: list[int | None] = [None, None]
        retire_pending = None
        if remapped is None and "remapped_rows" in dev.unsupported:
            # a GPU before Ampere retires whole pages instead of remapping rows
            for i, cause in enumerate(_PAGE_RETIREMENT_CAUSES):
                pages = get(dev, f"retired_pages.{cause}", nvml.nvmlDeviceGetRetiredPages, h, cause)
                retired[i] = None if pages is None else len(pages)
            pending = get(dev, "retired_pending", nvml.nvmlDeviceGetRetiredPagesPendingStatus, h)
            retire_pending = None if pending is None else bool(pending)
        if dev.ticks % NVLINK_EVERY == 0:
            dev.nvlinks = self._nvlinks(nvml, dev)
        dev.ticks += 1
        violations = []
        for policy in PERF_POLICIES:
            counter = get(dev, f"violation.{policy}", nvml.nvmlDeviceGetViolationStatus, h, policy)
            if counter is not None:
                violations.append(ViolationCounter(policy, counter.referenceTime, counter.violationTime))
        elapsed_ns = time.perf_counter_ns() - start_ns
        return GpuDeviceSample(
            index=dev.index,
            name=dev.name,
            uuid=dev.uuid,
            sm_util_percent=None if util is None else util.gpu,
            memory_util_percent=None if util is None else util.memory,
            memory_used_bytes=None if memory is None else memory.used,
            memory_total_bytes=None if memory is None else memory.total,
            temperature_c=temperature,
            power_draw_mw=power,
            power_limit_mw=power_limit,
            sm_clock_mhz=sm_clock,
            memory_clock_mhz=memory_clock,
            fan_percent=fan,
            pcie_rx_kb_per_s=pcie_rx,
            pcie_tx_kb_per_s=pcie_tx,
            ecc_corrected_volatile=ecc_corrected,
            ecc_uncorrected_volatile=ecc_uncorrected,
            throttle_reasons_mask=throttle,
            mig_enabled=mig_enabled,
            mig_instances=mig,
            # Mapped after the clock stopped: reading /proc is not NVML's time.
            processes=self._processes(running, sm_by_pid),
            nvml_time_ns=elapsed_ns,
            gpm=gpm,
            pcie_link_gen=link[0],
            pcie_link_gen_max=link[1],
            pcie_link_width=link[2],
            pcie_link_width_max=link[3],
            violations=tuple(violations),
            remapped_rows_correctable=None if remapped is None else remapped[0],
            remapped_rows_uncorrectable=None if remapped is None else remapped[1],
            remap_pending=None if remapped is None else bool(remapped[2]),
            remap_failed=None if remapped is None else bool(remapped[3]),
            retired_pages_single_bit=retired[0],
            retired_pages_double_bit=retired[1],
            retire_pending=retire_pending,
            nvlinks=dev.nvlinks,
            lost=dev.lost,
        )

    def _nvlinks(self, nvml: ModuleType, dev: _Device) -> tuple[NvLinkSample, ...]:
        """Each NVLink's state and error counters; () on a GPU without NVLink."""
        links = []
        for link in range(_NVML_NVLINK_MAX_LINKS):
            key = f"nvlink.{link}"
            if key in dev.unsupported:
                break
            try:
                active: bool | None = bool(nvml.nvmlDeviceGetNvLinkState(dev.handle, link))
            except (nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument, nvml.NVMLError_FunctionNotFound):
                # No NVLink, or past the GPU's last link: asked no further, now or later.
                dev.unsupported.add(key)
                break
            except nvml.NVMLError:
                active = None
            counters = [
                self._get(dev, f"{key}.{counter}", nvml.nvmlDeviceGetNvLinkErrorCounter, dev.handle, link, counter)
                for counter in _NVLINK_ERROR_COUNTERS
            ]
            crc = None if counters[2] is None or counters[3] is None else counters[2] + counters[3]
            links.append(NvLinkSample(link, active, counters[0], counters[1], crc))
        return tuple(links)

    def _get(self, dev: _Device, key: str, query: Callable[..., Any], *args: Any) -> Any:
        """One NVML query; None when this GPU cannot answer it now.

        NotSupported (and FunctionNotFound, from a driver older than the
        bindings) will not change while the driver runs, so that field is not
        asked again; other errors (no permission, a timeout, a lost GPU) may
        pass and are asked again next tick.
        """
        if key in dev.unsupported:
            return None
        nvml = self._nvml
        assert nvml is not None
        try:
            return query(*args)
        except (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound):
            dev.unsupported.add(key)
            return None
        except nvml.NVMLError_GpuIsLost:
            dev.lost = True
            return None
        except nvml.NVMLError:
            return None

    def _throttle_mask(self, nvml: ModuleType, dev: _Device) -> int | None:
        assert self._clocks_event_reasons is not None
        mask: int | None = self._get(dev, "clocks_event_reasons", self._clocks_event_reasons, dev.handle)
        if mask is None and "clocks_event_reasons" in dev.unsupported:
            # A driver before 535 knows the call by its old name only.
            mask = self._get(dev, "throttle_reasons", nvml.nvmlDeviceGetCurrentClocksThrottleReasons, dev.handle)
        return mask

    def _mig_instances(self, nvml: ModuleType, dev: _Device) -> tuple[tuple[MigInstanceSample, ...], list[Any]]:
        """MIG devices, enumerated every tick since instances come and go at run time."""
        get = self._get
        instances = []
        handles = []
        gpm_now: dict[int, GpmSample] = {}
        for slot in range(get(dev, "mig_count", nvml.nvmlDeviceGetMaxMigDeviceCount, dev.handle) or 0):
            try:
                h = nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev.handle, slot)
            except nvml.NVMLError:
                # NotFound: no instance in this slot.
                continue
            handles.append(h)
            memory = get(dev, "mig.memory", nvml.nvmlDeviceGetMemoryInfo, h)
            util = get(dev, "mig.utilization", nvml.nvmlDeviceGetUtilizationRates, h)
            gpu_instance = get(dev, "mig.gpu_instance", nvml.nvmlDeviceGetGpuInstanceId, h)
            if gpu_instance is not None and gpu_instance not in gpm_now and dev.gpm is not None and not (
                dev.gpm.unavailable
            ):
                reader = dev.mig_gpm.get(gpu_instance)
                if reader is None:
                    reader = dev.mig_gpm[gpu_instance] = GpmReader(nvml, dev.handle, gpu_instance)
                gpm_now[gpu_instance] = reader.read()
            instances.append(
                MigInstanceSample(
                    gpu_instance_id=gpu_instance,
                    compute_instance_id=get(dev, "mig.compute_instance", nvml.nvmlDeviceGetComputeInstanceId, h),
                    memory_used_bytes=None if memory is None else memory.used,
                    memory_total_bytes=None if memory is None else memory.total,
                    sm_util_percent=None if util is None else util.gpu,
                    memory_util_percent=None if util is None else util.memory,
                    gpm=gpm_now.get(gpu_instance) if gpu_instance is not None else None,
                )
            )
        # An instance gone (MIG reconfigured): its GPM samples go back to the driver.
        for gone in set(dev.mig_gpm) - set(gpm_now):
            dev.mig_gpm.pop(gone).close()
        return tuple(instances), handles

    def _running(self, dev: _Device, handle: Any, key: str, out: dict[int, _ProcessAcc]) -> None:
        """Add the compute and graphics processes on `handle` to `out`, by NVML pid."""
        for kind, query in self._process_queries:
            for info in self._get(dev, f"{key}{kind}_processes", query, handle) or ():
                acc = out.setdefault(info.pid, _ProcessAcc())
                if kind not in acc.types:
                    acc.types.append(kind)
                used = info.usedGpuMemory
                if used is not None and used != VALUE_NOT_AVAILABLE_ULL:
                    # A process with both kinds of context reports its memory
                    # in both lists: the same figure, not two allocations.
                    acc.memory = max(acc.memory or 0, used)
                acc.gpu_instance_id = _instance_id(getattr(info, "gpuInstanceId", None))
                acc.compute_instance_id = _instance_id(getattr(info, "computeInstanceId", None))

    def _process_sm(self, nvml: ModuleType, dev: _Device) -> dict[int, float]:
        """Mean SM % per NVML pid over the samples NVML took since the last tick.

        NotFound (no sample since the last seen one) comes back as None from
        `_get`: those processes get no value this tick.
        """
        samples = self._get(
            dev, "process_utilization", nvml.nvmlDeviceGetProcessUtilization, dev.handle, dev.last_seen_us
        )
        sums: dict[int, list[int]] = {}
        for s in samples or ():
            dev.last_seen_us = max(dev.last_seen_us, s.timeStamp)
            acc = sums.setdefault(s.pid, [0, 0])
            acc[0] += s.smUtil
            acc[1] += 1
        return {pid: total / n for pid, (total, n) in sums.items()}

    def _processes(self, running: dict[int, _ProcessAcc], sm_by_pid: dict[int, float]) -> tuple[GpuProcessSample, ...]:
        pids = self._pids.translate(running)
        return tuple(
            GpuProcessSample(
                pid=pids[nvml_pid],
                type="+".join(acc.types),
                gpu_memory_bytes=acc.memory,
                sm_util_percent=sm_by_pid.get(nvml_pid),
                gpu_instance_id=acc.gpu_instance_id,
                compute_instance_id=acc.compute_instance_id,
            )
            for nvml_pid, acc in running.items()
        )


# PCI vendor id of NVIDIA, and the display-controller class (VGA and 3D).
NVIDIA_PCI_VENDOR = "0x10de"
DISPLAY_PCI_CLASS = "0x03"


def nvidia_pci_devices(sys_root: str = "/sys") -> int:
    """How many NVIDIA display or 3D controllers the PCI bus has, driver or not."""
    devices = f"{sys_root}/bus/pci/devices"
    try:
        names = os.listdir(devices)
    except OSError:
        return 0
    return sum(
        1
        for name in names
        if (read_text(f"{devices}/{name}/vendor") or "").strip() == NVIDIA_PCI_VENDOR
        and (read_text(f"{devices}/{name}/class") or "").startswith(DISPLAY_PCI_CLASS)
    )


def _unavailable(nvml: ModuleType, exc: Exception) -> ProbeUnavailable:
    """What an NVML error at start means for the user, and what to do."""
    if isinstance(exc, nvml.NVMLError_LibraryNotFound):
        return ProbeUnavailable("no NVIDIA driver: libnvidia-ml.so not found", DRIVER_REMEDY)
    if isinstance(exc, nvml.NVMLError_DriverNotLoaded):
        return ProbeUnavailable(
            "NVIDIA driver not loaded", "load it with `sudo modprobe nvidia`; `dmesg` tells why it failed"
        )
    if isinstance(exc, nvml.NVMLError_NoPermission):
        return ProbeUnavailable(
            "no permission to use the NVIDIA GPUs", "check the permissions of /dev/nvidia*, or run `sudo orac`"
        )
    if isinstance(exc, nvml.NVMLError_LibRmVersionMismatch):
        return ProbeUnavailable(
            "the NVIDIA driver and libnvidia-ml.so are different versions",
            "reboot (or reload the nvidia kernel modules) after a driver upgrade",
        )
    if isinstance(exc, nvml.NVMLError_GpuIsLost):
        return ProbeUnavailable("an NVIDIA GPU fell off the bus (GPU is lost)", "reset the GPU or reboot; see `dmesg`")
    return ProbeUnavailable(f"NVML failed: {exc}", "check that `nvidia-smi` works")


GPU: ProbeSpec[GpuSample, GpuView] = ProbeSpec(GpuProbe.name, GpuSample, GpuView, derive_gpu, GpuProbe)
