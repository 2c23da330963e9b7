"""A recording's bookmarks (probes.model.bookmarks), found by reading it through once.

Bookmarks are not stored: they follow from the frames, so every recording
has them, whichever orac wrote it. Reading and deriving a frame takes
about 4 ms with every probe, so an hour at one frame a second is about 15
s of a thread's time; replay scans aside and says how far it has got.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from probes.model.bookmarks import Bookmark, Bookmarker
from probes.model.views import derive_frame
from probes.store.reader import Recording

# frames between two progress calls
PROGRESS_EVERY = 100


def scan_bookmarks(
    path: Path,
    on_progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> list[Bookmark]:
    """Every bookmark of the recording at `path`, oldest first; `on_progress(frames read, frames)` now and then.

    Stops early, with what it found so far, when `stop` is set. Raises
    RecordingError for a recording that cannot be read.
    """
    marks: list[Bookmark] = []
    marker = Bookmarker()
    with Recording(path) as recording:
        count = len(recording)
        prev = None
        for index, frame in recording.iter_frames():
            if stop is not None and stop.is_set():
                break
            if prev is not None:
                marks += marker.add(frame.wall_ns, derive_frame(prev, frame))
            prev = frame
            if on_progress is not None and (index + 1) % PROGRESS_EVERY == 0:
                on_progress(index + 1, count)
    return marks
