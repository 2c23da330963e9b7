"""The USE verdict (probes.model.verdict) from fixed frames: every threshold at its edges, contributors, no data.

The views are the synthetic box's (tests/support/synthetic.py: 4 CPUs, a
python3 training job at 99 % CPU with the most memory), with one figure
changed a test at a time.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from support.synthetic import frames

from probes.contract import Views
from probes.host.process_io import ProcessIoRates
from probes.model.histograms import LatencyBucket
from probes.model.verdict import THRESHOLDS, Cell, State, Threshold, as_json, verdict
from probes.model.views import derive_frame
from probes.sources.disks import DiskRates
from probes.sources.gpu import GpuDeviceView, GpuProcessView, GpuView
from probes.sources.process_io import ProcessIoView
from probes.sources.system import PressureShare, parse_procs, parse_vmstat_swap_in

MS = 1_000_000
BASE = derive_frame(*frames())


def views(**changes: Any) -> Views:
    """The synthetic views with fields of some replaced: views(cpu={"procs_running": 5})."""
    out = dict(BASE)
    for name, fields in changes.items():
        out[name] = replace(out[name], **fields) if isinstance(fields, dict) else fields
    return Views(out)


def cell(v: Views, resource: str) -> Cell:
    return next(c for c in verdict(v) if c.resource == resource)


def quiet(**cpu: Any) -> dict[str, Any]:
    """The cpu view with no saturation signal but those given."""
    return {"procs_running": None, "pressure_share": {}, **cpu}


# --- the table ------------------------------------------------------------------


def below(value: float) -> float:
    return value - 1e-9


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_every_threshold_turns_at_its_edge(name: str) -> None:
    t = THRESHOLDS[name]
    assert t.reason and t.unit
    assert t.state(None) is State.NO_DATA
    for level, state in ((t.warning, State.WARNING), (t.saturated, State.SATURATED), (t.error, State.ERROR)):
        if level is None:
            continue
        if t.above:
            assert t.state(level) < state
            assert t.state(level + 1e-9) >= state
        else:
            assert t.state(below(level)) < state
            assert t.state(level) >= state


def test_a_threshold_table_can_be_replaced() -> None:
    mine = {**THRESHOLDS, "cpu.runnable_per_cpu": Threshold(0.5, 1.0, "runnable per CPU", "a stricter box")}
    v = views(cpu=quiet(procs_running=1 + 2))
    assert cell(v, "cpu").state is State.OK
    assert next(c for c in verdict(v, mine) if c.resource == "cpu").state is State.WARNING


# --- CPU ------------------------------------------------------------------------


@pytest.mark.parametrize(("procs_running", "state"), [(6, State.OK), (7, State.WARNING), (8, State.WARNING), (9, State.SATURATED)])
def test_cpu_runnable_per_cpu_not_counting_orac_reading(procs_running: int, state: State) -> None:
    # 4 CPUs: 1.5 per CPU is 6 runnable, 2 is 8; procs_running counts the reader too.
    c = cell(views(cpu=quiet(procs_running=procs_running), offcpu={"rq_p99_bucket": None}), "cpu")
    assert c.state is state
    assert f"{procs_running - 1} runnable on 4 CPUs" in c.summary


@pytest.mark.parametrize(("slot", "state"), [(21, State.OK), (22, State.WARNING), (23, State.WARNING), (24, State.SATURATED)])
def test_cpu_run_queue_p99_judged_by_its_buckets_floor(slot: int, state: State) -> None:
    bucket = LatencyBucket(1 << slot, 1 << (slot + 1))
    c = cell(views(cpu=quiet(), offcpu={"rq_p99_bucket": bucket}), "cpu")
    assert c.state is state
    if state is State.SATURATED:
        assert c.summary == "CPU saturated: run queue p99 17-34 ms"


@pytest.mark.parametrize(("some", "state"), [(19.9, State.OK), (20.0, State.WARNING), (59.9, State.WARNING), (60.0, State.SATURATED)])
def test_cpu_pressure(some: float, state: State) -> None:
    c = cell(views(cpu=quiet(pressure_share={"cpu": PressureShare(some, None)}), offcpu={"rq_p99_bucket": None}), "cpu")
    assert c.state is state


def test_cpu_saturated_names_the_busiest_process_and_says_why() -> None:
    c = cell(views(cpu=quiet(procs_running=13, pressure_share={"cpu": PressureShare(97.0, None)})), "cpu")
    assert c.state is State.SATURATED
    assert c.summary == "CPU saturated: 12 runnable on 4 CPUs, waiting 97 % (PSI)"
    assert c.contributor is not None
    assert (c.contributor.pid, c.contributor.name) == (2002, "python3")
    assert c.contributor.figure == "99 % CPU, waits p99 4.2-8.4 ms"


def test_cpu_ok_shows_utilisation_not_a_state() -> None:
    c = cell(views(cpu=quiet(procs_running=2), offcpu={"rq_p99_bucket": None}), "cpu")
    assert c.state is State.OK
    assert c.summary.startswith("CPU ok: ") and "% busy" in c.summary


def test_cpu_without_any_saturation_signal_is_no_data_not_ok() -> None:
    c = cell(Views({k: v for k, v in views(cpu=quiet()).items() if k != "offcpu"}), "cpu")
    assert c.state is State.NO_DATA


# --- memory ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"pressure_share": {"memory": PressureShare(9.9, 1.9)}}, State.OK),
        ({"pressure_share": {"memory": PressureShare(10.0, 0.0)}}, State.WARNING),
        ({"pressure_share": {"memory": PressureShare(40.0, 0.0)}}, State.SATURATED),
        ({"pressure_share": {"memory": PressureShare(0.0, 2.0)}}, State.WARNING),
        ({"pressure_share": {"memory": PressureShare(0.0, 10.0)}}, State.SATURATED),
        ({"swap_in_pages_per_s": 0.9}, State.OK),
        ({"swap_in_pages_per_s": 1.0}, State.WARNING),
        ({"swap_in_pages_per_s": 256.0}, State.SATURATED),
        ({"major_page_faults_per_s": 499.0}, State.OK),
        ({"major_page_faults_per_s": 500.0}, State.WARNING),
        ({"major_page_faults_per_s": 1e6}, State.WARNING),
    ],
)
def test_memory_signals(fields: dict[str, Any], state: State) -> None:
    assert cell(views(cpu={"pressure_share": {}, "swap_in_pages_per_s": None, **fields}), "memory").state is state


def test_memory_names_the_largest_resident_process() -> None:
    c = cell(views(cpu={"swap_in_pages_per_s": 300.0}), "memory")
    assert c.state is State.SATURATED
    assert c.summary.startswith("memory saturated: swap-in 300 pages/s")
    assert c.contributor is not None
    assert (c.contributor.pid, c.contributor.figure) == (2002, "RSS 1.5 GiB")


# --- disks ----------------------------------------------------------------------


def disk_rates(queue: float, util: float, await_ms: float | None = 1.0) -> DiskRates:
    return DiskRates(100.0, 100.0, 1.0, 1.0, await_ms, await_ms, queue, util, None, None, None, None, None)


def with_disk(rates: DiskRates) -> Views:
    disks = BASE["disks"]
    first = disks.active[0]
    busy = replace(first, rates=rates, idle=False)
    return views(disks=replace(disks, disks=(busy,)), procio=ProcessIoView({}, (), False))


@pytest.mark.parametrize(
    ("queue", "util", "await_ms", "state"),
    [
        (1.0, 100.0, 1.0, State.OK),
        (1.01, 89.9, 1.0, State.WARNING),
        (1.01, 90.0, 1.0, State.SATURATED),
        (0.5, 99.0, 49.9, State.OK),
        (0.5, 99.0, 50.0, State.WARNING),
        (0.5, 99.0, 500.0, State.SATURATED),
        (0.5, 99.0, None, State.OK),
    ],
)
def test_disk_queue_await_and_util(queue: float, util: float, await_ms: float | None, state: State) -> None:
    cells = [c for c in verdict(with_disk(disk_rates(queue, util, await_ms))) if c.resource.startswith("disk ")]
    assert [c.state for c in cells] == [state]


def test_a_saturated_disk_names_the_top_writer() -> None:
    v = dict(with_disk(disk_rates(14.0, 98.0, 30.0)))
    v["procio"] = ProcessIoView({978: ProcessIoRates(0.0, 40 * 2**20, 0.0, None), 977: ProcessIoRates(2**20, 0.0, 0.0, None)}, (), False)
    c = next(c for c in verdict(Views(v)) if c.resource.startswith("disk "))
    assert c.summary == "nvme0n1 saturated: 98 % util, aqu-sz 14.0, await 30 ms"
    assert c.contributor is not None
    assert (c.contributor.pid, c.contributor.name, c.contributor.figure) == (978, "postgres", "writes 40.0 MiB/s")


def test_idle_disks_are_one_ok_cell() -> None:
    disks = BASE["disks"]
    idle = tuple(replace(d, idle=True) for d in disks.disks)
    assert [(c.resource, c.state) for c in verdict(views(disks=replace(disks, disks=idle))) if "disk" in c.resource] == [
        ("disks", State.OK)
    ]


# --- GPUs -----------------------------------------------------------------------


def gpu(reasons: tuple[str, ...] | None = (), corrected: int | None = 0, uncorrected: int | None = 0) -> GpuView:
    device = GpuDeviceView(
        0, "H100", "GPU-1", 97, 40, 10 << 30, 80 << 30, 70, 600.0, 700.0, 1980, 2619, None, None, None,
        0, 0, corrected, uncorrected, reasons, False, (), 0,
    )
    process = GpuProcessView(2002, 0, "C", 9 << 30, 95.0, None, None)
    return GpuView("550.54", (device,), (process,), 0)


@pytest.mark.parametrize(
    ("view", "state"),
    [
        (gpu(("GPU idle", "applications clocks setting")), State.OK),
        (gpu(("SW power cap",)), State.WARNING),
        (gpu(("SW power cap", "HW thermal slowdown")), State.SATURATED),
        (gpu(corrected=1), State.WARNING),
        (gpu(uncorrected=1), State.ERROR),
        (gpu(None, None, None), State.NO_DATA),
    ],
)
def test_gpu_throttle_and_ecc(view: GpuView, state: State) -> None:
    c = cell(views(gpu=view), "gpu 0")
    assert c.state is state


def test_gpu_names_its_busiest_process() -> None:
    c = cell(views(gpu=gpu(("HW thermal slowdown",))), "gpu 0")
    assert c.summary == "GPU0 saturated: HW thermal slowdown"
    assert c.contributor is not None
    assert (c.contributor.pid, c.contributor.name, c.contributor.figure) == (2002, "python3", "95 % SM")


def test_gpu_faults_lead_its_cell() -> None:
    import dataclasses

    from probes.host.gpm import GpmSample
    from probes.host.nvml_events import GpuEvent
    from probes.sources.gpu import NvLinkSample

    base = gpu()
    device = base.devices[0]
    quiet = cell(views(gpu=base), "gpu 0")
    # without GPM, NVML's figure is named for what it is
    assert (quiet.state, quiet.summary) == (State.OK, "GPU0 ok: 97 % busy")
    active = dataclasses.replace(base, devices=(dataclasses.replace(device, gpm=GpmSample(sm_activity_percent=41.6)),))
    assert cell(views(gpu=active), "gpu 0").summary == "GPU0 ok: 42 % SM active"
    links = tuple(NvLinkSample(i, i != 3, 0, 0, 0) for i in range(18))
    now = time.time_ns()
    for changed, events, state, summary in (
        (dict(lost=True), (), State.ERROR, "GPU0 error: fell off the bus (NVML: GPU lost)"),
        # an Xid of this GPU minutes ago is still said (another GPU's is not this cell's)
        ({}, (GpuEvent(now - 200 * 10**9, 0, "Xid", 79), GpuEvent(now, 1, "Xid", 31)), State.ERROR, "GPU0 error: Xid 79"),
        # older than the kernel log's cell keeps them: gone
        ({}, (GpuEvent(now - 400 * 10**9, 0, "Xid", 79),), State.OK, "GPU0 ok: 97 % busy"),
        (dict(nvlinks=links), (), State.ERROR, "GPU0 error: NVLink 3 down"),
        (dict(remap_pending=True), (), State.WARNING, "GPU0 warning: memory row remap pending: reset the GPU"),
        (dict(pcie_link_width=8, pcie_link_width_max=16), (), State.WARNING, "GPU0 warning: PCIe link x8 of x16"),
    ):
        view = dataclasses.replace(base, devices=(dataclasses.replace(device, **changed),), recent_faults=events)
        c = cell(views(gpu=view), "gpu 0")
        assert (c.state, c.summary) == (state, summary)


def test_no_gpu_view_is_no_gpu_cell() -> None:
    assert not [c for c in verdict(BASE) if c.resource.startswith("gpu")]


# --- no data, JSON, parsers -------------------------------------------------------


def test_a_first_frame_says_no_data_for_everything() -> None:
    cells = verdict(Views())
    assert [(c.resource, c.state) for c in cells] == [
        ("cpu", State.NO_DATA), ("memory", State.NO_DATA), ("disks", State.NO_DATA),
    ]
    assert all("no data" in c.summary for c in cells)


def test_json_shape() -> None:
    data = as_json(verdict(views(cpu={"procs_running": 13})))
    json.dumps(data)
    assert data[0]["resource"] == "cpu" and data[0]["state"] == "saturated"
    assert data[0]["contributor"] == {"pid": 2002, "name": "python3", "figure": "99 % CPU, waits p99 4.2-8.4 ms"}
    assert set(data[0]) == {"resource", "state", "summary", "contributor"}


def test_procs_and_swap_in_parsers() -> None:
    assert parse_procs("cpu 1 2 3\nprocs_running 9\nprocs_blocked 2\n") == (9, 2)
    assert parse_procs("cpu 1 2 3\n") == (None, None)
    assert parse_vmstat_swap_in("pgfault 5\npswpin 42\npswpout 7\n") == 42
    assert parse_vmstat_swap_in("pgfault 5\n") is None
