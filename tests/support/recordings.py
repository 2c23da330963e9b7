"""Recordings of synthetic frames, written to disk for the store, replay and command-line tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probes.model.frame import Frame
from probes.store.writer import Recorder
from support import synthetic
from support.synthetic import PROCESSES, S, processes_sample, system_sample

START_WALL_NS = 1_764_000_000 * S


def synthetic_frames(count: int, interval_s: float = 1.0) -> list[Frame]:
    """`count` frames `interval_s` apart; processes come and go, counters grow."""
    frames = []
    for t in range(count):
        procs = list(PROCESSES)
        # one short-lived process every third tick, and the last one leaving
        if t % 3 == 0:
            procs.append(
                (5000 + t, 1, "alice", "R", "cc1", f"cc1 -O2 file{t}.c", "/user.slice", 200_000_000, 30, 1, 0.0)
            )
        if t % 5 == 4:
            procs.pop()
        unavailable = {"offcpu": ("no root", "run `sudo orac`")} if t >= count // 2 else {}
        frames.append(
            Frame(
                wall_ns=START_WALL_NS + int(t * interval_s * S),
                mono_ns=1000 * S + int(t * interval_s * S),
                samples={"cpu": system_sample(t), "procs": processes_sample(t, procs)},
                unavailable=unavailable,
            )
        )
    return frames


def write(path: Path, frames: list[Frame], **options: Any) -> Path:
    """A recording of `frames` at `path` (Recorder options, interval 1 s unless given)."""
    options.setdefault("interval_s", 1.0)
    with Recorder(path, **options) as recorder:
        for frame in frames:
            assert recorder.append(frame)
    return path


def synthetic_recording(path: Path, ticks: int = 30) -> Path:
    """`ticks` one-second frames of the synthetic box (tests/support/synthetic.py)."""
    base = synthetic.frames()
    with Recorder(path, interval_s=1.0, probes=["cpu", "procs", "syscalls"], unavailable=synthetic.NO_GPU) as rec:
        for t in range(ticks):
            f = base[t % 2]
            rec.append(type(f)(base[0].wall_ns + t * 10**9, base[0].mono_ns + t * 10**9, f.samples, f.unavailable))
    return path
