"""A sortable table drawn with Textual's line API: only the rows on screen cost anything.

DataTable keeps a renderable per cell and re-measures on updates; refilled
every tick it was the most expensive widget on screen. This table keeps
its rows as plain Python objects, formats a cell only when its line is
drawn, and follows the row under the cursor across refills by key.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .choice_screen import ChoiceScreen

T = TypeVar("T")

# A cell without a style of its own: shared, as Style() is built anew at each call.
PLAIN = Style()


@dataclass(frozen=True)
class Column(Generic[T]):
    key: str
    label: str
    # 0: takes the width the others leave
    width: int
    text: Callable[[T], str]
    sort_key: Callable[[T], Any]
    right: bool = False
    # sizes and rates are most interesting largest first, names and ids smallest first
    descending: bool = False
    # narrower tables drop this column so the wide one keeps room to be read
    min_table_width: int = 0
    # dropped while every row says the same in it (a cgroup of "/" everywhere)
    hide_when_same: bool = False
    # the text where `text` does not fit the column (the program before its path)
    narrow: Callable[[T], str] | None = None


def fit(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        return text[: width - 1] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


def _all_same(column: Column[T], rows: list[tuple[T, str]]) -> bool:
    """Whether every row has one text in `column` (stops at the first that differs)."""
    first = column.text(rows[0][0])
    return all(column.text(item) == first for item, _ in rows)


class LineTable(ScrollView, Generic[T], can_focus=True):
    """Rows of T under a fixed header; click a header to sort, again to reverse."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(-1)", "First", show=False,
                tooltip="First row; the cursor then stays on the first line as the order changes (moved, it follows its row)"),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "open", "Open", show=False, tooltip="Open the selected row"),
        Binding("f6", "sort_menu", "Sort by", key_display="F6", tooltip="Choose the column to sort by"),
        Binding("I", "invert_sort", "Invert", show=False, tooltip="Reverse the sort order"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "line-table--header",
        "line-table--sorted",
        "line-table--cursor",
        "line-table--prefix",
    }

    DEFAULT_CSS = """
    LineTable {
        height: 1fr;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    LineTable > .line-table--header { background: $primary; color: $background; text-style: bold; }
    LineTable > .line-table--sorted { background: $accent; color: $background; text-style: bold; }
    LineTable > .line-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    LineTable:blur > .line-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    LineTable > .line-table--prefix { color: $foreground-muted; }
    """

    class Reordered(Message):
        """The sort order (or a subclass's filter or tree mode) changed."""

    class CursorMoved(Message):
        """The user moved the cursor (a detail beside the table follows the row under it)."""

        def __init__(self, table: LineTable[Any]) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> LineTable[Any]:
            return self.table

    class Opened(Message):
        """Enter or a double click on a row."""

        def __init__(self, table: LineTable[Any], item: Any) -> None:
            super().__init__()
            self.table = table
            self.item = item

        @property
        def control(self) -> LineTable[Any]:
            return self.table

    # Whether the cursor's row is marked while another widget has the focus.
    # A table that is only read (disks, filesystems) leaves its rows' own
    # colours (a saturated disk, a full filesystem) to show until focused.
    CURSOR_WHEN_BLURRED: ClassVar[bool] = True

    def __init__(
        self,
        columns: Iterable[Column[T]],
        sort_key: str,
        row_key: Callable[[T], Hashable],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.columns: list[Column[T]] = list(columns)
        self.default_sort_key = sort_key
        self.sort_key = sort_key
        self.sort_descending = self.column(sort_key).descending
        self.row_key = row_key
        # each row: the item and a prefix drawn before the last column (tree lines)
        self.rows: list[tuple[T, str]] = []
        self.cursor = 0
        self.cursor_key: Hashable | None = None
        # Whether the cursor follows its row across refills, as once the user
        # moved it; otherwise it stays on its line (the top one after a sort),
        # so the top of the list is what is shown.
        self.following = False
        # following through new orders too (htop's F), until its row goes
        self.sticky = False
        # cells of the last column scrolled off to the left (htop's → and ←)
        self.x_offset = 0
        # keys of the hide_when_same columns that are the same in every row
        self._same: frozenset[str] = frozenset()
        # Rich styles by component class, resolved once per theme and focus
        # state: resolving them for every line was a third of drawing time.
        self._styles: dict[str, Style] = {}
        # line of the view -> its _line_key when last drawn
        self._drawn: dict[int, tuple[Any, ...] | None] = {}

    # data

    @property
    def view_size(self) -> Size:
        """Where the lines go: the widget less its scrollbar."""
        return self.scrollable_content_region.size

    def column(self, key: str) -> Column[T]:
        return next(c for c in self.columns if c.key == key)

    def ordered(self, items: Iterable[T], tie_break: Callable[[T], Any] | None = None) -> list[T]:
        """Items in the table's sort order; `tie_break` keeps equal rows from swapping every tick."""
        column = self.column(self.sort_key)
        result = sorted(items, key=tie_break) if tie_break is not None else list(items)
        result.sort(key=column.sort_key, reverse=self.sort_descending)
        return result

    def set_rows(self, rows: list[tuple[T, str]]) -> None:
        """Show these rows; a cursor the user moved stays on its row where it still exists."""
        self.rows = rows
        if self.following and self.cursor_key is not None:
            for i, (item, _) in enumerate(rows):
                if self.row_key(item) == self.cursor_key:
                    self.cursor = i
                    break
            else:
                self.sticky = False
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        self.cursor_key = self.row_key(rows[self.cursor][0]) if rows else None
        self._size_to_rows()
        if self.following:
            self._scroll_cursor_into_view()
        same = frozenset(c.key for c in self.columns if c.hide_when_same and len(rows) > 1 and _all_same(c, rows))
        if same != self._same:
            # Every line's layout changes.
            self._same = same
            self.refresh()
            return
        self._refresh_changed()

    def scroll_last_column(self, cells: int) -> None:
        """Scroll the last (widest) column's text by `cells`, left for negative; not before its start."""
        offset = max(0, self.x_offset + cells)
        if offset != self.x_offset:
            self.x_offset = offset
            self.refresh()

    def reordered(self) -> None:
        """The order changed (a sort; a subclass's filter or tree): show the top of the list again.

        As in htop: a new order shows its first rows, not the row the cursor
        was on, wherever that went; unless the cursor is to follow its row
        whatever the order (`sticky`).
        """
        if not self.sticky:
            self.following = False
            self.cursor = 0
            self.scroll_to(y=0, animate=False, immediate=True)
        self.resort()

    def _refresh_changed(self) -> None:
        """Redraw only the lines whose text changed since drawn.

        Most of a table's rows read the same from one tick to the next (idle
        processes); a line redrawn costs Textual's compositor as much as our
        formatting, so the unchanged ones are left as they are.
        """
        width, height = self.view_size
        drawn = self._drawn
        changed = [y for y in range(height) if drawn.get(y) != self._line_key(y, width)]
        if len(changed) > height // 2:
            self.refresh()
            return
        for y in changed:
            self.refresh(Region(0, y, width, 1))

    def _line_key(self, y: int, width: int) -> tuple[Any, ...] | None:
        """What line `y` of the view `width` wide shows; equal keys draw equal lines."""
        if y == 0:
            return (width, self.sort_key, self.sort_descending, *(c.key for c in self.columns))
        index = self.scroll_offset.y + y - 1
        if index >= len(self.rows):
            return None
        item, prefix = self.rows[index]
        return (
            width, index == self.cursor, prefix, self.row_component(item),
            *(c.text(item) for c in self.columns),
        )

    def resort(self) -> None:
        """Reorder the current rows after the sort changed; subclasses rebuild instead."""
        self.set_rows([(item, "") for item in self.ordered(item for item, _ in self.rows)])

    @property
    def selected(self) -> T | None:
        return self.rows[self.cursor][0] if self.rows else None

    def show_column(self, column: Column[T]) -> None:
        """Add a column another source provides, before the last one.

        Its text and sort key look values up elsewhere, so the caller keeps
        them current by updating the mapping they read.
        """
        if any(c.key == column.key for c in self.columns):
            return
        self.columns.insert(len(self.columns) - 1, column)
        self.refresh()

    def hide_column(self, key: str) -> None:
        if key == self.columns[-1].key or not any(c.key == key for c in self.columns):
            return
        self.columns = [c for c in self.columns if c.key != key]
        if self.sort_key == key:
            self.sort_key = self.default_sort_key
            self.sort_descending = self.column(self.sort_key).descending
            self.reordered()
        self.refresh()

    # actions

    def action_sort(self, key: str) -> None:
        if not any(c.key == key for c in self.columns):
            # A key for a column its probe provides, while it does not run.
            return
        if key == self.sort_key:
            self.sort_descending = not self.sort_descending
        else:
            self.sort_key = key
            self.sort_descending = self.column(key).descending
        self.reordered()
        self.post_message(self.Reordered())

    def action_sort_menu(self) -> None:
        arrow = "▼" if self.sort_descending else "▲"
        shown = [
            (c.key, f"{c.label} {arrow}" if c.key == self.sort_key else c.label)
            for c, _ in self._layout(self.view_size.width)
        ]

        def chosen(key: str | None) -> None:
            if key is not None and key != self.sort_key:
                self.action_sort(key)

        self.app.push_screen(ChoiceScreen("Sort by (Enter; I reverses)", shown, self.sort_key), chosen)

    def action_invert_sort(self) -> None:
        self.action_sort(self.sort_key)

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.view_size.height - 2))

    def action_edge(self, direction: int) -> None:
        self._move_to(0 if direction < 0 else len(self.rows) - 1)
        if direction < 0:
            # Home: the cursor stays on the first line, whichever row comes to it.
            self.following = False

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Opened(self, self.selected))

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(index, len(self.rows) - 1))
        self.cursor_key = self.row_key(self.rows[self.cursor][0])
        self.following = True
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.CursorMoved(self))

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.view_size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    # mouse

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            key = self._column_at(event.x)
            if key is not None:
                self.action_sort(key)
        else:
            self._move_to(self.scroll_offset.y + event.y - 1)
            if event.chain == 2:
                self.action_open()

    def _column_at(self, x: int) -> str | None:
        start = 0
        for column, width in self._layout(self.view_size.width):
            if start <= x < start + width + 1:
                return column.key
            start += width + 1
        return None

    # drawing

    def _layout(self, width: int) -> list[tuple[Column[T], int]]:
        shown = [c for c in self.columns if width >= c.min_table_width and c.key not in self._same]
        fixed = sum(c.width + 1 for c in shown if c.width)
        return [(c, c.width or max(8, width - fixed)) for c in shown]

    def on_resize(self) -> None:
        self._size_to_rows()

    def _size_to_rows(self) -> None:
        # A new virtual size lays the whole screen out again (every widget
        # re-renders). So it never goes below the view's height (rows that
        # come and go while all fit change nothing), and while the rows
        # overflow the view before and after, only the scrollbar changes.
        size = Size(self.size.width, max(len(self.rows) + 1, self.size.height))
        old = self.virtual_size
        if size == old:
            return
        height = self.size.height
        if size.width == old.width and size.height > height and old.height > height and self.show_vertical_scrollbar:
            self.set_reactive(LineTable.virtual_size, size)
            self.vertical_scrollbar.window_virtual_size = size.height
            self.scroll_y = self.validate_scroll_y(self.scroll_y)
            return
        self.virtual_size = size

    def style(self, component: str) -> Style:
        """The Rich style of a component class ("" for the widget's own)."""
        style = self._styles.get(component)
        if style is None:
            style = self.get_component_rich_style(component) if component else self.rich_style
            self._styles[component] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def on_focus(self) -> None:
        self._styles.clear()

    def on_blur(self) -> None:
        self._styles.clear()

    def cell_style(self, key: str, item: T) -> Style:
        """A style for one cell on top of the row's (subclasses colour states)."""
        return PLAIN

    def row_component(self, item: T) -> str:
        """The component class that styles a whole row, "" for none (subclasses mark rows)."""
        return ""

    def render_line(self, y: int) -> Strip:
        width = self.view_size.width
        key = self._drawn[y] = self._line_key(y, width)
        layout = self._layout(width)
        base = self.style("")
        if y == 0:
            header = self.style("line-table--header")
            sorted_style = self.style("line-table--sorted")
            segments = []
            last = layout[-1][0].key
            for column, w in layout:
                arrow = ("▼" if self.sort_descending else "▲") if column.key == self.sort_key else ""
                scrolled = f" +{self.x_offset}" if column.key == last and self.x_offset else ""
                label = fit(column.label + arrow + scrolled, w, column.right)
                segments.append(Segment(label, sorted_style if column.key == self.sort_key else header))
                segments.append(Segment(" ", header))
            return Strip(segments).crop_extend(0, width, header)
        if key is None:
            return Strip.blank(width, base)
        index = self.scroll_offset.y + y - 1
        item, prefix = self.rows[index]
        texts = dict(zip((c.key for c in self.columns), key[4:]))
        row_style = base
        if key[3]:
            row_style = base + self.style(key[3])
        if index == self.cursor and (self.CURSOR_WHEN_BLURRED or self.has_focus):
            row_style = row_style + self.style("line-table--cursor")
        segments = []
        last = layout[-1][0].key
        for column, w in layout:
            text = texts[column.key]
            if column.key == last:
                if column.narrow is not None and len(prefix) + len(text) > w:
                    text = column.narrow(item)
                # Scrolled: the tree lines go first, then the text.
                x = self.x_offset
                shown_prefix, text = prefix[x:], text[max(0, x - len(prefix)):]
                if shown_prefix:
                    prefix_style = row_style + self.style("line-table--prefix")
                    segments.append(Segment(shown_prefix[:w], prefix_style))
                    w = max(0, w - len(shown_prefix))
            elif column.narrow is not None and len(text) > w:
                text = column.narrow(item)
            cell = self.cell_style(column.key, item)
            segments.append(Segment(fit(text, w, column.right), row_style + cell if cell else row_style))
            segments.append(Segment(" ", row_style))
        return Strip(segments).crop_extend(0, width, row_style)
