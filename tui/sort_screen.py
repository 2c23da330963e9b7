"""F6: choose the column a table is sorted by, from the keyboard (htop's "Sort by")."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class SortScreen(ModalScreen[str | None]):
    """Returns the chosen column's key, or None when cancelled."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,f6", "cancel", "Cancel")]

    DEFAULT_CSS = """
    SortScreen { align: center middle; }
    SortScreen > Vertical {
        width: 40;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    SortScreen OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, columns: list[tuple[str, str]], current: str, descending: bool) -> None:
        """`columns`: (key, label) of each column, in the table's order."""
        super().__init__()
        self.columns = columns
        self.current = current
        self.descending = descending

    def compose(self) -> ComposeResult:
        arrow = "▼" if self.descending else "▲"
        options = [
            Option(f"{label} {arrow}" if key == self.current else label, id=key) for key, label in self.columns
        ]
        with Vertical():
            yield Label("Sort by (Enter; I reverses)")
            yield OptionList(*options)

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = next((i for i, (key, _) in enumerate(self.columns) if key == self.current), 0)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
