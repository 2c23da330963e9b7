"""The gpu probe against a fake NVML, and against a real one where there is a GPU.

The fake (tests/support/fake_nvml.py) follows nvidia-ml-py's names, return types and
errors; the first tests check that against the installed nvidia-ml-py, so the
fake cannot drift into an API the real module does not have.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import fake_nvml
from support.fake_nvml import (
    GIB,
    SAMPLE_T0_US,
    FakeGpu,
    FakeMig,
    FakeNvml,
    FakeProcess,
    default_gpus,
    install,
)

from probes.contract import ProbeUnavailable
from probes.host import gpm
from probes.host.gpm import GpmSample
from probes.sources.gpu import (
    CLOCKS_EVENT_REASONS,
    DRIVER_REMEDY,
    PERF_POLICIES,
    GpuDeviceSample,
    GpuProbe,
    GpuProcessSample,
    GpuSample,
    MigInstanceSample,
    NvLinkSample,
    NvmlPidMap,
    ViolationCounter,
    decode_throttle_reasons,
    derive_gpu,
    parse_nspid,
)

REQUIRE_GPU = os.environ.get("ORAC_REQUIRE_GPU") == "1"

STATUS = """\
Name:\tpython3
Umask:\t0022
State:\tS (sleeping)
Tgid:\t{pid}
Ngid:\t0
Pid:\t{pid}
PPid:\t1
NStgid:\t{nspid}
NSpid:\t{nspid}
NSpgid:\t{nspid}
"""


def write_status(proc: Path, entry: str, *nspid: int) -> None:
    (proc / entry).mkdir(parents=True, exist_ok=True)
    (proc / entry / "status").write_text(STATUS.format(pid=nspid[0], nspid="\t".join(map(str, nspid))))


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A /proc where orac is in the same PID namespace as the procfs (the usual case)."""
    root = tmp_path / "proc"
    write_status(root, "self", 777)
    return root


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return install(monkeypatch, FakeNvml())


@pytest.fixture
def probe(fake: FakeNvml, proc: Path) -> Iterator[GpuProbe]:
    p = GpuProbe(proc=str(proc))
    p.start()
    yield p
    p.stop()


# ---- the fake follows nvidia-ml-py ----------------------------------------------------------


@pytest.fixture
def real_pynvml(monkeypatch: pytest.MonkeyPatch):
    # Another test's fake may have been imported as "pynvml": import the real one afresh.
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    return pytest.importorskip("pynvml")


def test_fake_functions_have_the_real_names_and_parameters(real_pynvml) -> None:
    fake = FakeNvml()
    names = [n for n in dir(fake) if n.startswith("nvml") and callable(getattr(fake, n))]
    assert len(names) > 20
    for name in names:
        real = getattr(real_pynvml, name, None)
        assert real is not None, f"nvidia-ml-py has no {name}"
        assert list(inspect.signature(getattr(fake, name)).parameters) == list(
            inspect.signature(real).parameters
        ), name


def test_fake_errors_and_constants_are_the_real_ones(real_pynvml) -> None:
    fake = FakeNvml()
    for name, cls in fake_nvml.ERROR_CLASSES.items():
        real = getattr(real_pynvml, name)
        assert issubclass(real, real_pynvml.NVMLError)
        assert cls().value == real().value, name
        # NVMLError(code) picks the subclass, in both
        assert type(real_pynvml.NVMLError(real().value)) is real
        assert type(fake.NVMLError(cls().value)) is cls
    for name in dir(fake):
        if name.startswith(("NVML_", "nvmlClocksEventReason")):
            assert getattr(fake, name) == getattr(real_pynvml, name), name


def test_fake_return_types_have_the_real_fields(real_pynvml) -> None:
    def fields(struct: type) -> list[str]:
        return [f[0] for f in struct._fields_]

    assert set(fields(real_pynvml.c_nvmlMemory_t)) == {f.name for f in dataclasses.fields(fake_nvml.c_nvmlMemory_t)}
    assert fields(real_pynvml.c_nvmlUtilization_t) == [f.name for f in dataclasses.fields(fake_nvml.c_nvmlUtilization_t)]
    assert set(fields(real_pynvml.c_nvmlProcessUtilizationSample_t)) == {
        f.name for f in dataclasses.fields(fake_nvml.c_nvmlProcessUtilizationSample_t)
    }
    fake = FakeNvml()
    fake.nvmlInit()
    info = fake.nvmlDeviceGetComputeRunningProcesses(fake.nvmlDeviceGetHandleByIndex(0))[0]
    assert set(vars(info)) == set(fields(real_pynvml.c_nvmlProcessInfo_t))


def test_throttle_bits_are_pynvmls(real_pynvml) -> None:
    names = {
        "GPU idle": "GpuIdle",
        "applications clocks setting": "ApplicationsClocksSetting",
        "SW power cap": "SwPowerCap",
        "HW slowdown": "HwSlowdown",
        "sync boost": "SyncBoost",
        "SW thermal slowdown": "SwThermalSlowdown",
        "HW thermal slowdown": "HwThermalSlowdown",
        "HW power brake slowdown": "HwPowerBrakeSlowdown",
        "display clocks setting": "DisplayClockSetting",
    }
    for bit, word in CLOCKS_EVENT_REASONS:
        assert getattr(real_pynvml, f"nvmlClocksEventReason{names[word]}") == bit
        assert getattr(real_pynvml, f"nvmlClocksThrottleReason{names[word]}") == bit


# ---- sampling -------------------------------------------------------------------------------


def test_every_field_of_both_gpus(probe: GpuProbe) -> None:
    sample = probe.sample()
    assert sample.driver_version == "550.54.15"
    a6000, h100 = sample.devices
    assert dataclasses.replace(a6000, nvml_time_ns=0) == fake_device_sample(
        index=0,
        gpu=default_gpus()[0],
        fan_percent=45,
        processes=(fake_process(2002, 10 * GIB, sm=72.0),),
        gpm=GpmSample(problem=gpm.NOT_SUPPORTED),  # an Ampere card
    )
    assert dataclasses.replace(h100, nvml_time_ns=0) == fake_device_sample(
        index=1,
        gpu=default_gpus()[1],
        fan_percent=None,  # the unsupported field: None, not 0
        processes=(fake_process(4242, 29 * GIB, sm=95.0),),
        gpm=GpmSample(),  # the first GPM sample: nothing to compare with yet
    )
    assert a6000.nvml_time_ns > 0 and h100.nvml_time_ns > 0
    assert sample.nvml_time_ns == a6000.nvml_time_ns + h100.nvml_time_ns


def fake_device_sample(
    index: int, gpu: FakeGpu, fan_percent: int | None, processes: tuple[GpuProcessSample, ...],
    gpm: GpmSample | None = None,
) -> GpuDeviceSample:
    """The sample the probe should make of a fake GPU (with MIG off)."""
    return GpuDeviceSample(
        index=index,
        name=gpu.name,
        uuid=gpu.uuid,
        sm_util_percent=gpu.util_gpu,
        memory_util_percent=gpu.util_memory,
        memory_used_bytes=gpu.memory_used_bytes,
        memory_total_bytes=gpu.memory_total_bytes,
        temperature_c=gpu.temperature_c,
        power_draw_mw=gpu.power_mw,
        power_limit_mw=gpu.power_limit_mw,
        sm_clock_mhz=gpu.sm_clock_mhz,
        memory_clock_mhz=gpu.memory_clock_mhz,
        fan_percent=fan_percent,
        pcie_rx_kb_per_s=gpu.pcie_rx_kb,
        pcie_tx_kb_per_s=gpu.pcie_tx_kb,
        ecc_corrected_volatile=gpu.ecc_corrected,
        ecc_uncorrected_volatile=gpu.ecc_uncorrected,
        throttle_reasons_mask=gpu.clocks_event_reasons,
        mig_enabled=False,
        mig_instances=(),
        processes=processes,
        nvml_time_ns=0,
        gpm=gpm,
        pcie_link_gen=gpu.pcie_link[0],
        pcie_link_gen_max=gpu.pcie_link_max[0],
        pcie_link_width=gpu.pcie_link[1],
        pcie_link_width_max=gpu.pcie_link_max[1],
        # the first reading of each policy NVML counts
        violations=tuple(
            ViolationCounter(policy, SAMPLE_T0_US + 1_000_000, gpu.held_back_ns_per_s.get(policy, 0))
            for policy in PERF_POLICIES
        ),
        remapped_rows_correctable=gpu.remapped_rows[0],
        remapped_rows_uncorrectable=gpu.remapped_rows[1],
        remap_pending=bool(gpu.remapped_rows[2]),
        remap_failed=bool(gpu.remapped_rows[3]),
        nvlinks=tuple(
            NvLinkSample(
                link, link not in gpu.nvlinks_down, gpu.nvlink_errors.get((link, 0), 0),
                gpu.nvlink_errors.get((link, 1), 0), gpu.nvlink_errors.get((link, 2), 0) + gpu.nvlink_errors.get((link, 3), 0),
            )
            for link in range(gpu.nvlink_count)
        ),
    )


# ---- GPM ------------------------------------------------------------------------------------


def test_gpm_figures_come_from_two_samples_and_each_metric_says_if_it_was_measured(fake: FakeNvml, probe: GpuProbe) -> None:
    probe.sample()
    h100 = probe.sample().devices[1].gpm
    assert h100 == GpmSample(
        sm_activity_percent=41.5, sm_occupancy_percent=22.0, tensor_activity_percent=12.25,
        dfma_tensor_percent=0.0, hmma_tensor_percent=12.0, imma_tensor_percent=0.25, dram_bw_percent=63.0,
        fp64_percent=0.0, fp32_percent=8.0, fp16_percent=1.5, pcie_tx_mib_per_s=0.5, pcie_rx_mib_per_s=2.0,
        nvlink_rx_mib_per_s=51_200.0, nvlink_tx_mib_per_s=50_176.0,
    )
    # a metric this GPU does not measure is None, the others stay
    del fake.gpus[1].gpm[fake_nvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL]
    h100 = probe.sample().devices[1].gpm
    assert h100 is not None and h100.tensor_activity_percent is None and h100.sm_activity_percent == 41.5
    # the samples are the driver's: stop gives them back
    assert len(fake.gpm_samples) == 2
    probe.stop()
    assert fake.gpm_samples == []


def test_gpm_counters_held_by_another_profiler_are_said_not_shown(fake: FakeNvml, probe: GpuProbe) -> None:
    probe.sample()
    fake.gpus[1].gpm_error = fake_nvml.NVML_ERROR_IN_USE
    held = probe.sample().devices[1].gpm
    assert held == GpmSample(problem=gpm.IN_USE)
    # released: a sample to start from again, then figures
    fake.gpus[1].gpm_error = None
    assert probe.sample().devices[1].gpm == GpmSample()
    again = probe.sample().devices[1].gpm
    assert again is not None and again.sm_activity_percent == 41.5


def wait_for_events(probe: GpuProbe, count: int) -> tuple:
    deadline = time.monotonic() + 5
    events: tuple = ()
    while len(events) < count:
        assert time.monotonic() < deadline, events
        time.sleep(0.01)
        events += probe.sample().events
    return events


def test_events_come_as_they_happen_with_their_gpu_and_xid(fake: FakeNvml, probe: GpuProbe) -> None:
    from probes.host.nvml_events import GpuEvent

    assert probe.sample().events == ()
    before = time.time_ns()
    fake.fire(1, fake_nvml.nvmlEventTypeXidCriticalError, 79)
    fake.fire(0, fake_nvml.nvmlEventTypeClock)
    xid, clock = wait_for_events(probe, 2)
    assert dataclasses.replace(xid, wall_ns=0) == GpuEvent(0, 1, "Xid", 79)
    assert dataclasses.replace(clock, wall_ns=0) == GpuEvent(0, 0, "clock change", 0)
    assert before <= xid.wall_ns <= clock.wall_ns <= time.time_ns()
    # each once; the Xid stays in every sample's recent faults (the same tuple while none comes)
    later = probe.sample()
    assert later.events == () and [e.data for e in later.recent_faults] == [79]
    assert probe.sample().recent_faults is later.recent_faults
    probe.stop()
    assert fake.event_sets == []


def test_a_lost_gpu_is_an_event_and_the_others_still_send(fake: FakeNvml, probe: GpuProbe) -> None:
    fake.fire(1, fake_nvml.nvmlEventTypeXidCriticalError, 79)
    fake.gpus[0].lost = True
    events = wait_for_events(probe, 2)
    assert [(e.gpu_index, e.kind) for e in events] == [(1, "Xid"), (None, "GPU lost")]
    fake.fire(1, fake_nvml.nvmlEventTypeDoubleBitEccError)
    (ecc,) = wait_for_events(probe, 1)
    assert (ecc.gpu_index, ecc.kind) == (1, "ECC double-bit error")
    # the lost GPU is said once, not every wait
    time.sleep(0.6)
    assert probe.sample().events == ()


def test_a_gpu_without_events_is_said_and_the_others_still_send(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    gpus = default_gpus()
    gpus[0].supported_events = 0
    fake = install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        assert probe.sample().events_unavailable == {0: "this GPU reports none of the events"}
        fake.fire(1, fake_nvml.nvmlEventTypeDoubleBitEccError)
        (event,) = wait_for_events(probe, 1)
        assert (event.gpu_index, event.kind) == (1, "ECC double-bit error")
    finally:
        probe.stop()


def test_time_held_back_per_policy_is_a_share_of_nvmls_own_clock(probe: GpuProbe) -> None:
    prev = probe.sample()
    view = derive_gpu(prev, probe.sample(), 1.0)
    a6000, h100 = view.devices
    # 350 ms a second power-capped, 50 ms thermal; the other policies counted, at zero
    assert a6000.held_back_percent["power"] == pytest.approx(35.0)
    assert a6000.held_back_percent["thermal"] == pytest.approx(5.0)
    assert a6000.held_back_percent["sync boost"] == 0.0 and len(a6000.held_back_percent) == len(PERF_POLICIES)
    assert set(h100.held_back_percent.values()) == {0.0}
    # a link trained narrower than it can be
    assert (a6000.pcie_link_gen, a6000.pcie_link_width, a6000.pcie_link_width_max) == (4, 8, 16)
    # the first sample has nothing to compare with
    assert derive_gpu(prev, prev, 1.0).devices[0].held_back_percent == {}


def test_nvlinks_are_read_every_few_ticks_and_a_link_down_is_seen(fake: FakeNvml, probe: GpuProbe) -> None:
    from probes.sources.gpu import NVLINK_EVERY

    first = probe.sample().devices[1].nvlinks
    assert len(first) == 18 and first[3] == NvLinkSample(3, True, 12, 0, 3)
    fake.gpus[1].nvlinks_down = {5}
    between = [probe.sample().devices[1].nvlinks for _ in range(NVLINK_EVERY - 1)]
    # the same reading in between: no calls for 18 links every tick
    assert all(links is first for links in between)
    again = probe.sample().devices[1].nvlinks
    assert again[5].active is False and again[4].active is True
    # a GPU without NVLink has none, and is not asked again
    assert probe.sample().devices[0].nvlinks == ()


def test_a_gpu_before_ampere_counts_retired_pages_instead_of_remapped_rows(
    monkeypatch: pytest.MonkeyPatch, proc: Path
) -> None:
    gpus = default_gpus()
    gpus[0].unsupported.add("nvmlDeviceGetRemappedRows")
    gpus[0].retired_pages = {0: [0x1000, 0x2000], 1: [0x3000]}
    gpus[0].retire_pending = 1
    install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        old, ampere = probe.sample().devices
    finally:
        probe.stop()
    assert (old.remapped_rows_correctable, old.retired_pages_single_bit, old.retired_pages_double_bit) == (None, 2, 1)
    assert old.retire_pending is True
    # a GPU that remaps rows is not asked for retired pages
    assert (ampere.remapped_rows_correctable, ampere.retired_pages_single_bit) == (2, None)


def test_a_gpu_that_fell_off_the_bus_says_so_and_the_other_goes_on(fake: FakeNvml, probe: GpuProbe) -> None:
    probe.sample()
    fake.gpus[0].lost = True
    a6000, h100 = probe.sample().devices
    assert a6000.lost and a6000.sm_util_percent is None and a6000.memory_used_bytes is None
    assert not h100.lost and h100.sm_util_percent == 95


def test_gpm_figures_are_recorded_and_read_back(probe: GpuProbe) -> None:
    import probes.registry  # noqa: F401  (the probes' types, as a recording knows them)
    from probes.store.codec import Decoder, Encoder, Schema, TypeTable

    probe.sample()
    sample = probe.sample()
    assert sample.devices[1].gpm is not None and sample.devices[1].gpm.sm_activity_percent == 41.5
    table = TypeTable()
    payload = Encoder(table).encode_frame({"gpu": sample}, {}, None)
    samples, _ = Decoder(Schema(*table.unsaved())).decode_frame(payload, None)
    assert samples["gpu"] == sample


def test_gpm_on_a_driver_without_it(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    fake = FakeNvml()

    def no_function(device: object) -> None:
        # what nvidia-ml-py raises when libnvidia-ml has no such symbol
        raise fake.NVMLError(fake_nvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    monkeypatch.setattr(fake, "nvmlGpmQueryDeviceSupport", no_function)
    install(monkeypatch, fake)
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        assert all(d.gpm == GpmSample(problem=gpm.OLD_DRIVER) for d in probe.sample().devices)
    finally:
        probe.stop()


def fake_process(pid: int, memory: int | None, sm: float | None, type: str = "compute") -> GpuProcessSample:
    return GpuProcessSample(
        pid=pid, type=type, gpu_memory_bytes=memory, sm_util_percent=sm, gpu_instance_id=None, compute_instance_id=None
    )


def test_one_unsupported_field_leaves_the_others_and_is_not_asked_again(
    probe: GpuProbe, fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    real = fake.nvmlDeviceGetFanSpeed

    def counting(handle):
        asked.append(handle.gpu)
        return real(handle)

    monkeypatch.setattr(fake, "nvmlDeviceGetFanSpeed", counting)
    for _ in range(3):
        sample = probe.sample()
    assert [d.fan_percent for d in sample.devices] == [45, None]
    # GPU 0 every tick; GPU 1 once: NotSupported does not change while the driver runs
    assert asked == [0, 1, 0, 0]


def test_other_nvml_errors_are_none_for_the_tick_only(probe: GpuProbe, fake: FakeNvml, monkeypatch) -> None:
    def timeout(handle, sensor):
        raise fake.NVMLError(fake.NVML_ERROR_TIMEOUT)

    real = fake.nvmlDeviceGetTemperature
    monkeypatch.setattr(fake, "nvmlDeviceGetTemperature", timeout)
    assert [d.temperature_c for d in probe.sample().devices] == [None, None]
    monkeypatch.setattr(fake, "nvmlDeviceGetTemperature", real)
    assert [d.temperature_c for d in probe.sample().devices] == [71, 58]


def test_process_utilization_is_asked_since_the_last_seen_sample(probe: GpuProbe, fake: FakeNvml) -> None:
    first = probe.sample()
    # the first call asks for everything NVML has
    assert fake.process_utilization_calls == [(0, 0), (1, 0)]
    assert [p.sm_util_percent for d in first.devices for p in d.processes] == [72.0, 95.0]

    second = probe.sample()
    # then only for samples newer than the newest one seen on that GPU
    assert fake.process_utilization_calls[2:] == [(0, SAMPLE_T0_US + 300_000), (1, SAMPLE_T0_US + 200_000)]
    # NVML had nothing newer (NVMLError_NotFound): no value, not 0
    assert [p.sm_util_percent for d in second.devices for p in d.processes] == [None, None]

    fake.gpus[0].process_samples.append((2002, SAMPLE_T0_US + 1_300_000, 40))
    third = probe.sample()
    assert fake.process_utilization_calls[4:] == [(0, SAMPLE_T0_US + 300_000), (1, SAMPLE_T0_US + 200_000)]
    assert third.devices[0].processes[0].sm_util_percent == 40.0
    probe.sample()
    assert fake.process_utilization_calls[6] == (0, SAMPLE_T0_US + 1_300_000)


def test_memory_not_available_is_none(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    gpus = default_gpus()
    # nvidia-ml-py turns NVML_VALUE_NOT_AVAILABLE into None; older bindings pass it on raw
    gpus[0].compute_processes = [FakeProcess(2002, None)]
    gpus[1].compute_processes = [FakeProcess(4242, 2**64 - 1)]
    install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        assert [p.gpu_memory_bytes for d in probe.sample().devices for p in d.processes] == [None, None]
    finally:
        probe.stop()


def test_a_process_with_both_contexts_is_one_row(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    gpus = default_gpus()
    gpus[0].graphics_processes = [FakeProcess(2002, 10 * GIB), FakeProcess(3001, 256 * 1024**2)]
    install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        processes = probe.sample().devices[0].processes
    finally:
        probe.stop()
    assert processes == (
        fake_process(2002, 10 * GIB, 72.0, type="compute+graphics"),
        fake_process(3001, 256 * 1024**2, None, type="graphics"),
    )


def test_mig_instances_and_their_processes(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    gpus = default_gpus()
    gpus[1].mig_enabled = True
    gpus[1].mig_slots = {
        0: FakeMig(1, 0, 40 * GIB, 12 * GIB, [FakeProcess(5000, 11 * GIB)]),
        3: FakeMig(2, 0, 20 * GIB, 0),
    }
    install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        h100 = probe.sample().devices[1]
    finally:
        probe.stop()
    assert h100.mig_enabled is True
    # each GPU instance's own GPM, from its second sample on
    assert h100.mig_instances == (
        MigInstanceSample(1, 0, 12 * GIB, 40 * GIB, None, None, GpmSample()),
        MigInstanceSample(2, 0, 0, 20 * GIB, None, None, GpmSample()),
    )
    assert h100.gpm == GpmSample(problem=gpm.MIG_GPM)
    # a GPU in MIG mode has no utilization of its own
    assert (h100.sm_util_percent, h100.memory_util_percent) == (None, None)
    (process,) = h100.processes
    assert (process.pid, process.gpu_memory_bytes, process.gpu_instance_id, process.compute_instance_id) == (
        5000, 11 * GIB, 1, 0,
    )
    assert process.sm_util_percent is None


def test_mig_gpu_instances_have_their_own_gpm_and_give_it_back_when_gone(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    gpus = default_gpus()
    gpus[1].mig_enabled = True
    gpus[1].mig_slots = {
        0: FakeMig(1, 0, 40 * GIB, 12 * GIB, [], {fake_nvml.NVML_GPM_METRIC_SM_UTIL: 61.0}),
        3: FakeMig(2, 0, 20 * GIB, 0, [], {fake_nvml.NVML_GPM_METRIC_SM_UTIL: 0.0}),
    }
    fake = install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        probe.sample()
        busy, idle = probe.sample().devices[1].mig_instances
        assert busy.gpm is not None and (busy.gpm.sm_activity_percent, busy.gpm.tensor_activity_percent) == (61.0, None)
        assert idle.gpm is not None and idle.gpm.sm_activity_percent == 0.0
        held = len(fake.gpm_samples)
        # MIG reconfigured: GPU instance 2 destroyed
        del gpus[1].mig_slots[3]
        (left,) = probe.sample().devices[1].mig_instances
        assert left.gpu_instance_id == 1 and len(fake.gpm_samples) == held - 2
        # MIG turned off: the instance's samples go back, and the GPU starts an interval of its own
        gpus[1].mig_enabled = False
        whole = probe.sample().devices[1]
        assert whole.gpm == GpmSample() and len(fake.gpm_samples) == 2
    finally:
        probe.stop()
    assert fake.gpm_samples == []


def test_start_twice_inits_once_and_stop_shuts_down(fake: FakeNvml, proc: Path) -> None:
    probe = GpuProbe(proc=str(proc))
    probe.start()
    probe.start()
    assert fake.init_count == 1
    probe.stop()
    probe.stop()
    assert fake.shutdown_count == 1


# ---- what the user reads when NVML cannot run ---------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "remedy"),
    [
        (fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver: libnvidia-ml.so not found", DRIVER_REMEDY),
        (
            fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED,
            "NVIDIA driver not loaded",
            "load it with `sudo modprobe nvidia`; `dmesg` tells why it failed",
        ),
        (
            fake_nvml.NVML_ERROR_NO_PERMISSION,
            "no permission to use the NVIDIA GPUs",
            "check the permissions of /dev/nvidia*, or run `sudo orac`",
        ),
        (
            fake_nvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
            "the NVIDIA driver and libnvidia-ml.so are different versions",
            "reboot (or reload the nvidia kernel modules) after a driver upgrade",
        ),
        (fake_nvml.NVML_ERROR_UNKNOWN, "NVML failed: Unknown Error", "check that `nvidia-smi` works"),
    ],
    ids=["library-not-found", "driver-not-loaded", "no-permission", "version-mismatch", "unknown"],
)
def test_nvml_errors_at_start_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, proc: Path, nvidia_sys: Path, code: int, reason: str, remedy: str
) -> None:
    install(monkeypatch, FakeNvml(init_error=code))
    with pytest.raises(ProbeUnavailable) as raised:
        GpuProbe(proc=str(proc), sys_root=str(nvidia_sys)).start()
    assert (raised.value.reason, raised.value.remedy) == (reason, remedy)
    assert not raised.value.absent


@pytest.fixture
def nvidia_sys(tmp_path: Path) -> Path:
    """A /sys whose PCI bus has an NVIDIA 3D controller (an H100 here) beside an Intel NIC."""
    root = tmp_path / "sys"
    for name, vendor, cls in (("0000:17:00.0", "0x10de", "0x030200"), ("0000:03:00.0", "0x8086", "0x020000")):
        device = root / "bus" / "pci" / "devices" / name
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        (device / "class").write_text(cls + "\n")
    return root


@pytest.mark.parametrize(
    "code", [fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND, fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED]
)
def test_no_driver_on_a_machine_without_an_nvidia_gpu_is_no_fault(
    monkeypatch: pytest.MonkeyPatch, proc: Path, nvidia_sys: Path, code: int
) -> None:
    install(monkeypatch, FakeNvml(init_error=code))
    for device in (nvidia_sys / "bus" / "pci" / "devices").iterdir():
        if (device / "vendor").read_text().strip() == "0x10de":
            (device / "vendor").write_text("0x1af4\n")  # a virtio device instead
    with pytest.raises(ProbeUnavailable) as raised:
        GpuProbe(proc=str(proc), sys_root=str(nvidia_sys)).start()
    assert raised.value.absent
    assert raised.value.reason == "no NVIDIA GPU in this machine"


def test_no_driver_text_is_exact(monkeypatch: pytest.MonkeyPatch, proc: Path, nvidia_sys: Path) -> None:
    install(monkeypatch, FakeNvml(init_error=fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    with pytest.raises(ProbeUnavailable) as raised:
        GpuProbe(proc=str(proc), sys_root=str(nvidia_sys)).start()
    assert str(raised.value) == (
        "no NVIDIA driver: libnvidia-ml.so not found: "
        "install the NVIDIA driver, which provides libnvidia-ml.so.1 (check with `nvidia-smi`)"
    )


def test_no_gpu(monkeypatch: pytest.MonkeyPatch, proc: Path) -> None:
    fake = install(monkeypatch, FakeNvml(gpus=[]))
    with pytest.raises(ProbeUnavailable) as raised:
        GpuProbe(proc=str(proc)).start()
    assert raised.value.reason == "no NVIDIA GPU found"
    assert "nvidia-smi -L" in raised.value.remedy
    # NVML was shut down again, not left initialised
    assert fake.init_count == fake.shutdown_count == 1


def test_no_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch, proc: Path, nvidia_sys: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(ProbeUnavailable) as raised:
        GpuProbe(proc=str(proc), sys_root=str(nvidia_sys)).start()
    assert (raised.value.reason, raised.value.remedy) == (
        "nvidia-ml-py is not installed (no pynvml module)",
        "`pip install nvidia-ml-py`",
    )


def test_one_forbidden_gpu_does_not_hide_the_other(fake: FakeNvml, proc: Path) -> None:
    fake.gpus[0].unsupported.add("nvmlDeviceGetHandleByIndex")
    probe = GpuProbe(proc=str(proc))
    probe.start()
    try:
        assert [d.index for d in probe.sample().devices] == [1]
    finally:
        probe.stop()


# ---- decoding and deriving ------------------------------------------------------------------


def test_decode_throttle_reasons() -> None:
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x4 | 0x20) == ["SW power cap", "SW thermal slowdown"]
    assert decode_throttle_reasons(0x1FF) == [word for _, word in CLOCKS_EVENT_REASONS]
    assert decode_throttle_reasons(0x1 | 0x600) == ["GPU idle", "other (0x600)"]


def test_derive_gpu(probe: GpuProbe, fake: FakeNvml) -> None:
    prev = probe.sample()
    fake.gpus[1].ecc_corrected += 2
    curr = probe.sample()
    view = derive_gpu(prev, curr, 1.0)
    a6000, h100 = view.devices
    assert view.driver_version == "550.54.15"
    assert view.nvml_time_ns == curr.nvml_time_ns
    assert a6000.throttle_reasons == ("SW power cap", "SW thermal slowdown")
    assert h100.throttle_reasons == ()
    assert (a6000.power_draw_w, a6000.power_limit_w) == (182.345, 300.0)
    assert (a6000.pcie_rx_bytes_per_s, a6000.pcie_tx_bytes_per_s) == (1_250_000 * 1024, 30_500 * 1024)
    assert (a6000.sm_util_percent, a6000.memory_util_percent) == (72, 38)
    assert h100.fan_percent is None
    assert (h100.ecc_corrected_volatile, h100.ecc_corrected_new, h100.ecc_uncorrected_new) == (5, 2, 0)
    assert [(p.gpu_index, p.pid, p.type, p.gpu_memory_bytes) for p in view.processes] == [
        (0, 2002, "compute", 10 * GIB),
        (1, 4242, "compute", 29 * GIB),
    ]
    assert view.memory_by_pid() == {2002: 10 * GIB, 4242: 29 * GIB}


def test_derive_gpu_without_a_throttle_mask_or_a_previous_device() -> None:
    device = dataclasses.replace(fake_device_sample(0, default_gpus()[0], 45, ()), throttle_reasons_mask=None)
    view = derive_gpu(GpuSample("1", (), 0), GpuSample("1", (device,), 0), 1.0)
    assert view.devices[0].throttle_reasons is None
    assert view.devices[0].ecc_corrected_new is None


# ---- PID namespaces -------------------------------------------------------------------------


def test_parse_nspid() -> None:
    assert parse_nspid(STATUS.format(pid=5001, nspid="5001\t12")) == (5001, 12)
    assert parse_nspid("Name:\tx\nPid:\t3\n") == ()


def test_same_namespace_is_the_identity(proc: Path) -> None:
    pids = NvmlPidMap(str(proc))
    assert pids.depth == 0
    assert pids.translate([2002, 4242]) == {2002: 2002, 4242: 4242}


@pytest.fixture
def nested_proc(tmp_path: Path) -> Path:
    """orac one PID namespace below its /proc's: it is 7 inside, 4000 outside."""
    root = tmp_path / "proc"
    write_status(root, "self", 4000, 7)
    write_status(root, "4000", 4000, 7)
    write_status(root, "5001", 5001, 12)  # a CUDA process beside orac: 12 inside
    write_status(root, "300", 300)  # a process of the outer namespace only
    return root


def test_nested_namespace_maps_nspid(nested_proc: Path) -> None:
    pids = NvmlPidMap(str(nested_proc))
    assert pids.depth == 1
    # 12 is the process /proc calls 5001; 99 is nowhere, and stays as NVML gave it
    assert pids.translate([12, 99]) == {12: 5001, 99: 99}
    # The process exits and another gets pid 12 inside: found again, not the stale 5001.
    (nested_proc / "5001" / "status").unlink()
    write_status(nested_proc, "5003", 5003, 12)
    assert pids.translate([12]) == {12: 5003}


def test_the_probe_reports_pids_the_process_table_shows(monkeypatch: pytest.MonkeyPatch, nested_proc: Path) -> None:
    gpus = default_gpus()
    gpus[0].compute_processes = [FakeProcess(12, GIB)]
    gpus[0].process_samples = [(12, SAMPLE_T0_US, 33)]
    install(monkeypatch, FakeNvml(gpus))
    probe = GpuProbe(proc=str(nested_proc))
    probe.start()
    try:
        (process,) = probe.sample().devices[0].processes
    finally:
        probe.stop()
    assert (process.pid, process.sm_util_percent) == (5001, 33.0)


# ---- a real GPU -----------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_gpus_are_all_reported() -> None:
    sys.modules.pop("pynvml", None)
    try:
        pynvml = importlib.import_module("pynvml")
        pynvml.nvmlInit()
    except Exception as exc:
        message = f"no NVIDIA GPU/driver here: {exc}"
        if REQUIRE_GPU:
            pytest.fail(f"{message} (ORAC_REQUIRE_GPU=1 makes this a failure)")
        pytest.skip(message)
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        expected = [(i, pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetUUID(h)) for i, h in enumerate(handles)]
    finally:
        pynvml.nvmlShutdown()
    probe = GpuProbe()
    probe.start()
    try:
        probe.sample()
        sample = probe.sample()
    finally:
        probe.stop()
    assert [(d.index, d.name, d.uuid) for d in sample.devices] == expected
    for device in sample.devices:
        assert device.memory_total_bytes is None or device.memory_total_bytes > 0
        assert 0 < device.nvml_time_ns < 1_000_000_000
