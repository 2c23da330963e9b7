"""Replay: `ReplaySource` plays a Recording through the path live frames take, so the panes cannot tell them apart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from probes.contract import Views
from probes.model.frame import Frame
from probes.model.frame_source import FrameCallback, Frames, SeekableSource
from probes.model.redaction import FrameRedactor
from probes.model.views import derive_frame
from probes.store.format import RecordingError
from probes.store.playback import ReplayPosition

MIN_SPEED = 1.0
MAX_SPEED = 60.0
MAX_LAG_S = 1.0


def playback_delay_s(prev_mono_ns: int, next_mono_ns: int, speed: float, interval_s: float) -> float:
    """Seconds to show a frame before the next one at `speed`.

    The recorded gap is capped at two intervals: a longer one means the
    recording was paused or the machine slept, and the viewer should not sit
    through it.
    """
    gap_s = min(max(0.0, (next_mono_ns - prev_mono_ns) / 1e9), 2 * interval_s)
    return gap_s / speed


class ReplaySource(SeekableSource):
    """Plays a Recording through the live collector's path.

    On its own thread it calls on_frame(frame, views) with views derived
    from the frame before, so the panes cannot tell replay from live, and
    stepping back derives exactly what was shown going forward.

    Every control may be called from any thread; the player thread does the
    reading and deriving. Playback stops (pauses) at the last frame; resuming
    there starts again from the beginning.
    """

    def __init__(
        self,
        recording: Frames,
        *,
        start_index: int | None = None,
        speed: float = 1.0,
        paused: bool = False,
        on_error: Callable[[Exception], None] | None = None,
        redact: bool = True,
    ) -> None:
        """`redact`: mask secrets in command lines, as the live screen does, even in a recording made without."""
        if not len(recording):
            raise RecordingError(f"{recording.path} has no frames")
        super().__init__(recording.meta.interval_s)
        self.recording = recording
        self.error: RecordingError | None = None
        self.on_error = on_error
        self._redactor = FrameRedactor() if redact else None
        self._count = len(recording)
        self._first_wall_ns, self._last_wall_ns = recording.time_range
        self._cond = threading.Condition()
        # The first frame has no views (nothing to derive from): start on the
        # second so the screen fills at once.
        self._index = self._clamp(start_index if start_index is not None else 1)
        self._wall_ns = recording.timestamps(self._index)[0]
        self._target: int | None = self._index
        self._paused = paused
        self._speed = self._clamp_speed(speed)
        # When the frame on screen was due: the next one is due a recorded
        # gap later, so decoding time does not slow playback down.
        self._due_at = time.monotonic()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # controls

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        with self._cond:
            if not value and self._paused and self._target is None and self._index >= self._count - 1:
                self._target = self._clamp(1)
            self._paused = value
            self._due_at = time.monotonic()
            self._cond.notify()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        with self._cond:
            self._speed = self._clamp_speed(value)
            self._cond.notify()

    def step(self, frames: int) -> None:
        """Move `frames` frames forward (or back, if negative) and pause there."""
        with self._cond:
            base = self._target if self._target is not None else self._index
            self._target = self._clamp(base + frames)
            self._paused = True
            self._cond.notify()

    def jump(self, seconds: float) -> None:
        """Move by `seconds` of recorded time (negative: back); keeps playing or paused."""
        with self._cond:
            base = self._target if self._target is not None else self._index
        wall_ns = self.recording.timestamps(base)[0] + int(seconds * 1e9)
        target = self.recording.index_at(wall_ns)
        # Frames further apart than `seconds`: still move one.
        if seconds > 0 and target <= base:
            target = base + 1
        elif seconds < 0 and target >= base:
            target = base - 1
        self.seek_index(target)

    def seek(self, wall_ns: int) -> None:
        """Show the frame at or before `wall_ns` (the first one, if earlier)."""
        self.seek_index(self.recording.index_at(wall_ns))

    def seek_index(self, index: int) -> None:
        with self._cond:
            self._target = self._clamp(index)
            self._cond.notify()

    def refresh(self) -> None:
        """Show the current frame again."""
        with self._cond:
            if self._target is None:
                self._target = self._index
            self._cond.notify()

    def position(self) -> ReplayPosition:
        with self._cond:
            return ReplayPosition(
                self._index, self._count, self._wall_ns, self._first_wall_ns, self._last_wall_ns,
                self._speed, self._paused,
            )

    # the Collector interface

    def start(self, on_frame: FrameCallback) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name="orac-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # the player thread

    def _clamp(self, index: int) -> int:
        return min(max(0, index), self._count - 1)

    @staticmethod
    def _clamp_speed(speed: float) -> float:
        return min(MAX_SPEED, max(MIN_SPEED, float(speed)))

    def _next(self) -> int | None:
        """Wait for the next frame to show; None when stopping."""
        with self._cond:
            while not self._stopping:
                if self._target is not None:
                    index, self._target = self._target, None
                    self._due_at = time.monotonic()
                    return index
                if self._paused:
                    self._cond.wait()
                    continue
                if self._index >= self._count - 1:
                    self._paused = True
                    continue
                delay = playback_delay_s(
                    self.recording.timestamps(self._index)[1], self.recording.timestamps(self._index + 1)[1],
                    self._speed, self.interval_s,
                )
                now = time.monotonic()
                left = self._due_at + delay - now
                if left <= 0:
                    # More than a second behind (a slow disk): carry on from
                    # now rather than rush through frames to catch up.
                    self._due_at = now if left < -MAX_LAG_S else self._due_at + delay
                    return self._index + 1
                # Woken early by a control, this loop looks again with the
                # new speed, target or pause state.
                self._cond.wait(left)
            return None

    def _shown(self, index: int) -> Frame:
        frame = self.recording.frame(index)
        return self._redactor.frame(frame) if self._redactor is not None else frame

    def _run(self, on_frame: FrameCallback) -> None:
        while True:
            try:
                index = self._next()
                if index is None:
                    return
                frame = self._shown(index)
                views = derive_frame(self._shown(index - 1), frame) if index > 0 else Views()
            except Exception as exc:
                # Stop where we are and say why, rather than end the thread
                # and leave the screen frozen.
                error = exc if isinstance(exc, RecordingError) else RecordingError(
                    f"{self.recording.path}: cannot show frame {index} ({type(exc).__name__}: {exc})"
                )
                with self._cond:
                    self.error = error
                    self._paused = True
                if self.on_error is not None:
                    self.on_error(error)
                continue
            with self._cond:
                self._index = index
                self._wall_ns = frame.wall_ns
            on_frame(frame, views)
