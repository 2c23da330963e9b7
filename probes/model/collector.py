"""Sources of frames: the live collector thread, and a fixed sequence (for tests and screenshots).

Both hand `(frame, views)` to one callback from their own thread, so the
UI cannot tell them apart and never samples on its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from probes.contract import Probe, Unavailable
from probes.model.frame import Frame
from probes.model.frame_source import FrameCallback, FrameSink, FrameSource, LiveSource
from probes.model.redaction import FrameRedactor
from probes.model.sampling import Sampler, Schedule
from probes.model.views import derive_frame

if TYPE_CHECKING:
    from probes.store.flight import FlightRecorder

MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 60.0
# The first view needs two samples; take the second one soon so the screen
# fills in well before a long interval has passed.
FIRST_INTERVAL_S = 0.25
# Shown by a pane whose probe is still starting (an eBPF compile takes seconds).
STARTING = "starting: compiling its eBPF program, a few seconds"
LEFT_OUT = Unavailable("not started: left out with --probes")


@runtime_checkable
class Focusing(Protocol):
    """A probe that can count one process thread by thread (the eBPF ones)."""

    def focus(self, pid: int | None) -> None: ...


def slow_to_start(probe: Probe[Any]) -> bool:
    """Whether starting the probe compiles an eBPF program (seconds): it starts aside."""
    return bool(getattr(probe, "slow_start", False))


# The past the live screen keeps for R to record from (`--history`): ten
# minutes is the "what just happened" of an incident, and costs a few MiB.
DEFAULT_HISTORY_S = 600.0


class Collector(LiveSource):
    """Samples probes on a fixed schedule (probes.model.sampling) on its own thread."""

    def __init__(
        self,
        probes: Sequence[Probe[Any]],
        interval_s: float = 1.0,
        left_out: Iterable[str] = (),
        redact: bool = True,
        history: FlightRecorder | None = None,
    ) -> None:
        """Sample `probes` every `interval_s` once started.

        Args:
            redact: mask secrets in command lines (probes.model.redaction)
                before anything shows, keeps or records them.
            history: keeps the last minutes of frames, so that a recording
                can start in the past (`start_recording`).
        """
        super().__init__(interval_s)
        self.history = history
        # orders the history's and the recorder's appends against
        # start_recording's hand-over of the kept frames
        self._record_lock = threading.Lock()
        # a recording still being given the kept frames, not yet live
        self._pending: FrameSink | None = None
        self.probes = list(probes)
        self._redactor = FrameRedactor() if redact else None
        # probes the user chose not to run, so their panes say so
        self.left_out = list(left_out)
        self.paused = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        # guards the sampler's probes and their status between the collector,
        # the thread that starts slow probes, and add/remove_probes callers
        self._lock = threading.Lock()
        self._sampler = Sampler()
        # names removed while their probe may still be starting
        self._dropped: set[str] = set()
        # the process whose threads probes count one by one (a drill-down's)
        self._focus: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> tuple[Probe[Any], ...]:
        """The probes sampled now (added ones included, slow ones once started)."""
        with self._lock:
            return tuple(self._sampler.running)

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
        quick = [p for p in probes if not slow_to_start(p)]
        slow = [p for p in probes if slow_to_start(p)]
        with self._lock:
            for probe in probes:
                self._dropped.discard(probe.name)
            for probe in self._sampler.start(quick):
                _focus(probe, self._focus)
            for probe in slow:
                self._sampler.unavailable[probe.name] = Unavailable(STARTING)
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
            running = self._sampler.running
            for probe in [p for p in running if p.name in names]:
                probe.stop()
                running.remove(probe)
            for name in names:
                self._sampler.unavailable.pop(name, None)
                if name in self.left_out:
                    self._sampler.unavailable[name] = LEFT_OUT

    def focus(self, pid: int | None) -> None:
        """Have the probes that can break one process down by thread (eBPF) do so for `pid`; None stops."""
        if self._stop.is_set():
            return
        with self._lock:
            self._focus = pid
            for probe in self._sampler.running:
                _focus(probe, pid)

    def _run(self, on_frame: FrameCallback) -> None:
        sampler = self._sampler
        slow = [p for p in self.probes if slow_to_start(p)]
        with self._lock:
            sampler.start([p for p in self.probes if not slow_to_start(p)])
            for probe in slow:
                sampler.unavailable[probe.name] = Unavailable(STARTING)
            for name in self.left_out:
                sampler.unavailable[name] = LEFT_OUT
        if slow:
            threading.Thread(target=self._start_slow, args=(slow,), name="orac-probe-start", daemon=True).start()
        prev: Frame | None = None
        schedule = Schedule(self.interval_s, first_s=FIRST_INTERVAL_S)
        try:
            while not self._stop.is_set():
                if not self.paused:
                    with self._lock:
                        frame = sampler.sample()
                    if self._redactor is not None:
                        frame = self._redactor.frame(frame)
                    with self._record_lock:
                        if self.history is not None:
                            self.history.append(frame)
                        recorder = self.recorder
                        if recorder is not None:
                            self._record(recorder, frame)
                    on_frame(frame, derive_frame(prev, frame))
                    prev = frame
                if schedule.wait(self._wake):
                    # refresh() or a resume asked for a sample now: count from it
                    self._wake.clear()
                    schedule.restart()
        finally:
            with self._lock:
                sampler.stop()

    @property
    def recording(self) -> FrameSink | None:
        with self._record_lock:
            return self.recorder or self._pending

    def start_recording(self, recorder: FrameSink, on_started: Callable[[int], None] | None = None) -> None:
        """Record from the oldest kept frame on, then every new one; `on_started(frames kept)` once live.

        The kept minutes are written on a thread of their own, so sampling
        goes on meanwhile; frames that come while they are written are
        kept too and follow them, so the file has every frame once, in order.
        """
        history = self.history
        if history is None:
            super().start_recording(recorder, on_started)
            return
        with self._record_lock:
            self._pending = recorder
        threading.Thread(
            target=self._write_history, args=(history, recorder, on_started), name="orac-history", daemon=True
        ).start()

    def _write_history(
        self, history: FlightRecorder, recorder: FrameSink, on_started: Callable[[int], None] | None
    ) -> None:
        from probes.store.flight import FlightDecoder

        decoder = FlightDecoder(history)
        written = 0
        seq = 0
        try:
            while True:
                with self._record_lock:
                    if self._pending is not recorder:
                        return  # stopped before it caught up
                    kept = history.frames_after(seq)
                    if not kept:
                        # Caught up: new frames go straight to the file.
                        self.recorder, self._pending = recorder, None
                        break
                for frame in decoder.decode(kept):
                    recorder.append(frame)
                    written += 1
                seq = kept[-1].seq
        except Exception as exc:
            with self._record_lock:
                if self._pending is recorder:
                    self._pending = None
            try:
                recorder.close()
            except Exception:
                pass
            if self.on_error is not None:
                self.on_error(exc)
            return
        if on_started is not None:
            on_started(written)

    def stop_recording(self) -> FrameSink | None:
        with self._record_lock:
            recorder = self.recorder or self._pending
            self.recorder = self._pending = None
        if recorder is not None:
            recorder.close()
        return recorder

    def _record(self, recorder: FrameSink, frame: Frame) -> None:
        try:
            recorder.append(frame)
        except Exception as exc:
            self.recorder = None
            try:
                recorder.close()
            except Exception:
                pass
            if self.on_error is not None:
                self.on_error(exc)

    def _start_slow(self, probes: list[Probe[Any]]) -> None:
        """Start probes that compile eBPF programs, while the others already tick."""
        for probe in probes:
            starting = Sampler([probe])
            started = starting.start()
            with self._lock:
                if self._stop.is_set() or probe.name in self._dropped:
                    # Stopped, or removed while it was still starting.
                    starting.stop()
                    continue
                self._sampler.running.extend(started)
                for p in started:
                    _focus(p, self._focus)
                self._sampler.unavailable.pop(probe.name, None)
                self._sampler.unavailable.update(starting.unavailable)
            if started:
                # Its first sample now, so that its first view (two samples)
                # comes a short first interval later, not two intervals.
                self._wake.set()


def _focus(probe: Probe[Any], pid: int | None) -> None:
    if isinstance(probe, Focusing):
        probe.focus(pid)


class FrameSequence(FrameSource):
    """Plays a fixed list of frames, as fast as the receiver takes them.

    Used by tests and screenshots for deterministic screens; it goes through
    the same derive step as live frames.
    """

    def __init__(self, frames: Sequence[Frame]) -> None:
        super().__init__(interval_s=1.0)
        self._frames = list(frames)
        self.paused = False
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
