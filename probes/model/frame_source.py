"""Where a screen's frames come from, and what else each kind of source can do.

Every source hands `(frame, views)` to one callback from its own thread, so
the UI never samples or decodes on its own thread and cannot tell one
source from another. What differs is what the UI may ask of it, and the app
asks by type:

- LiveSource (probes.model.collector.Collector): the probes it runs change
  while it runs (a drill-down's), it can count one process thread by thread,
  and it records.
- SeekableSource (probes.store.replay.ReplaySource): it moves through time.
- A plain FrameSource (FrameSequence, fixed frames for tests): neither.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from probes.contract import Probe, Views
from probes.model.frame import Frame

if TYPE_CHECKING:
    from probes.store.format import RecordingMeta
    from probes.store.playback import ReplayPosition

FrameCallback = Callable[[Frame, Views], None]


class FrameSink(Protocol):
    """Where a live source also sends each frame (a Recorder)."""

    path: Path
    frames: int  # appended so far

    def append(self, frame: Frame) -> bool: ...
    def close(self) -> None: ...


class FrameSource(ABC):
    """Frames for a screen, from a thread of the source's own."""

    # whether the processes it shows are running now (so can be signalled,
    # asked for more, traced)
    live: ClassVar[bool] = False
    # frames stop coming while set (a replay may make it a property)
    paused: bool

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        # called from the source's thread when it cannot go on as asked (a
        # recording's write error, a replay's damaged frame)
        self.on_error: Callable[[Exception], None] | None = None

    @abstractmethod
    def start(self, on_frame: FrameCallback) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def refresh(self) -> None:  # noqa: B027 - optional: a source that cannot refresh does nothing
        """Show the present (or the current frame) again at once, where the source can."""


class LiveSource(FrameSource):
    """A source sampling this machine now."""

    live: ClassVar[bool] = True

    # the probes it was started with (not those added later)
    probes: Sequence[Probe[Any]]

    def __init__(self, interval_s: float) -> None:
        super().__init__(interval_s)
        # the recording frames are appended to, on the source's thread
        self.recorder: FrameSink | None = None

    @property
    def recording(self) -> FrameSink | None:
        """The recording started and not yet stopped (it may still be taking the kept past)."""
        return self.recorder

    def start_recording(self, recorder: FrameSink, on_started: Callable[[int], None] | None = None) -> None:
        """Append every frame to `recorder` from now on; `on_started(frames from the past)` once it is live."""
        self.recorder = recorder
        if on_started is not None:
            on_started(0)

    def stop_recording(self) -> FrameSink | None:
        """Close the recording (None if there was none) and return it."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()
        return recorder

    @abstractmethod
    def add_probes(self, probes: Sequence[Probe[Any]]) -> None: ...

    @abstractmethod
    def remove_probes(self, names: Iterable[str]) -> None: ...

    @abstractmethod
    def focus(self, pid: int | None) -> None:
        """Have the probes that can break one process down by thread do so for `pid`; None stops."""


class Frames(Protocol):
    """What a replay reads: a Recording, or the live screen's kept minutes (probes.store.flight.KeptRecording)."""

    meta: RecordingMeta
    # what is missing from it, in one line (a copy without its write-ahead log); None when whole
    warning: str | None

    @property
    def path(self) -> Path: ...

    def __len__(self) -> int: ...

    @property
    def time_range(self) -> tuple[int, int]: ...

    def timestamps(self, index: int) -> tuple[int, int]: ...

    def index_at(self, wall_ns: int) -> int: ...

    def frame(self, index: int) -> Frame: ...


class SeekableSource(FrameSource):
    """A source that moves through recorded time."""

    recording: Frames
    # times real time (a property: changing it wakes the player)
    speed: float

    @abstractmethod
    def step(self, frames: int) -> None: ...

    @abstractmethod
    def jump(self, seconds: float) -> None: ...

    @abstractmethod
    def seek(self, wall_ns: int) -> None: ...

    @abstractmethod
    def position(self) -> ReplayPosition: ...
