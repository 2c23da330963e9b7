"""GPU Performance Monitoring (GPM): what a GPU's SMs did, not only whether a kernel ran.

NVML's "utilization" is the share of its window in which some kernel was
running: a GPU stuck in a collective, or running one tiny kernel, reads
100 %. On Hopper and newer GPUs NVML's GPM API gives the hardware's own
figures, the ones DCGM's profiling fields report (DCGM takes them from GPM on
Hopper): the share of SMs busy, warps resident, tensor pipes active, DRAM
bandwidth used, PCIe and NVLink traffic, each over the time between two GPM
samples. The GPU probe keeps one GpmReader per GPU and reads it every tick.

A GPM sample is an opaque handle held by the driver; only the metrics
computed from two of them can be kept, so the GPU probe's sample carries
these (percent and MiB/s over the interval) rather than raw counters.

The calls are nvidia-ml-py's: nvmlGpmQueryDeviceSupport, nvmlGpmSampleAlloc,
nvmlGpmSampleGet, nvmlGpmMetricsGet (a c_nvmlGpmMetricsGet_t naming the two
samples and the metric ids), nvmlGpmSampleFree.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

# nvidia-ml-py's NVML_GPM_METRIC_* ids, by the GpmSample field they fill.
METRIC_IDS: dict[str, int] = {
    "sm_activity_percent": 2,  # NVML_GPM_METRIC_SM_UTIL: share of SMs busy
    "sm_occupancy_percent": 3,  # NVML_GPM_METRIC_SM_OCCUPANCY: warps resident of the maximum
    "tensor_activity_percent": 5,  # NVML_GPM_METRIC_ANY_TENSOR_UTIL
    "dfma_tensor_percent": 6,  # NVML_GPM_METRIC_DFMA_TENSOR_UTIL: FP64 tensor
    "hmma_tensor_percent": 7,  # NVML_GPM_METRIC_HMMA_TENSOR_UTIL: FP16/BF16 tensor
    "imma_tensor_percent": 9,  # NVML_GPM_METRIC_IMMA_TENSOR_UTIL: integer tensor
    "dram_bw_percent": 10,  # NVML_GPM_METRIC_DRAM_BW_UTIL
    "fp64_percent": 11,  # NVML_GPM_METRIC_FP64_UTIL (non-tensor)
    "fp32_percent": 12,  # NVML_GPM_METRIC_FP32_UTIL
    "fp16_percent": 13,  # NVML_GPM_METRIC_FP16_UTIL
    "pcie_tx_mib_per_s": 20,  # NVML_GPM_METRIC_PCIE_TX_PER_SEC
    "pcie_rx_mib_per_s": 21,  # NVML_GPM_METRIC_PCIE_RX_PER_SEC
    "nvlink_rx_mib_per_s": 60,  # NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC
    "nvlink_tx_mib_per_s": 61,  # NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC
}
_METRICS_GET_VERSION = 1  # NVML_GPM_METRICS_GET_VERSION

# Why a GPU has no GPM figures, in words that follow "GPM".
NOT_SUPPORTED = "not on this GPU (Hopper or newer)"
OLD_DRIVER = "not in this driver or nvidia-ml-py (driver 520 or newer)"
IN_USE = "counters held by another profiler (DCGM, Nsight): no figures rather than wrong ones"
NO_PERMISSION = "needs root"
MIG_GPM = "by MIG instance, on the MIG lines"


@dataclass(frozen=True, slots=True)
class GpmSample:
    """GPM's figures for one GPU over the interval since its previous sample.

    Each is None where the GPU does not measure it (or on the first sample,
    which has nothing to compare with); `problem` says why none are there,
    in words that follow "GPM".
    """

    sm_activity_percent: float | None = None
    sm_occupancy_percent: float | None = None
    tensor_activity_percent: float | None = None
    dfma_tensor_percent: float | None = None
    hmma_tensor_percent: float | None = None
    imma_tensor_percent: float | None = None
    dram_bw_percent: float | None = None
    fp64_percent: float | None = None
    fp32_percent: float | None = None
    fp16_percent: float | None = None
    pcie_tx_mib_per_s: float | None = None
    pcie_rx_mib_per_s: float | None = None
    nvlink_rx_mib_per_s: float | None = None
    nvlink_tx_mib_per_s: float | None = None
    problem: str = ""


def _problem(nvml: ModuleType, exc: Exception) -> str:
    if isinstance(exc, nvml.NVMLError_NotSupported):
        return NOT_SUPPORTED
    if isinstance(exc, nvml.NVMLError_FunctionNotFound):
        return OLD_DRIVER
    in_use = getattr(nvml, "NVMLError_InUse", None)
    if in_use is not None and isinstance(exc, in_use):
        return IN_USE
    if isinstance(exc, nvml.NVMLError_NoPermission):
        return NO_PERMISSION
    return f"failed: {exc}"


class GpmReader:
    """GPM metrics of one GPU (`handle`), or of one of its MIG GPU instances, from the previous read to this one."""

    def __init__(self, nvml: ModuleType, handle: Any, gpu_instance_id: int | None = None) -> None:
        self._nvml = nvml
        self._handle = handle
        # a MIG GPU instance's own counters (nvmlGpmMigSampleGet) rather than the whole GPU's
        self._gpu_instance_id = gpu_instance_id
        self._samples: list[Any] = []
        self._have_previous = False
        # why this GPU gives no GPM figures at all; "" while it does
        self.unavailable = ""
        if not hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
            self.unavailable = OLD_DRIVER
            return
        try:
            if not nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice:
                self.unavailable = NOT_SUPPORTED
                return
            for _ in range(2):
                # one at a time, so that close() frees the first should the second fail
                self._samples.append(nvml.nvmlGpmSampleAlloc())
        except nvml.NVMLError as exc:
            self.close()
            self.unavailable = _problem(nvml, exc)

    def restart(self) -> None:
        """Forget the previous sample: the next read starts an interval (after MIG mode changed, say)."""
        self._have_previous = False

    def read(self) -> GpmSample:
        """Take a GPM sample now; the metrics between it and the previous one."""
        if self.unavailable:
            return GpmSample(problem=self.unavailable)
        nvml = self._nvml
        previous, current = self._samples
        try:
            if self._gpu_instance_id is None:
                nvml.nvmlGpmSampleGet(self._handle, current)
            else:
                nvml.nvmlGpmMigSampleGet(self._handle, self._gpu_instance_id, current)
        except nvml.NVMLError as exc:
            # A held counter or a lost GPU may pass: asked again next tick, from scratch.
            self._have_previous = False
            return GpmSample(problem=_problem(nvml, exc))
        had_previous, self._have_previous = self._have_previous, True
        self._samples = [current, previous]
        if not had_previous:
            return GpmSample()
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = _METRICS_GET_VERSION
        request.numMetrics = len(METRIC_IDS)
        request.sample1 = previous
        request.sample2 = current
        for i, metric_id in enumerate(METRIC_IDS.values()):
            request.metrics[i].metricId = metric_id
        try:
            nvml.nvmlGpmMetricsGet(request)
        except nvml.NVMLError as exc:
            return GpmSample(problem=_problem(nvml, exc))
        values: dict[str, Any] = {}
        for i, name in enumerate(METRIC_IDS):
            metric = request.metrics[i]
            # Each metric says itself whether this GPU measured it (NVML_SUCCESS is 0).
            values[name] = float(metric.value) if metric.nvmlReturn == 0 else None
        return GpmSample(**values)

    def close(self) -> None:
        for sample in self._samples:
            try:
                self._nvml.nvmlGpmSampleFree(sample)
            except self._nvml.NVMLError:
                pass
        self._samples = []
