"""Derived views: rates and percentages computed from two raw frames.

Nothing here is stored in a recording; live and replayed frames are turned
into views by the same functions (each probe's ProbeSpec.derive, found in
probes.registry), so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from probes.contract import Unavailable, Views
from probes.model.frame import Frame
from probes.registry import spec_named


def covered_s(prev: Any, curr: Any, frame_dt_s: float) -> float:
    """The seconds a probe's two samples' counters are apart.

    A sample that says when its counters were read (`mono_ns`, the
    monotonic clock) is timed by that: a frame's probes are read one after
    another, and one slow read (the first process table, on a loaded box)
    leaves the probes after it reading later than the frame's time says.
    Samples recorded before probes kept that time cover the frames' interval.
    """
    before: int | None = getattr(prev, "mono_ns", None)
    after: int | None = getattr(curr, "mono_ns", None)
    if before is None or after is None or after <= before:
        return frame_dt_s
    return (after - before) / 1e9


def derive_frame(prev: Frame | None, curr: Frame) -> Views:
    """Views for every probe present in both frames.

    A probe's first frame has nothing to compare with, so it has no view
    yet. Each probe's rates divide by the time its own counters cover
    (covered_s). A derive that fails leaves its probe in `failed`, the
    others' views unharmed: a live screen keeps ticking.
    """
    if prev is None:
        return Views()
    dt_s = (curr.mono_ns - prev.mono_ns) / 1e9
    if dt_s <= 0:
        return Views()
    views: dict[str, Any] = {}
    failed: dict[str, Unavailable] = {}
    for name, sample in curr.samples.items():
        spec = spec_named(name)
        before = prev.samples.get(name)
        if spec is not None and before is not None:
            try:
                views[name] = spec.derive(before, sample, covered_s(before, sample, dt_s))
            except Exception as exc:
                failed[name] = Unavailable(f"{name} view failed: {exc!r}", "please report this as a bug")
    return Views(views, failed)
