"""`orac doctor`: can each probe run here, and if not, why and what to do."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from probes.contract import Probe
from probes.model.sampling import Sampler


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    name: str
    ok: bool
    reason: str = ""
    remedy: str = ""
    # nothing for it to watch here (no GPU in the machine): not a fault
    absent: bool = False
    # the cost of one sample here, measured, so users see what a probe costs
    sample_ms: float | None = None
    # the part of it spent in NVML, for the GPU probe
    nvml_ms: float | None = None


def check(probe: Probe[Any]) -> ProbeCheck:
    """Start the probe, sample it twice (the second is timed: a first sample may fill caches), stop it."""
    with Sampler([probe]) as sampler:
        name = probe.name
        if name not in sampler.unavailable:
            sampler.sample()
            start = time.perf_counter()
            frame = sampler.sample()
            elapsed_ms = (time.perf_counter() - start) * 1000
    why = sampler.unavailable.get(name)
    if why is not None:
        return ProbeCheck(name, False, why.reason, why.remedy, absent=name in sampler.absent)
    nvml_ns = getattr(frame.samples[name], "nvml_time_ns", None)
    return ProbeCheck(name, True, sample_ms=elapsed_ms, nvml_ms=None if nvml_ns is None else nvml_ns / 1e6)


def report(checks: Iterable[ProbeCheck]) -> str:
    lines = []
    for c in checks:
        if c.ok:
            line = f"{c.name:<12} ok           one sample takes {c.sample_ms:.1f} ms"
            if c.nvml_ms is not None:
                line += f", {c.nvml_ms:.1f} ms of it in NVML"
            lines.append(line)
        elif c.absent:
            lines.append(f"{c.name:<12} none here    {c.reason}")
        else:
            lines.append(f"{c.name:<12} unavailable  {c.reason}")
            if c.remedy:
                lines.append(f"{'':<12} fix:         {c.remedy}")
    return "\n".join(lines)
