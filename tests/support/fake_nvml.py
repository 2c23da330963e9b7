"""A fake `pynvml` (nvidia-ml-py) for tests: by default two GPUs, one process each.

It follows nvidia-ml-py's real function names and parameter names (a test
compares them with the installed nvidia-ml-py), its return types (objects
with the same attributes as c_nvmlMemory_t, c_nvmlUtilization_t, the
process info objects and c_nvmlProcessUtilizationSample_t) and its error
classes: NVMLError carries `.value`, and `NVMLError(code)` becomes the
subclass for the code (NVMLError_NotSupported ...), built the way pynvml
builds them.

GPU 1 has no fan (nvmlDeviceGetFanSpeed raises NVMLError_NotSupported, as on
a passively cooled data-centre GPU): the one unsupported field.

Install it with `install(monkeypatch, FakeNvml())`: the probe's
`import pynvml` then finds it in sys.modules.
"""

from __future__ import annotations

import queue
import string
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import pytest

GIB = 1024**3
MIB = 1024**2

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1

# nvmlClocksEventReason bits
nvmlClocksEventReasonGpuIdle = 0x0000000000000001
nvmlClocksEventReasonApplicationsClocksSetting = 0x0000000000000002
nvmlClocksEventReasonSwPowerCap = 0x0000000000000004
nvmlClocksEventReasonHwSlowdown = 0x0000000000000008
nvmlClocksEventReasonSyncBoost = 0x0000000000000010
nvmlClocksEventReasonSwThermalSlowdown = 0x0000000000000020
nvmlClocksEventReasonHwThermalSlowdown = 0x0000000000000040
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x0000000000000080
nvmlClocksEventReasonDisplayClockSetting = 0x0000000000000100

# the GPU/compute instance id NVML gives a process when MIG is off
INSTANCE_ID_INVALID = 0xFFFFFFFF


class NVMLError(Exception):
    """As pynvml's: `NVMLError(code)` is an instance of the code's subclass."""

    _valClassMapping: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(typ, value: int) -> NVMLError:
        if typ == NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value


class NVMLLibraryMismatchError(Exception):
    pass


_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


def _error_classes() -> dict[str, type[NVMLError]]:
    """NVML_ERROR_NOT_SUPPORTED -> NVMLError_NotSupported ..., named as pynvml names them."""
    classes = {}
    for name, value in list(globals().items()):
        if not name.startswith("NVML_ERROR_"):
            continue
        class_name = "NVMLError_" + string.capwords(name.replace("NVML_ERROR_", ""), "_").replace("_", "")

        def new(typ: type[NVMLError], *args: Any, _value: int = value) -> NVMLError:
            return NVMLError.__new__(typ, _value)

        cls = type(class_name, (NVMLError,), {"__new__": new, "__module__": "pynvml"})
        NVMLError._valClassMapping[value] = cls
        classes[class_name] = cls
    return classes


ERROR_CLASSES = _error_classes()
NVMLError_NotSupported = ERROR_CLASSES["NVMLError_NotSupported"]


# return types, named after pynvml's


class c_nvmlDevice_t:
    """A device handle: a GPU, or one MIG device on it."""

    def __init__(self, gpu: int, mig_slot: int | None = None) -> None:
        self.gpu = gpu
        self.mig_slot = mig_slot

    def __repr__(self) -> str:
        return f"<c_nvmlDevice_t gpu={self.gpu} mig={self.mig_slot}>"


@dataclass
class c_nvmlMemory_t:
    total: int
    free: int
    used: int


@dataclass
class c_nvmlUtilization_t:
    gpu: int
    memory: int


class nvmlFriendlyObject:
    """What nvmlDeviceGet*RunningProcesses return: the struct's fields as attributes."""

    def __init__(self, dictionary: dict[str, Any]) -> None:
        for key, value in dictionary.items():
            setattr(self, key, value)


@dataclass
class c_nvmlProcessUtilizationSample_t:
    pid: int
    timeStamp: int
    smUtil: int
    memUtil: int
    encUtil: int = 0
    decUtil: int = 0


NVML_GPM_METRIC_MAX = 477
NVML_GPM_METRICS_GET_VERSION = 1
NVML_GPM_SUPPORT_VERSION = 1
NVML_GPM_METRIC_SM_UTIL = 2
NVML_GPM_METRIC_SM_OCCUPANCY = 3
NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
NVML_GPM_METRIC_DFMA_TENSOR_UTIL = 6
NVML_GPM_METRIC_HMMA_TENSOR_UTIL = 7
NVML_GPM_METRIC_IMMA_TENSOR_UTIL = 9
NVML_GPM_METRIC_DRAM_BW_UTIL = 10
NVML_GPM_METRIC_FP64_UTIL = 11
NVML_GPM_METRIC_FP32_UTIL = 12
NVML_GPM_METRIC_FP16_UTIL = 13
NVML_GPM_METRIC_PCIE_TX_PER_SEC = 20
NVML_GPM_METRIC_PCIE_RX_PER_SEC = 21
NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC = 60
NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC = 61


@dataclass
class c_nvmlGpmSupport_t:
    version: int = 0
    isSupportedDevice: int = 0


class c_nvmlGpmSample_t:
    """An opaque GPM sample; the fake notes which GPU took it, and when (a count of samples taken)."""

    def __init__(self) -> None:
        self.gpu: int | None = None
        self.gpu_instance: int | None = None  # taken by nvmlGpmMigSampleGet for this GPU instance
        self.taken = 0
        self.freed = False


@dataclass
class c_nvmlGpmMetric_t:
    metricId: int = 0
    nvmlReturn: int = 0
    value: float = 0.0


class c_nvmlGpmMetricsGet_t:
    """As pynvml's struct: a version, the metric count, two samples and a fixed array of metrics."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: c_nvmlGpmSample_t | None = None
        self.sample2: c_nvmlGpmSample_t | None = None
        self.metrics = [c_nvmlGpmMetric_t() for _ in range(NVML_GPM_METRIC_MAX)]


nvmlEventTypeSingleBitEccError = 0x0000000000000001
nvmlEventTypeDoubleBitEccError = 0x0000000000000002
nvmlEventTypePState = 0x0000000000000004
nvmlEventTypeXidCriticalError = 0x0000000000000008
nvmlEventTypeClock = 0x0000000000000010


@dataclass
class c_nvmlEventData_t:
    device: c_nvmlDevice_t
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


class c_nvmlEventSet_t:
    """An event set: the GPUs and event types registered in it, and the events waiting."""

    def __init__(self) -> None:
        self.registered: dict[int, int] = {}  # gpu index -> event type mask
        self.pending: queue.Queue[c_nvmlEventData_t] = queue.Queue()
        self.freed = False


NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
NVML_PERF_POLICY_POWER = 0
NVML_PERF_POLICY_THERMAL = 1
NVML_PERF_POLICY_SYNC_BOOST = 2
NVML_PERF_POLICY_BOARD_LIMIT = 3
NVML_PERF_POLICY_LOW_UTILIZATION = 4
NVML_PERF_POLICY_RELIABILITY = 5
NVML_PERF_POLICY_TOTAL_APP_CLOCKS = 10
NVML_PERF_POLICY_TOTAL_BASE_CLOCKS = 11


@dataclass
class c_nvmlViolationTime_t:
    referenceTime: int  # µs
    violationTime: int  # ns


# what the fake GPUs hold


@dataclass
class FakeProcess:
    pid: int
    # None: NVML_VALUE_NOT_AVAILABLE, which nvidia-ml-py hands over as None
    used_memory_bytes: int | None


@dataclass
class FakeMig:
    gpu_instance_id: int
    compute_instance_id: int
    memory_total_bytes: int
    memory_used_bytes: int
    compute_processes: list[FakeProcess] = field(default_factory=list)
    # GPM of its GPU instance (nvmlGpmMigSampleGet): metric id -> value
    gpm: dict[int, float] = field(default_factory=dict)


@dataclass
class FakeGpu:
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    util_gpu: int
    util_memory: int
    temperature_c: int
    power_mw: int
    power_limit_mw: int
    sm_clock_mhz: int
    memory_clock_mhz: int
    fan_percent: int
    pcie_rx_kb: int
    pcie_tx_kb: int
    ecc_corrected: int
    ecc_uncorrected: int
    clocks_event_reasons: int
    compute_processes: list[FakeProcess] = field(default_factory=list)
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    # (pid, timestamp µs, SM %): NVML's per-process utilization buffer
    process_samples: list[tuple[int, int, int]] = field(default_factory=list)
    mig_enabled: bool = False
    # slot -> instance; MIG devices sit in slots of nvmlDeviceGetMaxMigDeviceCount
    mig_slots: dict[int, FakeMig] = field(default_factory=dict)
    mig_max_count: int = 7
    # pynvml function names that raise NVMLError_NotSupported on this GPU
    unsupported: set[str] = field(default_factory=set)
    # GPM (Hopper and newer): metric id -> its value over any interval; None: a GPU without GPM
    gpm: dict[int, float] | None = None
    # the NVML error code nvmlGpmSampleGet raises (NVML_ERROR_IN_USE: another profiler holds the counters)
    gpm_error: int | None = None
    # PCIe link: (generation, width) now and at most
    pcie_link: tuple[int, int] = (4, 16)
    pcie_link_max: tuple[int, int] = (4, 16)
    # perf policy -> ns its clocks are held back per second of NVML's clock; each reading is a second later
    held_back_ns_per_s: dict[int, int] = field(default_factory=dict)
    violation_readings: int = 0
    # nvmlDeviceGetRemappedRows: correctable, uncorrectable, pending, failure occurred
    remapped_rows: tuple[int, int, int, int] = (0, 0, 0, 0)
    # before Ampere (nvmlDeviceGetRemappedRows unsupported): page addresses retired, by cause; pending
    retired_pages: dict[int, list[int]] = field(default_factory=dict)
    retire_pending: int = 0
    # NVLinks: how many, those down, and (link, NVML_NVLINK_ERROR_DL_*) -> count
    nvlink_count: int = 0
    nvlinks_down: set[int] = field(default_factory=set)
    nvlink_errors: dict[tuple[int, int], int] = field(default_factory=dict)
    # fell off the bus: every call about it raises NVMLError_GpuIsLost
    lost: bool = False
    # the nvmlEventType* bits this GPU can send
    supported_events: int = (
        nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError | nvmlEventTypePState
        | nvmlEventTypeXidCriticalError | nvmlEventTypeClock
    )


SAMPLE_T0_US = 1_764_000_000_000_000


def default_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(
            name="NVIDIA RTX A6000",
            uuid="GPU-5b1d8f2a-7c3e-4a9b-8e6d-0f1a2b3c4d5e",
            memory_total_bytes=48 * GIB,
            memory_used_bytes=10 * GIB + 512 * MIB,
            util_gpu=72,
            util_memory=38,
            temperature_c=71,
            power_mw=182_345,
            power_limit_mw=300_000,
            sm_clock_mhz=1695,
            memory_clock_mhz=8001,
            fan_percent=45,
            pcie_rx_kb=1_250_000,
            pcie_tx_kb=30_500,
            ecc_corrected=0,
            ecc_uncorrected=0,
            clocks_event_reasons=nvmlClocksEventReasonSwPowerCap | nvmlClocksEventReasonSwThermalSlowdown,
            # power-capped a third of the time; a link trained to x8 of x16
            held_back_ns_per_s={NVML_PERF_POLICY_POWER: 350_000_000, NVML_PERF_POLICY_THERMAL: 50_000_000},
            pcie_link=(4, 8),
            compute_processes=[FakeProcess(2002, 10 * GIB)],
            process_samples=[(2002, SAMPLE_T0_US + 100_000, 70), (2002, SAMPLE_T0_US + 300_000, 74)],
        ),
        FakeGpu(
            name="NVIDIA H100 80GB HBM3",
            uuid="GPU-9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4",
            memory_total_bytes=80 * GIB,
            memory_used_bytes=30 * GIB,
            util_gpu=95,
            util_memory=61,
            temperature_c=58,
            power_mw=512_000,
            power_limit_mw=700_000,
            sm_clock_mhz=1980,
            memory_clock_mhz=2619,
            fan_percent=0,
            pcie_rx_kb=2_048,
            pcie_tx_kb=512,
            ecc_corrected=3,
            ecc_uncorrected=0,
            clocks_event_reasons=0,
            compute_processes=[FakeProcess(4242, 29 * GIB)],
            process_samples=[(4242, SAMPLE_T0_US + 200_000, 95)],
            unsupported={"nvmlDeviceGetFanSpeed"},
            nvlink_count=18,
            nvlink_errors={(3, 0): 12, (3, 2): 2, (3, 3): 1},  # link 3: replays, and CRC errors of both kinds
            remapped_rows=(2, 0, 0, 0),
            # NVML's "utilization" says 95 % (a kernel ran); the SMs tell more
            gpm={
                NVML_GPM_METRIC_SM_UTIL: 41.5, NVML_GPM_METRIC_SM_OCCUPANCY: 22.0,
                NVML_GPM_METRIC_ANY_TENSOR_UTIL: 12.25, NVML_GPM_METRIC_HMMA_TENSOR_UTIL: 12.0,
                NVML_GPM_METRIC_IMMA_TENSOR_UTIL: 0.25, NVML_GPM_METRIC_DFMA_TENSOR_UTIL: 0.0,
                NVML_GPM_METRIC_DRAM_BW_UTIL: 63.0,
                NVML_GPM_METRIC_FP64_UTIL: 0.0, NVML_GPM_METRIC_FP32_UTIL: 8.0, NVML_GPM_METRIC_FP16_UTIL: 1.5,
                NVML_GPM_METRIC_PCIE_TX_PER_SEC: 0.5, NVML_GPM_METRIC_PCIE_RX_PER_SEC: 2.0,
                NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: 51_200.0, NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: 50_176.0,
            },
        ),
    ]


class FakeNvml(ModuleType):
    """The fake module. Its state is per instance, so tests cannot leak into each other."""

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: int | None = None) -> None:
        super().__init__("pynvml")
        for name, value in globals().items():
            if name.startswith(("NVML_", "nvmlClocksEventReason", "nvmlEventType")):
                setattr(self, name, value)
        for name, cls in ERROR_CLASSES.items():
            setattr(self, name, cls)
        self.NVMLError = NVMLError
        self.NVMLLibraryMismatchError = NVMLLibraryMismatchError
        self.c_nvmlGpmMetricsGet_t = c_nvmlGpmMetricsGet_t
        self.event_sets: list[c_nvmlEventSet_t] = []
        # GPM samples taken, across GPUs, and those not yet freed
        self.gpm_samples_taken = 0
        self.gpm_samples: list[c_nvmlGpmSample_t] = []
        # Functions live in a module's namespace, where dir() and setattr see them.
        for name in dir(FakeNvml):
            if name.startswith("nvml"):
                setattr(self, name, getattr(self, name))
        self.gpus = default_gpus() if gpus is None else gpus
        # NVML error code nvmlInit raises, e.g. NVML_ERROR_LIBRARY_NOT_FOUND
        self.init_error = init_error
        self.init_count = 0
        self.shutdown_count = 0
        # (gpu index, lastSeenTimeStamp) of each nvmlDeviceGetProcessUtilization call
        self.process_utilization_calls: list[tuple[int, int]] = []

    # helpers

    def _require_init(self) -> None:
        if self.init_count <= self.shutdown_count:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _check(self, handle: c_nvmlDevice_t, function: str) -> FakeGpu:
        self._require_init()
        if not isinstance(handle, c_nvmlDevice_t) or handle.gpu >= len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.gpu]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if function in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _mig(self, handle: c_nvmlDevice_t, function: str) -> FakeMig:
        gpu = self._check(handle, function)
        if handle.mig_slot is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.mig_slots[handle.mig_slot]

    @staticmethod
    def _process_infos(processes: list[FakeProcess], gpu_instance: int, compute_instance: int) -> list[Any]:
        return [
            nvmlFriendlyObject(
                {
                    "pid": p.pid,
                    "usedGpuMemory": p.used_memory_bytes,
                    "gpuInstanceId": gpu_instance,
                    "computeInstanceId": compute_instance,
                }
            )
            for p in processes
        ]

    # system

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._require_init()
        self.shutdown_count += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> c_nvmlDevice_t:
        handle = c_nvmlDevice_t(index)
        self._check(handle, "nvmlDeviceGetHandleByIndex")
        return handle

    # device

    def nvmlDeviceGetName(self, handle: c_nvmlDevice_t) -> str:
        return self._check(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: c_nvmlDevice_t) -> str:
        return self._check(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetUtilizationRates(self, handle: c_nvmlDevice_t) -> c_nvmlUtilization_t:
        gpu = self._check(handle, "nvmlDeviceGetUtilizationRates")
        # Neither a MIG device nor a GPU in MIG mode reports utilization.
        if handle.mig_slot is not None or gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return c_nvmlUtilization_t(gpu.util_gpu, gpu.util_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: c_nvmlDevice_t, version: int | None = None) -> c_nvmlMemory_t:
        gpu = self._check(handle, "nvmlDeviceGetMemoryInfo")
        if handle.mig_slot is not None:
            mig = gpu.mig_slots[handle.mig_slot]
            total, used = mig.memory_total_bytes, mig.memory_used_bytes
        else:
            total, used = gpu.memory_total_bytes, gpu.memory_used_bytes
        return c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetTemperature(self, handle: c_nvmlDevice_t, sensor: int) -> int:
        gpu = self._check(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_c

    def nvmlDeviceGetPowerUsage(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: c_nvmlDevice_t, type: int) -> int:
        gpu = self._check(handle, "nvmlDeviceGetClockInfo")
        clocks = {NVML_CLOCK_SM: gpu.sm_clock_mhz, NVML_CLOCK_GRAPHICS: gpu.sm_clock_mhz, NVML_CLOCK_MEM: gpu.memory_clock_mhz}
        if type not in clocks:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return clocks[type]

    def nvmlDeviceGetFanSpeed(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetFanSpeed").fan_percent

    def nvmlDeviceGetPcieThroughput(self, device: c_nvmlDevice_t, counter: int) -> int:
        gpu = self._check(device, "nvmlDeviceGetPcieThroughput")
        if counter == NVML_PCIE_UTIL_RX_BYTES:
            return gpu.pcie_rx_kb
        if counter == NVML_PCIE_UTIL_TX_BYTES:
            return gpu.pcie_tx_kb
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetTotalEccErrors(self, handle: c_nvmlDevice_t, errorType: int, counterType: int) -> int:
        gpu = self._check(handle, "nvmlDeviceGetTotalEccErrors")
        if counterType != NVML_VOLATILE_ECC:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.ecc_corrected if errorType == NVML_MEMORY_ERROR_TYPE_CORRECTED else gpu.ecc_uncorrected

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetCurrentClocksEventReasons").clocks_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").clocks_event_reasons

    # memory rows and NVLink

    def nvmlDeviceGetRemappedRows(self, device: c_nvmlDevice_t) -> tuple[int, int, int, int]:
        return self._check(device, "nvmlDeviceGetRemappedRows").remapped_rows

    def nvmlDeviceGetRetiredPages(self, device: c_nvmlDevice_t, sourceFilter: int) -> list[int]:
        gpu = self._check(device, "nvmlDeviceGetRetiredPages")
        if sourceFilter not in (NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return list(gpu.retired_pages.get(sourceFilter, []))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: c_nvmlDevice_t) -> int:
        return self._check(device, "nvmlDeviceGetRetiredPagesPendingStatus").retire_pending

    def _nvlink(self, device: c_nvmlDevice_t, link: int, function: str) -> FakeGpu:
        gpu = self._check(device, function)
        if not gpu.nvlink_count:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < gpu.nvlink_count:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu

    def nvmlDeviceGetNvLinkState(self, device: c_nvmlDevice_t, link: int) -> int:
        gpu = self._nvlink(device, link, "nvmlDeviceGetNvLinkState")
        return int(link not in gpu.nvlinks_down)

    def nvmlDeviceGetNvLinkErrorCounter(self, device: c_nvmlDevice_t, link: int, counter: int) -> int:
        gpu = self._nvlink(device, link, "nvmlDeviceGetNvLinkErrorCounter")
        if counter not in (0, 1, 2, 3):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.nvlink_errors.get((link, counter), 0)

    # PCIe link and clocks held back

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetCurrPcieLinkGeneration").pcie_link[0]

    def nvmlDeviceGetGpuMaxPcieLinkGeneration(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetGpuMaxPcieLinkGeneration").pcie_link_max[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetCurrPcieLinkWidth").pcie_link[1]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetMaxPcieLinkWidth").pcie_link_max[1]

    def nvmlDeviceGetViolationStatus(self, device: c_nvmlDevice_t, perfPolicyType: int) -> c_nvmlViolationTime_t:
        gpu = self._check(device, "nvmlDeviceGetViolationStatus")
        if perfPolicyType not in (0, 1, 2, 3, 4, 5, 10, 11):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if perfPolicyType == NVML_PERF_POLICY_POWER:
            # one reading of the power policy per tick moves NVML's clock on a second
            gpu.violation_readings += 1
        seconds = gpu.violation_readings
        return c_nvmlViolationTime_t(
            referenceTime=SAMPLE_T0_US + seconds * 1_000_000,
            violationTime=gpu.held_back_ns_per_s.get(perfPolicyType, 0) * seconds,
        )

    # GPM

    def nvmlGpmQueryDeviceSupport(self, device: c_nvmlDevice_t) -> c_nvmlGpmSupport_t:
        gpu = self._check(device, "nvmlGpmQueryDeviceSupport")
        return c_nvmlGpmSupport_t(NVML_GPM_SUPPORT_VERSION, int(gpu.gpm is not None))

    def nvmlGpmSampleAlloc(self) -> c_nvmlGpmSample_t:
        self._require_init()
        sample = c_nvmlGpmSample_t()
        self.gpm_samples.append(sample)
        return sample

    def nvmlGpmSampleFree(self, gpmSample: c_nvmlGpmSample_t) -> None:
        if gpmSample.freed or gpmSample not in self.gpm_samples:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpmSample.freed = True
        self.gpm_samples.remove(gpmSample)

    def nvmlGpmSampleGet(self, device: c_nvmlDevice_t, gpmSample: c_nvmlGpmSample_t) -> c_nvmlGpmSample_t:
        gpu = self._check(device, "nvmlGpmSampleGet")
        if gpu.gpm is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if gpu.gpm_error is not None:
            raise NVMLError(gpu.gpm_error)
        if gpmSample.freed:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self.gpm_samples_taken += 1
        gpmSample.gpu, gpmSample.gpu_instance, gpmSample.taken = device.gpu, None, self.gpm_samples_taken
        return gpmSample

    def nvmlGpmMigSampleGet(
        self, device: c_nvmlDevice_t, gpuInstanceId: int, gpmSample: c_nvmlGpmSample_t
    ) -> c_nvmlGpmSample_t:
        gpu = self._check(device, "nvmlGpmMigSampleGet")
        if gpu.gpm is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not gpu.mig_enabled or not any(m.gpu_instance_id == gpuInstanceId for m in gpu.mig_slots.values()):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if gpmSample.freed:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self.gpm_samples_taken += 1
        gpmSample.gpu, gpmSample.gpu_instance, gpmSample.taken = device.gpu, gpuInstanceId, self.gpm_samples_taken
        return gpmSample

    def nvmlGpmMetricsGet(self, metricsGet: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
        first, second = metricsGet.sample1, metricsGet.sample2
        if metricsGet.version != NVML_GPM_METRICS_GET_VERSION or first is None or second is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        # two samples of one GPU, the second taken after the first
        if first.gpu is None or (first.gpu, first.gpu_instance) != (second.gpu, second.gpu_instance):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not first.taken < second.taken:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[first.gpu]
        if first.gpu_instance is None:
            gpm = gpu.gpm or {}
        else:
            gpm = next(m.gpm for m in gpu.mig_slots.values() if m.gpu_instance_id == first.gpu_instance)
        for metric in metricsGet.metrics[: metricsGet.numMetrics]:
            if metric.metricId in gpm:
                metric.nvmlReturn, metric.value = NVML_SUCCESS, gpm[metric.metricId]
            else:
                metric.nvmlReturn, metric.value = NVML_ERROR_NOT_SUPPORTED, 0.0
        return metricsGet

    # events

    def fire(self, gpu: int, eventType: int, eventData: int = 0) -> None:
        """The driver sends an event of `gpu`: every set that registered its type gets it."""
        for event_set in self.event_sets:
            if event_set.registered.get(gpu, 0) & eventType:
                event_set.pending.put(c_nvmlEventData_t(c_nvmlDevice_t(gpu), eventType, eventData))

    def nvmlDeviceGetIndex(self, handle: c_nvmlDevice_t) -> int:
        self._check(handle, "nvmlDeviceGetIndex")
        return handle.gpu

    def nvmlEventSetCreate(self) -> c_nvmlEventSet_t:
        self._require_init()
        event_set = c_nvmlEventSet_t()
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceGetSupportedEventTypes(self, handle: c_nvmlDevice_t) -> int:
        return self._check(handle, "nvmlDeviceGetSupportedEventTypes").supported_events

    def nvmlDeviceRegisterEvents(self, handle: c_nvmlDevice_t, eventTypes: int, eventSet: c_nvmlEventSet_t) -> None:
        gpu = self._check(handle, "nvmlDeviceRegisterEvents")
        if eventTypes & ~gpu.supported_events:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        eventSet.registered[handle.gpu] = eventSet.registered.get(handle.gpu, 0) | eventTypes

    def nvmlEventSetWait_v2(self, eventSet: c_nvmlEventSet_t, timeoutms: int) -> c_nvmlEventData_t:
        if eventSet.freed:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self._require_init()
        try:
            return eventSet.pending.get_nowait()
        except queue.Empty:
            pass
        # NVML documents the wait answering GPU_IS_LOST for a GPU of the set that fell off the bus.
        if any(self.gpus[gpu].lost for gpu in eventSet.registered):
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        try:
            return eventSet.pending.get(timeout=timeoutms / 1000)
        except queue.Empty:
            raise NVMLError(NVML_ERROR_TIMEOUT) from None

    def nvmlEventSetFree(self, eventSet: c_nvmlEventSet_t) -> None:
        if eventSet.freed:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        eventSet.freed = True
        self.event_sets.remove(eventSet)

    # MIG

    def nvmlDeviceGetMigMode(self, device: c_nvmlDevice_t) -> list[int]:
        gpu = self._check(device, "nvmlDeviceGetMigMode")
        mode = NVML_DEVICE_MIG_ENABLE if gpu.mig_enabled else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: c_nvmlDevice_t) -> int:
        return self._check(device, "nvmlDeviceGetMaxMigDeviceCount").mig_max_count

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: c_nvmlDevice_t, index: int) -> c_nvmlDevice_t:
        gpu = self._check(device, "nvmlDeviceGetMigDeviceHandleByIndex")
        if not gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index not in gpu.mig_slots:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return c_nvmlDevice_t(device.gpu, index)

    def nvmlDeviceGetGpuInstanceId(self, device: c_nvmlDevice_t) -> int:
        return self._mig(device, "nvmlDeviceGetGpuInstanceId").gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, device: c_nvmlDevice_t) -> int:
        return self._mig(device, "nvmlDeviceGetComputeInstanceId").compute_instance_id

    # processes

    def nvmlDeviceGetComputeRunningProcesses(self, handle: c_nvmlDevice_t) -> list[Any]:
        gpu = self._check(handle, "nvmlDeviceGetComputeRunningProcesses")
        if handle.mig_slot is not None:
            mig = gpu.mig_slots[handle.mig_slot]
            return self._process_infos(mig.compute_processes, mig.gpu_instance_id, mig.compute_instance_id)
        if gpu.mig_enabled:
            # the GPU's own handle in MIG mode answers root only
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        return self._process_infos(gpu.compute_processes, INSTANCE_ID_INVALID, INSTANCE_ID_INVALID)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: c_nvmlDevice_t) -> list[Any]:
        gpu = self._check(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        if handle.mig_slot is not None:
            return []
        if gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        return self._process_infos(gpu.graphics_processes, INSTANCE_ID_INVALID, INSTANCE_ID_INVALID)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: c_nvmlDevice_t) -> list[Any]:
        return self.nvmlDeviceGetComputeRunningProcesses(handle)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: c_nvmlDevice_t) -> list[Any]:
        return self.nvmlDeviceGetGraphicsRunningProcesses(handle)

    def nvmlDeviceGetProcessUtilization(
        self, handle: c_nvmlDevice_t, timeStamp: int
    ) -> list[c_nvmlProcessUtilizationSample_t]:
        gpu = self._check(handle, "nvmlDeviceGetProcessUtilization")
        self.process_utilization_calls.append((handle.gpu, timeStamp))
        if handle.mig_slot is not None or gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        samples = [
            c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=ts, smUtil=sm, memUtil=0)
            for pid, ts, sm in gpu.process_samples
            if ts > timeStamp
        ]
        if not samples:
            # NVML: no sample newer than the given timestamp
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return samples


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> FakeNvml:
    """Make `import pynvml` return `fake` until the test ends."""
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake
