"""A short list to choose one thing from with the keyboard: the column to sort by (F6), the user to show (u)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class ChoiceScreen(ModalScreen[str | None]):
    """Returns the chosen option's id, or None when cancelled."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    ChoiceScreen { align: center middle; }
    ChoiceScreen > Vertical {
        width: 44;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    ChoiceScreen OptionList { height: auto; max-height: 20; }
    """

    def __init__(
        self, prompt: str, options: list[tuple[str, str]], current: str | None = None, width: int | None = None,
    ) -> None:
        """`options`: (id, label) of each choice, in order; the cursor starts on `current`; `width` of the box in cells."""
        super().__init__()
        self.prompt = prompt
        self.options = options
        self.current = current
        self.width = width

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt)
            yield OptionList(*(Option(label, id=option_id) for option_id, label in self.options))

    def on_mount(self) -> None:
        if self.width is not None:
            self.query_one(Vertical).styles.width = self.width
        self.query_one(OptionList).highlighted = next(
            (i for i, (option_id, _) in enumerate(self.options) if option_id == self.current), 0
        )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
