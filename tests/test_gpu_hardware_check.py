"""benchmarks/gpu_hardware_check, run here on the fake NVML with a stand-in for its PyTorch workload.

The real check needs an H200 (issue 18); this proves the rest of it works:
the recording through the gpu probe, the phase figures read back from it,
the checks, and the screenshot of the GPU pane.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import time
from pathlib import Path

import pytest
from support import fake_nvml
from support.fake_nvml import FakeNvml, default_gpus, install

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_hardware_check"
SM, TENSOR = fake_nvml.NVML_GPM_METRIC_SM_UTIL, fake_nvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL


def load() -> object:
    loader = importlib.machinery.SourceFileLoader("gpu_hardware_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_hardware_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # its dataclasses look their module up while it runs
    sys.modules[spec.name] = module
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("figures", "wrong"),
    [
        # (SM, tensor, busy) in each phase: as an H200 should give them
        ({"matmul": (92, 70, 100), "tiny kernels": (8, 0, 100), "idle": (0, 0, 0)}, []),
        # NVML's figure would pass the tiny kernels as busy; GPM's must not
        ({"matmul": (92, 70, 100), "tiny kernels": (95, 0, 100), "idle": (0, 0, 0)}, ["tiny kernels"]),
        ({"matmul": (20, 2, 100), "tiny kernels": (8, 0, 100), "idle": (0, 0, 0)}, ["matmul"]),
        ({"matmul": (92, 70, 100), "tiny kernels": (8, 0, 100), "idle": (40, 0, 60)}, ["idle"]),
    ],
)
def test_the_checks_follow_the_workload(figures: dict[str, tuple[float, float, float]], wrong: list[str]) -> None:
    check = load()
    means = [check.PhaseMeans(name, 10, sm, tensor, busy) for name, (sm, tensor, busy) in figures.items()]
    assert [w.split(":")[0] for w in check.failures(means)] == wrong


def test_a_run_on_the_fake_records_reads_back_checks_and_screenshots(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check = load()
    gpus = default_gpus()[1:]  # an H100: GPM
    fake = install(monkeypatch, FakeNvml(gpus))
    phase_s = 3.2

    def workload(seconds: float) -> list:
        phases = []
        for name, (sm, tensor, busy) in (("matmul", (91.0, 66.0, 100)), ("tiny kernels", (7.0, 0.0, 100)),
                                         ("idle", (0.0, 0.0, 0))):
            start = time.time_ns()
            fake.gpus[0].gpm = {SM: sm, TENSOR: tensor}
            fake.gpus[0].util_gpu = busy
            time.sleep(phase_s)
            phases.append(check.Phase(name, start, time.time_ns()))
        return phases

    # ticks a second apart: a settling time of the script's 2 s would leave a loaded machine one tick a phase
    monkeypatch.setattr(check, "SETTLE_S", 0.5)
    monkeypatch.setattr(check, "run_workload", workload)
    monkeypatch.setattr(check, "step", lambda title, command, env=None: 0)
    monkeypatch.setattr("sys.argv", ["gpu_hardware_check", "--out", str(tmp_path)])
    assert check.main() == 0
    out = capsys.readouterr().out
    assert "the figures follow the workload: PASS" in out
    assert "matmul" in out and "91.0 %" in out
    svg = (tmp_path / "gpu_pane.svg").read_text()
    assert "TENSOR" in svg and "NVIDIA" in svg
