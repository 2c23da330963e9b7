"""Sources of frames: the live collector thread, and a fixed sequence.

Both hand `(frame, views)` to one callback from their own thread, so the
UI cannot tell them apart and never samples on its own thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

from probes.contract import Probe, ProbeUnavailable, Unavailable, Views
from probes.model.frame import Frame
from probes.model.redaction import FrameRedactor
from probes.model.views import derive_frame

FrameCallback = Callable[[Frame, Views], None]


class FrameSink(Protocol):
    """Where the collector also sends each frame (a Recorder)."""

    def append(self, frame: Frame) -> bool: ...
    def close(self) -> None: ...

MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 60.0
# The first view needs two samples; take the second one soon so the screen
# fills in well before a long interval has passed.
FIRST_INTERVAL_S = 0.25
# Shown by a pane whose probe is still starting (an eBPF compile takes seconds).
STARTING = "starting: compiling its eBPF program, a few seconds"
LEFT_OUT = Unavailable("not started: left out with --probes")


def start_probes(probes: Iterable[Probe[Any]]) -> tuple[list[Probe[Any]], dict[str, Unavailable]]:
    """Start each probe; return those running and (reason, remedy) for the rest."""
    running: list[Probe[Any]] = []
    unavailable: dict[str, Unavailable] = {}
    for probe in probes:
        try:
            probe.start()
        except ProbeUnavailable as exc:
            unavailable[probe.name] = exc.unavailable
        except Exception as exc:  # noqa: BLE001 - one broken probe must not stop the rest
            unavailable[probe.name] = Unavailable(
                f"{probe.name} probe failed to start: {exc!r}", "please report this as a bug"
            )
        else:
            running.append(probe)
    return running, unavailable


def sample_frame(probes: Iterable[Probe[Any]], unavailable: dict[str, Unavailable]) -> Frame:
    """Sample every running probe once.

    A probe that fails mid-run is reported as unavailable from then on instead
    of taking the whole collector down.
    """
    samples: dict[str, Any] = {}
    wall_ns = time.time_ns()
    mono_ns = time.monotonic_ns()
    for probe in probes:
        if probe.name in unavailable:
            continue
        try:
            samples[probe.name] = probe.sample()
        except ProbeUnavailable as exc:
            unavailable[probe.name] = exc.unavailable
        except Exception as exc:  # noqa: BLE001 - one broken probe must not stop the rest
            unavailable[probe.name] = Unavailable(f"{probe.name} probe failed: {exc!r}", "please report this as a bug")
    return Frame(wall_ns=wall_ns, mono_ns=mono_ns, samples=samples, unavailable=dict(unavailable))


class Collector:
    """Samples probes every `interval_s` on its own thread."""

    # The processes it shows are running now, so they can be asked for more.
    live = True

    def __init__(
        self,
        probes: Sequence[Probe[Any]],
        interval_s: float = 1.0,
        left_out: Iterable[str] = (),
        redact: bool = True,
    ) -> None:
        """`redact`: mask secrets in command lines (probes.model.redaction) before anything shows or records them."""
        self.probes = list(probes)
        self._redactor = FrameRedactor() if redact else None
        # probes the user chose not to run, so their panes say so
        self.left_out = list(left_out)
        self.interval_s = interval_s
        self.paused = False
        # set from the UI to record; appended to on the collector thread
        self.recorder: FrameSink | None = None
        # Called on the collector thread when the recorder fails (a full
        # disk): the recording has stopped, sampling and drawing go on.
        self.on_error: Callable[[Exception], None] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        # guards the running probes and their status between the collector,
        # the thread that starts slow probes, and add/remove_probes callers
        self._lock = threading.Lock()
        self._running: list[Probe[Any]] = []
        self._unavailable: dict[str, Unavailable] = {}
        # names removed while their probe may still be starting
        self._dropped: set[str] = set()
        # the process whose threads probes count one by one (a drill-down's)
        self._focus: int | None = None
        self._thread: threading.Thread | None = None

    def start(self, on_frame: FrameCallback) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name="orac-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def refresh(self) -> None:
        """Sample now instead of waiting for the rest of the interval."""
        self._wake.set()

    def add_probes(self, probes: Sequence[Probe[Any]]) -> None:
        """Start more probes while running (a drill-down's); they join the frames once started.

        Quick probes start here; eBPF ones aside, as at the start.
        """
        quick = [p for p in probes if not getattr(p, "slow_start", False)]
        slow = [p for p in probes if getattr(p, "slow_start", False)]
        running, failed = start_probes(quick)
        with self._lock:
            for probe in probes:
                self._dropped.discard(probe.name)
            self._running.extend(running)
            for probe in running:
                _focus(probe, self._focus)
            self._unavailable.update(failed)
            for probe in slow:
                self._unavailable[probe.name] = Unavailable(STARTING)
        if slow:
            threading.Thread(target=self._start_slow, args=(slow,), name="orac-probe-start", daemon=True).start()

    def remove_probes(self, names: Iterable[str]) -> None:
        """Stop probes added with add_probes: their eBPF programs detach now."""
        if self._stop.is_set():
            # Stopping: the thread stops every probe it runs as it ends, and
            # taking the lock would wait for the tick in progress (an app
            # closing its screens on quit).
            return
        names = set(names)
        with self._lock:
            self._dropped |= names
            for probe in [p for p in self._running if p.name in names]:
                probe.stop()
                self._running.remove(probe)
            for name in names:
                self._unavailable.pop(name, None)
                if name in self.left_out:
                    self._unavailable[name] = LEFT_OUT

    def focus(self, pid: int | None) -> None:
        """Have the probes that can break one process down by thread (eBPF) do so for `pid`; None stops."""
        if self._stop.is_set():
            return
        with self._lock:
            self._focus = pid
            for probe in self._running:
                _focus(probe, pid)

    def _run(self, on_frame: FrameCallback) -> None:
        quick = [p for p in self.probes if not getattr(p, "slow_start", False)]
        slow = [p for p in self.probes if getattr(p, "slow_start", False)]
        running, unavailable = start_probes(quick)
        with self._lock:
            self._running.extend(running)
            self._unavailable.update(unavailable)
            for probe in slow:
                self._unavailable[probe.name] = Unavailable(STARTING)
            for name in self.left_out:
                self._unavailable[name] = LEFT_OUT
        running, unavailable = self._running, self._unavailable
        if slow:
            threading.Thread(target=self._start_slow, args=(slow,), name="orac-probe-start", daemon=True).start()
        prev: Frame | None = None
        wait_s = FIRST_INTERVAL_S
        try:
            while not self._stop.is_set():
                if not self.paused:
                    with self._lock:
                        frame = sample_frame(running, unavailable)
                    if self._redactor is not None:
                        frame = self._redactor.frame(frame)
                    recorder = self.recorder
                    if recorder is not None:
                        self._record(recorder, frame)
                    on_frame(frame, derive_frame(prev, frame))
                    wait_s = FIRST_INTERVAL_S if prev is None else self.interval_s
                    prev = frame
                self._wake.wait(wait_s)
                self._wake.clear()
        finally:
            with self._lock:
                for probe in running:
                    probe.stop()
                running.clear()

    def _record(self, recorder: FrameSink, frame: Frame) -> None:
        try:
            recorder.append(frame)
        except Exception as exc:  # noqa: BLE001 - a write error ends the recording, never the sampling
            self.recorder = None
            try:
                recorder.close()
            except Exception:  # noqa: BLE001, S110 - closing what failed: the first error is the one to report
                pass
            if self.on_error is not None:
                self.on_error(exc)

    def _start_slow(self, probes: list[Probe[Any]]) -> None:
        """Start probes that compile eBPF programs, while the others already tick."""
        for probe in probes:
            started, failed = start_probes([probe])
            with self._lock:
                if self._stop.is_set() or probe.name in self._dropped:
                    # Stopped, or removed while it was still starting.
                    for p in started:
                        p.stop()
                    continue
                self._running.extend(started)
                for p in started:
                    _focus(p, self._focus)
                self._unavailable.pop(probe.name, None)
                self._unavailable.update(failed)


def _focus(probe: Probe[Any], pid: int | None) -> None:
    focus = getattr(probe, "focus", None)
    if focus is not None:
        focus(pid)


class FrameSequence:
    """Plays a fixed list of frames, as fast as the receiver takes them.

    Used by tests and screenshots for deterministic screens; it goes through
    the same derive step as live frames.
    """

    live = False

    def __init__(self, frames: Sequence[Frame]) -> None:
        self._frames = list(frames)
        self.interval_s = 1.0
        self.paused = False
        # a fixed list cannot fail; the app sets it on every source
        self.on_error: Callable[[Exception], None] | None = None
        self._thread: threading.Thread | None = None

    def start(self, on_frame: FrameCallback) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name="orac-frames", daemon=True)
        self._thread.start()

    def _run(self, on_frame: FrameCallback) -> None:
        prev: Frame | None = None
        for frame in self._frames:
            on_frame(frame, derive_frame(prev, frame))
            prev = frame

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)

    def refresh(self) -> None:
        pass
