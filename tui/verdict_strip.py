"""The verdict strip: one line, a cell per resource coloured by its USE state, and the clock.

The cells come from probes.model.verdict, derived from the frame's views,
so a replay shows the verdict that was true at the moment shown. `v`
selects the worst cell and then the next; Enter (or a click) opens the
process the cell names, or the pane that explains it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget

from probes.model.verdict import Cell, State

from .process_table import ProcessTable
from .text_lines import TextLines

SEPARATOR = " │ "
STATE_CLASSES = {
    State.NO_DATA: "verdict-strip--no-data",
    State.OK: "verdict-strip--ok",
    State.WARNING: "verdict-strip--warning",
    State.SATURATED: "verdict-strip--saturated",
    State.ERROR: "verdict-strip--error",
}


# The live clock moves with the frames, which draw the strip anyway; its
# timer, put back at every frame, only keeps it going when frames are further
# apart (a longer --interval, a box holding orac back). A timer of its own
# every second drew the screen a second time each second: 0.25 % of a core
# with every pane at 500 processes.
CLOCK_S = 1.1
# How long a roomier form of the strip must have fitted before it is shown (see _fit).
SETTLE_S = 10.0


def clock(wall_s: float) -> str:
    """Local time and zone: the moment a screenshot or a replayed verdict is of."""
    return time.strftime("%H:%M:%S %Z", time.localtime(wall_s))


class VerdictStrip(TextLines, Widget, can_focus=True):
    DEFAULT_CSS = """
    VerdictStrip { height: 1; background: $panel; }
    VerdictStrip > .verdict-strip--ok { color: $success; }
    VerdictStrip > .verdict-strip--warning { color: $warning; text-style: bold; }
    VerdictStrip > .verdict-strip--saturated { color: $error; text-style: bold; }
    VerdictStrip > .verdict-strip--error { background: $error; color: $background; text-style: bold; }
    VerdictStrip > .verdict-strip--no-data { color: $text-muted; }
    VerdictStrip > .verdict-strip--clock { color: $foreground; }
    VerdictStrip > .verdict-strip--selected { text-style: reverse bold; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {*STATE_CLASSES.values(), "verdict-strip--clock", "verdict-strip--selected"}

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("enter", "open", "Open", tooltip="Verdict strip: open the process the selected cell names, or its pane"),
        Binding("escape", "leave", "Back", show=False, tooltip="Verdict strip: back to the process table"),
        Binding("left", "step(-1)", "Previous cell", show=False, tooltip="Verdict strip: the previous cell"),
        Binding("right", "step(1)", "Next cell", show=False, tooltip="Verdict strip: the next cell"),
    ]

    class ShowPane(Message):
        """Enter on a cell that names no process: show the pane of the probe `probe`."""

        def __init__(self, probe: str) -> None:
            super().__init__()
            self.probe = probe

    def __init__(self, *, live: bool, **kwargs: object) -> None:
        """`live`: the clock shows now; otherwise (replay, tests) the time of the frame shown."""
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.live = live
        self.cells: tuple[Cell, ...] = ()
        self.wall_s: float | None = None
        self.selected = 0
        # (first column, column after, cell index) of each cell as last drawn, for clicks
        self._spans: list[tuple[int, int, int]] = []
        self._clock: Timer | None = None
        # The form _fit chose (an index of its choices), for the room it had,
        # and since when a roomier one has fitted
        self._form: int | None = None
        self._form_room = 0
        self._roomier_since: float | None = None
        self.monotonic = time.monotonic

    def on_mount(self) -> None:
        if self.live:
            self._clock = self.set_interval(CLOCK_S, self._tick_clock)

    def _tick_clock(self) -> None:
        if self.live:
            self.refresh_lines()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def show(self, cells: Sequence[Cell], wall_ns: int) -> None:
        self.cells = tuple(cells)
        self.wall_s = wall_ns / 1e9
        self.selected = min(self.selected, max(0, len(self.cells) - 1))
        self.refresh_lines()
        if self._clock is not None:
            self._clock.reset()

    def worst(self) -> int:
        """The index of the worst cell (the first of equals)."""
        return max(range(len(self.cells)), key=lambda i: (self.cells[i].state, -i), default=0)

    def cycle(self) -> None:
        """From elsewhere, the worst cell; from the strip, the next one."""
        if not self.has_focus:
            self.selected = self.worst()
            self.focus()
        elif self.cells:
            self.selected = (self.selected + 1) % len(self.cells)
        self.refresh()

    def action_step(self, by: int) -> None:
        if self.cells:
            self.selected = (self.selected + by) % len(self.cells)
            self.refresh()

    def action_leave(self) -> None:
        self.screen.query_one(ProcessTable).focus()

    def action_open(self) -> None:
        if not self.cells:
            return
        cell = self.cells[self.selected]
        if cell.contributor is not None:
            self.post_message(ProcessTable.Selected(cell.contributor.pid))
        elif cell.pane is not None:
            self.post_message(self.ShowPane(cell.pane))

    def on_click(self, event: events.Click) -> None:
        for start, end, index in self._spans:
            if start <= event.x < end:
                self.selected = index
                self.focus()
                self.refresh()
                self.action_open()
                return

    def _label(self, cell: Cell, form: int) -> str:
        # The state is in words as well as colours: a text screenshot has no colours.
        if form == 0:
            return cell.summary
        if form == 1 and cell.state is not State.NO_DATA:
            return f"{cell.label} {cell.state.word}: {cell.short}"
        return f"{cell.label} {cell.state.word}"

    def _fit(self, room: int) -> tuple[list[tuple[int, str]], str]:
        """The widest labels that fit (or the form kept, see SETTLE_S), as (cell index, label), and what stands for the cells left out.

        Every cell in full, then in short, then the selected (or worst) cell in short and the
        others by state only, then the same with the ok cells counted rather than named, and last
        the worst first: on a narrow screen the trouble is what must show."""
        cells = self.cells
        key = self.selected if self.has_focus else self.worst()
        quiet = {i for i, c in enumerate(cells) if i != key and c.state <= State.OK}
        rest = f"+{len(quiet)} ok" if quiet else ""
        loud = [i for i in range(len(cells)) if i not in quiet]
        choices: list[tuple[list[tuple[int, str]], str]] = [
            ([(i, self._label(c, 0)) for i, c in enumerate(cells)], ""),
            ([(i, self._label(c, 1)) for i, c in enumerate(cells)], ""),
            ([(i, self._label(c, 1 if i == key else 2)) for i, c in enumerate(cells)], ""),
            ([(i, self._label(cells[i], 1 if i == key else 2)) for i in loud], rest),
        ]
        worst_first = sorted(loud, key=lambda i: (-cells[i].state, i))
        choices.append(([(i, self._label(cells[i], 2)) for i in worst_first], rest))

        def fits(choice: tuple[list[tuple[int, str]], str]) -> bool:
            labels, more = choice
            shown = [label for _, label in labels] + ([more] if more else [])
            return sum(map(len, shown)) + len(SEPARATOR) * max(0, len(shown) - 1) + 1 <= room

        best = next((i for i, choice in enumerate(choices[:-1]) if fits(choice)), len(choices) - 1)
        # A label that changes length from tick to tick (a disk named when
        # busy, "disks" when idle) would switch the strip between two forms
        # as often: a roomier form waits until it has fitted for SETTLE_S.
        now = self.monotonic()
        kept = self._form
        if kept is None or room != self._form_room or best >= kept or not fits(choices[kept]):
            self._form, self._form_room, self._roomier_since = best, room, None
        elif self._roomier_since is None:
            self._roomier_since = now
        elif now - self._roomier_since >= SETTLE_S:
            self._form, self._roomier_since = best, None
        return choices[self._form]

    def render(self) -> Text:
        now = clock(time.time() if self.live or self.wall_s is None else self.wall_s)
        room = max(0, self.size.width - len(now) - 2)
        labels, more = self._fit(room)
        text = Text(" ")
        self._spans = []
        selected = self.component_style("verdict-strip--selected") if self.has_focus else None
        for index, label in labels:
            cell = self.cells[index]
            if self._spans:
                text.append(SEPARATOR)
            start = text.cell_len
            style = self.component_style(STATE_CLASSES[cell.state])
            text.append(label, style + selected if selected is not None and index == self.selected else style)
            self._spans.append((start, text.cell_len, index))
        if more:
            text.append(SEPARATOR)
            text.append(more, self.component_style(STATE_CLASSES[State.OK]))
        text.truncate(room, overflow="ellipsis")
        pad = max(1, self.size.width - text.cell_len - len(now) - 1)
        text.append(" " * pad)
        text.append(now, self.component_style("verdict-strip--clock"))
        return text
