"""Messages that flow up from sources to the app."""

from __future__ import annotations

from textual.message import Message

from probes.contract import Views
from probes.model.frame import Frame


class FrameReady(Message):
    """A new frame and its derived views, posted from the source's thread."""

    def __init__(self, frame: Frame, views: Views, live: bool = False) -> None:
        """`live`: sampled now, not replayed (a recording's, or the kept minutes looked back over)."""
        super().__init__()
        self.frame = frame
        self.views = views
        self.live = live

    def can_replace(self, message: Message) -> bool:
        # If the UI is behind, the newest frame wins: drawing a stale one
        # first would only cost time. Views are derived against the previous
        # *frame*, not the previous draw, so nothing is lost but a redraw.
        # A live frame never replaces one looked back at, nor the reverse.
        return isinstance(message, FrameReady) and message.live == self.live


class SourceFailed(Message):
    """The source cannot go on (a replay reached a damaged frame); `error` is one line."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
