"""Replay controls: the timeline bar and the keys that move through a recording."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Label

from probes.store.playback import SPEEDS, ReplayPosition, parse_time


def clock(wall_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_ns / 1e9))


REPLAY_BINDINGS: list[Binding] = [
    Binding("space", "app.replay_play", "Play/pause", tooltip="Replay: play or pause"),
    Binding("left", "app.replay_step(-1)", "Step back", show=False, tooltip="Replay: one frame back"),
    Binding("right", "app.replay_step(1)", "Step", show=False, tooltip="Replay: one frame forward"),
    Binding("comma", "app.replay_jump(-10)", "-10 s", show=False, tooltip="Replay: back 10 seconds"),
    Binding("full_stop", "app.replay_jump(10)", "+10 s", show=False, tooltip="Replay: forward 10 seconds"),
    Binding("less_than_sign", "app.replay_jump(-60)", "-1 min", show=False, tooltip="Replay: back 1 minute"),
    Binding("greater_than_sign", "app.replay_jump(60)", "+1 min", show=False, tooltip="Replay: forward 1 minute"),
    Binding("minus", "app.replay_speed(-1)", "Slower", show=False, tooltip="Replay: slower (1x to 60x)"),
    Binding("plus", "app.replay_speed(1)", "Faster", show=False, tooltip="Replay: faster (1x to 60x)"),
    Binding("g", "app.replay_seek", "Go to", tooltip="Replay: go to a time you type"),
    Binding("b", "app.replay_bookmarks", "Bookmarks", tooltip="Replay: the moments where something began; go to one"),
    Binding("left_square_bracket", "app.replay_bookmark(-1)", "Previous mark", show=False,
            tooltip="Replay: go to the bookmark before this frame"),
    Binding("right_square_bracket", "app.replay_bookmark(1)", "Next mark", show=False,
            tooltip="Replay: go to the bookmark after this frame"),
]


class ReplayBar(Widget):
    """One line: play state, time, position, speed and a timeline bar."""

    DEFAULT_CSS = """
    ReplayBar { height: 1; background: $panel; }
    ReplayBar > .replay-bar--label { color: $accent; text-style: bold; }
    ReplayBar > .replay-bar--done { color: $primary; }
    ReplayBar > .replay-bar--todo { color: $foreground-muted; }
    ReplayBar > .replay-bar--error { color: $error; text-style: bold reverse; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "replay-bar--label", "replay-bar--done", "replay-bar--todo", "replay-bar--error",
    }


    def __init__(self, name_of_file: str) -> None:
        super().__init__()
        self.name_of_file = name_of_file
        self.position: ReplayPosition | None = None
        self.error: str | None = None
        # "marks 12", or how far their scan has got
        self.marks = "marks …"

    def show_marks(self, text: str) -> None:
        self.marks = text
        self.refresh()

    def show(self, position: ReplayPosition) -> None:
        self.position = position
        self.refresh()

    def show_error(self, error: str) -> None:
        """Say why playback stopped, in place of the timeline, until a frame is shown again."""
        self.error = error
        self.refresh()

    def render(self) -> Text:
        label = self.get_component_rich_style("replay-bar--label")
        p = self.position
        if self.error is not None:
            where = f"{p.index + 1}/{p.count}  " if p is not None else ""
            return Text.assemble(
                (" REPLAY STOPPED ", self.get_component_rich_style("replay-bar--error")), f" {where}{self.error}"
            )
        if p is None:
            return Text(f" REPLAY {self.name_of_file}", style=label)
        # The speed shows while paused too: it is what space will play at.
        state = f"paused {p.speed:g}x" if p.paused else f"{p.speed:g}x"
        head = Text.assemble(
            (" REPLAY ", label), f"{clock(p.wall_ns)}  {p.index + 1}/{p.count}  ", (state, label), f"  {self.marks}  "
        )
        width = max(10, self.size.width - head.cell_len - 1)
        done = round(p.fraction * width)
        head.append("━" * done, self.get_component_rich_style("replay-bar--done"))
        head.append("─" * (width - done), self.get_component_rich_style("replay-bar--todo"))
        return head


class SeekScreen(ModalScreen[int | None]):
    """Asks for a time to go to; returns a wall time in ns, or None."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    SeekScreen { align: center middle; }
    SeekScreen > Vertical { width: 64; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
    SeekScreen #seek-error { color: $error; }
    """

    def __init__(self, first_wall_ns: int, last_wall_ns: int) -> None:
        super().__init__()
        self.first_wall_ns = first_wall_ns
        self.last_wall_ns = last_wall_ns

    def compose(self) -> ComposeResult:
        with Vertical():
            # Two lines: on one, the end time did not fit the box.
            yield Label(f"Go to a time in the recording,\nfrom {clock(self.first_wall_ns)} to {clock(self.last_wall_ns)}")
            yield Input(placeholder="+10m, 14:05:30, 2026-11-24T14:05 or Unix seconds")
            yield Label("", id="seek-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            wall_ns = parse_time(event.value.strip(), self.first_wall_ns)
        except ValueError as exc:
            # Keep what was typed so it can be corrected.
            self.query_one("#seek-error", Label).update(str(exc))
            return
        self.dismiss(wall_ns)

    def action_cancel(self) -> None:
        self.dismiss(None)


def next_speed(current: float, direction: int) -> float:
    """The next of SPEEDS up or down from `current`."""
    if direction > 0:
        return next((s for s in SPEEDS if s > current), SPEEDS[-1])
    return next((s for s in reversed(SPEEDS) if s < current), SPEEDS[0])
