"""Confirm which signal to send, naming the process it goes to."""

from __future__ import annotations

import signal
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

# The signals people send from top and htop, gentlest first.
SIGNALS: tuple[tuple[signal.Signals, str], ...] = (
    (signal.SIGTERM, "ask it to exit"),
    (signal.SIGINT, "interrupt, as Ctrl-C"),
    (signal.SIGHUP, "hang up; many daemons reload"),
    (signal.SIGKILL, "kill at once; it cannot clean up"),
    (signal.SIGSTOP, "stop (pause) it"),
    (signal.SIGCONT, "continue a stopped process"),
    (signal.SIGUSR1, "user signal 1"),
    (signal.SIGUSR2, "user signal 2"),
    (signal.SIGQUIT, "quit with a core dump"),
)


# processes named one per line; past this many, how many more
MAX_LISTED = 8


class SignalScreen(ModalScreen[int | None]):
    """Returns the chosen signal number, or None when cancelled."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    SignalScreen { align: center middle; }
    SignalScreen > Vertical {
        width: 100;
        max-width: 95%;
        height: auto;
        border: thick $error;
        background: $surface;
        padding: 1 2;
    }
    SignalScreen Label { width: 100%; margin-bottom: 1; }
    SignalScreen OptionList { height: auto; max-height: 12; }
    """

    def __init__(self, process_labels: list[str]) -> None:
        """`process_labels`: one line naming each process the signal goes to."""
        super().__init__()
        self.process_labels = process_labels

    def compose(self) -> ComposeResult:
        labels = self.process_labels
        if len(labels) == 1:
            question = f"Send a signal to {escape(labels[0])}?"
        else:
            listed = [f"  {escape(label)}" for label in labels[:MAX_LISTED]]
            if len(labels) > MAX_LISTED:
                listed.append(f"  and {len(labels) - MAX_LISTED} more")
            question = "\n".join([f"Send a signal to these {len(labels)} tagged processes?", *listed])
        with Vertical():
            yield Label(question)
            yield OptionList(
                *(Option(f"{sig.name:<8} {sig.value:>2}  {meaning}", id=sig.name) for sig, meaning in SIGNALS)
            )
            yield Label("Enter sends, Escape cancels")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(signal.Signals[event.option.id]))

    def action_cancel(self) -> None:
        self.dismiss(None)
