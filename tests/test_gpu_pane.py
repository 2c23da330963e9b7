"""The GPU pane alone, fed a view the gpu probe made from the fake NVML.

Snapshots need neither a GPU nor NVML: the fake is deterministic, and the
only measured figure (NVML's time) is pinned before the view is derived.
Update them with `--snapshot-update` after an intended change.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from support.fake_nvml import FakeMig, FakeNvml, FakeProcess, default_gpus, install
from support.harness import PaneApp, mounted, settle
from support.synthetic import processes_sample
from textual.widgets import DataTable

from probes.sources.gpu import GpuProbe, GpuSample, GpuView, derive_gpu
from probes.sources.processes import ProcessesView, derive_processes
from tui.gpu_pane import GpuPane

# the app's minimum width: every line must still make sense there
SIZE = (80, 24)

# Host processes, in tests/support/synthetic.py's format: the two on the GPUs and one beside them.
HOST_PROCESSES = [
    (1, 0, "root", "S", "systemd", "/sbin/init", "/init.scope", 0, 12, 1, 95.0),
    (2002, 1, "alice", "R", "python3", "python3 train.py --epochs 10", "/user.slice", 990_000_000, 1536, 12, 3605.0),
    (
        4242, 1, "svc-llm", "S", "python3", "python -m vllm.entrypoints.openai.api_server --model llama-3-8b",
        "/system.slice/docker-3f2a9c1b8e7d.scope", 150_000_000, 4096, 64, 86000.0,
    ),
]


def pinned(sample: GpuSample) -> GpuSample:
    """The sample with NVML's measured time fixed, so the screen never drifts."""
    devices = tuple(dataclasses.replace(d, nvml_time_ns=210_000) for d in sample.devices)
    return dataclasses.replace(sample, devices=devices, nvml_time_ns=420_000)


def gpu_view(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeNvml | None = None) -> GpuView:
    """Two ticks of the probe over the fake NVML, derived."""
    fake = install(monkeypatch, fake or FakeNvml())
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "status").write_text("NSpid:\t777\n")
    probe = GpuProbe(proc=str(tmp_path / "proc"))
    probe.start()
    try:
        prev = probe.sample()
        # NVML takes new per-process samples within the second between ticks.
        for gpu in fake.gpus:
            gpu.process_samples += [(pid, ts + 1_000_000, sm) for pid, ts, sm in gpu.process_samples]
        curr = probe.sample()
    finally:
        probe.stop()
    return derive_gpu(pinned(prev), pinned(curr), 1.0)


def host_view() -> ProcessesView:
    return derive_processes(processes_sample(0, HOST_PROCESSES), processes_sample(1, HOST_PROCESSES), 1.0)


def GpuApp(
    view: GpuView | None = None, host: ProcessesView | None = None, unavailable: tuple[str, str] | None = None
) -> PaneApp[GpuPane]:
    """Only the GPU pane, fed once: its view and the host's processes."""
    return PaneApp(
        GpuPane(), view, unavailable=unavailable,
        then=None if unavailable else lambda pane: pane.set_host_processes(host), focus=DataTable, title="GpuApp",
    )


def test_gpu_pane(snap_compare, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = GpuApp(gpu_view(monkeypatch, tmp_path), host_view())
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_gpu_pane_with_mig(snap_compare, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gpus = default_gpus()
    gpus[1].mig_enabled = True
    gpus[1].mig_slots = {
        # GPU instance 1 busy (GPM's figures of its own), 2 idle
        0: FakeMig(1, 0, 40 * 1024**3, 12 * 1024**3, [FakeProcess(4242, 11 * 1024**3)], {2: 61.0, 5: 30.5, 10: 44.0}),
        1: FakeMig(2, 0, 20 * 1024**3, 0, [], {2: 0.0, 5: 0.0, 10: 0.0}),
    }
    app = GpuApp(gpu_view(monkeypatch, tmp_path, FakeNvml(gpus)), host_view())
    assert snap_compare(app, terminal_size=(110, 24), run_before=settle)


def test_gpu_pane_unavailable(snap_compare) -> None:
    app = GpuApp(
        unavailable=(
            "no NVIDIA driver: libnvidia-ml.so not found",
            "install the NVIDIA driver, which provides libnvidia-ml.so.1 (check with `nvidia-smi`)",
        )
    )
    assert snap_compare(app, terminal_size=(110, 8))


async def test_gpm_held_by_another_profiler_is_said_and_busy_leads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from support import fake_nvml

    gpus = default_gpus()
    gpus[1].gpm_error = fake_nvml.NVML_ERROR_IN_USE
    app = GpuApp(gpu_view(monkeypatch, tmp_path, FakeNvml(gpus)), host_view())
    async with mounted(app, (160, 24)):
        text = str(app.query_one(GpuPane).devices.render())
        assert "GPM counters held by another profiler (DCGM, Nsight): no figures rather than wrong ones" in text
        # without GPM's figures, the H100 leads with NVML's, named for what they are
        assert "TENSOR[" not in text and text.count("BUSY[") == 2


async def test_events_show_newest_first_and_stay_after_their_interval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from probes.host.nvml_events import GpuEvent

    view = gpu_view(monkeypatch, tmp_path)
    app = GpuApp(view, host_view())
    async with mounted(app, (160, 30)) as pilot:
        pane = app.query_one(GpuPane)
        assert "events none seen" in str(pane.devices.render())
        t = 1_764_000_000 * 10**9
        xid_event = GpuEvent(t + 10**9, 1, "Xid", 79)
        pane.show_view(dataclasses.replace(view, events=(GpuEvent(t, 0, "clock change", 0), xid_event),
                                           recent_faults=(xid_event,)))
        await pilot.pause()
        # the next interval has none: the pane keeps the last changes, the sample its faults
        view = dataclasses.replace(view, recent_faults=(xid_event,))
        pane.show_view(view)
        await pilot.pause()
        text = str(pane.devices.render())
        xid = time.strftime("%H:%M:%S", time.localtime(t / 1e9 + 1))
        assert f"events {xid} GPU 1 Xid 79  " in text and "GPU 0 clock change" in text
        # clock changes do not push a fault out of sight
        pane.show_view(dataclasses.replace(view, events=tuple(GpuEvent(t + i, 0, "clock change", 0) for i in range(9))))
        await pilot.pause()
        assert "GPU 1 Xid 79" in str(pane.devices.render())


async def test_each_gpu_process_shows_its_threads_time_off_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from support.synthetic_offcpu import offcpu_sample

    from probes.contract import Views
    from probes.sources.offcpu import derive_offcpu

    offcpu = derive_offcpu(offcpu_sample(0), offcpu_sample(1), 1.0)
    trainer = next(p for p in offcpu.processes if p.pid == 2002)
    app = GpuApp(gpu_view(monkeypatch, tmp_path), host_view())
    async with mounted(app, (160, 24)) as pilot:
        pane = app.query_one(GpuPane)
        pane.joined = Views({"offcpu": offcpu})
        pane.set_host_processes(host_view())
        await settle(pilot)
        table = app.query_one(DataTable)
        # the trainer's threads waited (futexes: S, not D); the other GPU process blocked in nothing that ended
        assert str(table.get_row("0/2002")[7]) == f"{trainer.off_cpu_s_per_s:.2f}" and trainer.off_cpu_s_per_s > 5
        assert str(table.get_row("1/4242")[7]) == "0.00"


async def test_the_process_screen_says_what_a_process_holds_on_each_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from textual.widgets import Static

    from probes.contract import Views
    from tui.process_screen import ProcessSummary

    gpus = Views({"gpu": gpu_view(monkeypatch, tmp_path)})

    def summary_of(pid: int) -> PaneApp[ProcessSummary]:
        def join(pane: ProcessSummary) -> None:
            pane.joined = gpus
            pane._draw()

        return PaneApp(ProcessSummary(pid, ([], []), False, None), host_view(), then=join)

    for pid, expected in (
        (2002, "gpu  0: 10.0G SM 72%"),
        # on a GPU with GPM, the GPU's own SM activity beside the process's NVML share
        (4242, "gpu  1: 29.0G SM 95% (GPU SM activity 42%)"),
    ):
        app = summary_of(pid)
        async with mounted(app, (160, 30)):
            details = str(app.query_one("#details", Static).render())
            assert expected in details, details
    app = summary_of(1)  # on no GPU: no line
    async with mounted(app, (160, 30)):
        assert "gpu" not in str(app.query_one("#details", Static).render())


async def test_a_lost_gpu_and_a_link_down_are_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    view = gpu_view(monkeypatch, tmp_path)
    a6000, h100 = view.devices
    links = tuple(dataclasses.replace(link, active=link.link != 5) for link in h100.nvlinks)
    view = dataclasses.replace(
        view, devices=(dataclasses.replace(a6000, lost=True), dataclasses.replace(h100, nvlinks=links, remap_pending=True))
    )
    app = GpuApp(view, host_view())
    async with mounted(app, (160, 30)):
        text = str(app.query_one(GpuPane).devices.render())
        assert "NVIDIA RTX A6000  71°C  fan 45%  power 182/300 W  LOST" in text
        assert "NVML says this GPU is lost (it fell off the bus)" in text
        assert "rows remapped corr 2 uncorr 0 pending: reset the GPU  NVLink 17/18 up (down: 5)" in text
        assert "errors replay 12 recovery 0 CRC 3" in text
    old = dataclasses.replace(a6000, remapped_rows_correctable=None, retired_pages_single_bit=2, retired_pages_double_bit=1,
                              retire_pending=True)
    app = GpuApp(dataclasses.replace(view, devices=(old, h100)), host_view())
    async with mounted(app, (160, 30)):
        text = str(app.query_one(GpuPane).devices.render())
        assert "pages retired single-bit 2 double-bit 1 pending: reset the GPU" in text
        # the tensor pipes, where tensor work ran
        assert "HMMA 12% IMMA 0% DFMA 0%" in text


async def test_enter_on_a_process_row_asks_for_the_process_screen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = GpuApp(gpu_view(monkeypatch, tmp_path), host_view())
    async with mounted(app, SIZE) as pilot:
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.selected == [4242]
        await pilot.press("up", "enter")
        await pilot.pause()
        assert app.selected == [4242, 2002]


async def test_rows_join_the_host_processes_and_keep_the_cursor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    view = gpu_view(monkeypatch, tmp_path)
    app = GpuApp(view, host_view())
    async with mounted(app, (110, 24)) as pilot:
        pane = app.query_one(GpuPane)
        table = app.query_one(DataTable)
        assert [str(c) for c in table.get_row("0/2002")] == [
            "0", "2002", "alice", "C", "10.0G", "72", "99.0", "-", "python3 train.py --epochs 10",
        ]
        await pilot.press("down")
        # the next tick: same rows, and a host view without 4242 (it is in another container)
        pane.show_view(view)
        without = HOST_PROCESSES[:2]
        pane.set_host_processes(derive_processes(processes_sample(0, without), processes_sample(1, without), 1.0))
        await settle(pilot)
        assert pane.selected_pid == 4242
        assert [str(c) for c in table.get_row("1/4242")][2:] == ["-", "C", "29.0G", "95", "-", "-", "-"]
