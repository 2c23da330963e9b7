"""Recording with no screen (`orac record`): sample on a fixed schedule until a duration, Ctrl-C or SIGTERM."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from probes.contract import Probe
from probes.model.frame import Frame
from probes.model.sampling import Sampler, Schedule
from probes.store.format import RecordingError
from probes.store.rotation import Policy, RotatingRecorder
from probes.store.writer import Recorder


@dataclasses.dataclass(frozen=True, slots=True)
class RecordStats:
    """How a recording is going: passed to `on_progress` and returned by `record`."""

    path: Path
    frames: int
    file_bytes: int
    elapsed_s: float


def _file_bytes(path: Path) -> int:
    total = 0
    for name in (str(path), f"{path}-wal"):
        try:
            total += os.path.getsize(name)
        except OSError:
            pass
    return total


def record(
    path: str | os.PathLike[str],
    probes: Sequence[Probe[Any]],
    interval_s: float,
    duration_s: float | None = None,
    *,
    redact: bool = True,
    overwrite: bool = False,
    on_progress: Callable[[RecordStats], None] | None = None,
    stop: threading.Event | None = None,
) -> RecordStats:
    """Record `probes` every `interval_s` into a new file, headless.

    Runs until `duration_s` has passed (the last sample is taken at
    duration_s, so a recording of D seconds holds D/interval intervals of
    rates), `stop` is set, or SIGINT/SIGTERM arrives; in each case the file
    is closed cleanly. Samples keep to a fixed schedule (start + k *
    interval); a tick missed because the machine was too busy is skipped,
    not caught up in a burst. `on_progress` is called after each frame.

    Raises:
        RecordingError: the file cannot be created or written, or no probe
            can run.
    """
    stop = stop if stop is not None else threading.Event()
    with Sampler(probes) as sampler:
        _check_running(sampler)
        with Recorder(
            path, interval_s=interval_s, probes=[p.name for p in probes], unavailable=sampler.unavailable,
            redact=redact, overwrite=overwrite,
        ) as recorder:

            def progress(elapsed_s: float) -> None:
                if on_progress is not None:
                    on_progress(RecordStats(recorder.path, recorder.frames, _file_bytes(recorder.path), elapsed_s))

            elapsed_s = _sample_into(recorder.append, sampler, interval_s, duration_s, stop, progress)
        return RecordStats(recorder.path, recorder.frames, _file_bytes(recorder.path), elapsed_s)


def record_rotating(
    directory: Path,
    probes: Sequence[Probe[Any]],
    interval_s: float,
    policy: Policy,
    *,
    redact: bool = True,
    on_switch: Callable[[Path, list[Path]], None] | None = None,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
) -> RotatingRecorder:
    """`orac record --daemon`: record into `directory`, switching files and expiring old ones (probes.store.rotation).

    Runs until SIGINT/SIGTERM, `stop`, or `duration_s`; returns the closed
    recorder (its counts of frames and files). Raises RecordingError as
    `record` does.
    """
    stop = stop if stop is not None else threading.Event()
    with Sampler(probes) as sampler:
        _check_running(sampler)
        recorder = RotatingRecorder(
            directory, policy, interval_s=interval_s, probes=[p.name for p in probes],
            unavailable=dict(sampler.unavailable), redact=redact, clock=time.time, on_switch=on_switch,
        )
        try:
            _sample_into(recorder.append, sampler, interval_s, duration_s, stop, None)
        finally:
            recorder.close()
    return recorder


def _check_running(sampler: Sampler) -> None:
    if not sampler.running:
        reasons = "; ".join(f"{name}: {why.reason}" for name, why in sampler.unavailable.items())
        raise RecordingError(f"no probe can run ({reasons})")


def _sample_into(
    append: Callable[[Frame], object],
    sampler: Sampler,
    interval_s: float,
    duration_s: float | None,
    stop: threading.Event,
    on_frame: Callable[[float], None] | None,
) -> float:
    """Sample on schedule into `append` until the duration, `stop` or a signal; the seconds it ran."""
    with _stop_on_signals(stop):
        schedule = Schedule(interval_s)
        while True:
            append(sampler.sample())
            if on_frame is not None:
                on_frame(schedule.elapsed_s)
            due = schedule.next_due_s()
            # A little slack so that 10 s at 1 s ends with the sample at 10 s.
            if duration_s is not None and due > duration_s + interval_s / 10:
                break
            if schedule.sleep_until(due, stop):
                break
        return schedule.elapsed_s


class _stop_on_signals:
    """Within the block, SIGINT and SIGTERM set `stop` instead of killing the
    process, so the recording is closed properly. Only the main thread can
    install handlers; elsewhere the caller's `stop` is the way to end it."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
