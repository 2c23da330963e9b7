"""Starting probes, sampling them into Frames on a schedule, stopping them.

One way to do it, shared by the live collector, headless `orac record`,
`orac snapshot` and `orac doctor`, so that each says the same thing about a
probe that cannot run and keeps time the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from probes.contract import Probe, ProbeUnavailable, Unavailable
from probes.model.frame import Frame


@runtime_checkable
class Watching(Protocol):
    """A probe that reports on the others (orac's own cost: their eBPF programs' run time)."""

    def watch(self, probes: Sequence[Probe[Any]]) -> None: ...


class Sampler:
    """Some probes, started together, sampled together, stopped together.

    A probe that cannot start, or fails mid-run, is reported in
    `unavailable` (and `absent` when there is nothing for it to watch here)
    instead of taking the others down. `running` and `unavailable` are its
    state; the live collector changes them under its own lock as
    drill-downs add and remove probes.
    """

    def __init__(self, probes: Sequence[Probe[Any]] = ()) -> None:
        self.probes = list(probes)
        self.running: list[Probe[Any]] = []
        self.unavailable: dict[str, Unavailable] = {}
        self.absent: set[str] = set()

    def start(self, probes: Sequence[Probe[Any]] | None = None) -> list[Probe[Any]]:
        """Start `probes` (default: those given at construction); returns those that run."""
        started = []
        for probe in self.probes if probes is None else probes:
            try:
                probe.start()
            except ProbeUnavailable as exc:
                self.unavailable[probe.name] = exc.unavailable
                if exc.absent:
                    self.absent.add(probe.name)
            except Exception as exc:
                self.unavailable[probe.name] = Unavailable(
                    f"{probe.name} probe failed to start: {exc!r}", "please report this as a bug"
                )
            else:
                started.append(probe)
                self.unavailable.pop(probe.name, None)
                if isinstance(probe, Watching):
                    # The list itself: probes started later join it.
                    probe.watch(self.running)
        self.running.extend(started)
        return started

    def sample(self) -> Frame:
        """Sample every running probe once, into one Frame."""
        samples: dict[str, Any] = {}
        wall_ns = time.time_ns()
        mono_ns = time.monotonic_ns()
        unavailable = self.unavailable
        for probe in self.running:
            if probe.name in unavailable:
                continue
            try:
                samples[probe.name] = probe.sample()
            except ProbeUnavailable as exc:
                unavailable[probe.name] = exc.unavailable
            except Exception as exc:
                unavailable[probe.name] = Unavailable(
                    f"{probe.name} probe failed: {exc!r}", "please report this as a bug"
                )
        return Frame(wall_ns=wall_ns, mono_ns=mono_ns, samples=samples, unavailable=dict(unavailable))

    def stop(self) -> None:
        for probe in self.running:
            probe.stop()
        self.running.clear()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Schedule:
    """Ticks at start + k * interval_s.

    A tick missed because the box was too busy is skipped, not caught up in
    a burst; a sample that came late does not delay the ones after it.
    `first_s` makes the first wait shorter (rates need two samples: the
    screen fills in well before a long interval has passed).
    """

    def __init__(self, interval_s: float, first_s: float | None = None) -> None:
        self.interval_s = interval_s
        self._first_s = first_s
        self.restart()

    def restart(self) -> None:
        """Count ticks from now (after a pause, or a sample taken on request)."""
        self.start = time.monotonic()
        self.tick = 0
        self._offset = 0.0 if self._first_s is None else self._first_s - self.interval_s

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def next_due_s(self) -> float:
        """When the next tick is due, in seconds after `start`; advances past any tick already missed."""
        now = self.elapsed_s
        self.tick = max(self.tick + 1, math.ceil((now - self._offset) / self.interval_s))
        return self._offset + self.tick * self.interval_s

    def wait(self, wake: threading.Event | None = None) -> bool:
        """Sleep until the next tick; True if `wake` was set first."""
        return self.sleep_until(self.next_due_s(), wake)

    def sleep_until(self, due_s: float, wake: threading.Event | None = None) -> bool:
        """Sleep until `due_s` after the start; True if `wake` was set first."""
        left = max(0.0, self.start + due_s - time.monotonic())
        if wake is None:
            time.sleep(left)
            return False
        return wake.wait(left)
