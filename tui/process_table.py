"""The process table: a line-API widget that draws only the rows on screen.

A DataTable rebuilt or re-sorted every second costs several percent of a core
at a few thousand processes; this widget keeps the sorted list as plain
Python data and renders just the visible lines, so its cost does not grow
with the number of processes off screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, ClassVar, Iterable

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from probes.views import ProcessView, cpu_sort_key

from .format import cpu_time, human_bytes, percent


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    # 0: takes the width the others leave
    width: int
    text: Callable[[ProcessView], str]
    sort_key: Callable[[ProcessView], Any]
    right: bool = False
    # sizes and rates are most interesting largest first, names and ids smallest first
    descending: bool = False
    # narrower tables drop this column so the command keeps room to be read
    min_table_width: int = 0


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 7, lambda p: str(p.pid), attrgetter("pid"), right=True),
    Column("user", "USER", 9, attrgetter("user"), attrgetter("user")),
    Column("state", "S", 1, attrgetter("state"), attrgetter("state")),
    Column("cpu", "CPU%", 6, lambda p: percent(p.cpu_percent), cpu_sort_key, True, True),
    Column("rss", "RSS", 6, lambda p: human_bytes(p.rss_bytes), attrgetter("rss_bytes"), True, True),
    Column("threads", "THR", 4, lambda p: str(p.num_threads), attrgetter("num_threads"), True, True),
    Column("time", "TIME+", 9, lambda p: cpu_time(p.cpu_time_s), attrgetter("cpu_time_s"), True, True),
    Column("cgroup", "CGROUP", 18, attrgetter("cgroup"), attrgetter("cgroup"), min_table_width=110),
    Column("command", "COMMAND", 0, attrgetter("command"), attrgetter("command")),
)


def fit(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        return text[: width - 1] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


def matches(view: ProcessView, needle: str) -> bool:
    return needle in view.command.lower() or needle in view.user.lower()


def tree_order(processes: Iterable[ProcessView], key: Callable[[ProcessView], Any], reverse: bool) -> list[tuple[ProcessView, str]]:
    """Processes in parent-before-children order, each with its tree prefix.

    Siblings keep the table's sort order. A process whose parent is not in
    the list (pid 1, kthreadd, or a parent that just exited) is a root.
    """
    procs = list(processes)
    pids = {p.pid for p in procs}
    children: dict[int, list[ProcessView]] = {}
    roots = []
    for p in procs:
        if p.ppid in pids and p.ppid != p.pid:
            children.setdefault(p.ppid, []).append(p)
        else:
            roots.append(p)
    for siblings in children.values():
        siblings.sort(key=key, reverse=reverse)
    roots.sort(key=key, reverse=reverse)
    out: list[tuple[ProcessView, str]] = []
    # (process, prefix of its ancestors' lines, its own connector)
    stack: list[tuple[ProcessView, str, str]] = [(p, "", "") for p in reversed(roots)]
    while stack:
        proc, indent, connector = stack.pop()
        out.append((proc, indent + connector))
        kids = children.get(proc.pid, [])
        child_indent = indent + ("│  " if connector == "├─ " else "   " if connector else "")
        for i, kid in enumerate(reversed(kids)):
            stack.append((kid, child_indent, "└─ " if i == 0 else "├─ "))
    return out


class ProcessTable(ScrollView, can_focus=True):
    """Sortable, filterable process list with a cursor that follows its process."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(-1)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "open", "Open process", tooltip="Open the process screen of the selected process"),
        Binding("P", "sort('cpu')", "Sort CPU%", tooltip="Sort by CPU %; again reverses"),
        Binding("M", "sort('rss')", "Sort memory", tooltip="Sort by resident memory; again reverses"),
        Binding("N", "sort('pid')", "Sort PID", show=False, tooltip="Sort by PID; again reverses"),
        Binding("T", "sort('time')", "Sort time", show=False, tooltip="Sort by CPU time used; again reverses"),
        Binding("t", "toggle_tree", "Tree", tooltip="Show processes under their parents, or as a list"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "process-table--header",
        "process-table--sorted",
        "process-table--cursor",
        "process-table--running",
        "process-table--blocked",
        "process-table--busy",
        "process-table--tree",
    }

    DEFAULT_CSS = """
    ProcessTable {
        height: 1fr;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    ProcessTable > .process-table--header { background: $primary; color: $background; text-style: bold; }
    ProcessTable > .process-table--sorted { background: $accent; color: $background; text-style: bold; }
    ProcessTable > .process-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    ProcessTable > .process-table--running { color: $success; text-style: bold; }
    ProcessTable > .process-table--blocked { color: $error; text-style: bold; }
    ProcessTable > .process-table--busy { color: $warning; }
    ProcessTable > .process-table--tree { color: $foreground-muted; }
    """

    class Selected(Message):
        """The user asked to open a process (Enter)."""

        def __init__(self, pid: int) -> None:
            super().__init__()
            self.pid = pid

    class Reordered(Message):
        """Sort order, tree mode or filter changed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.processes: tuple[ProcessView, ...] = ()
        self.rows: list[tuple[ProcessView, str]] = []
        self.sort_key = "cpu"
        self.sort_descending = True
        self.filter_text = ""
        self.tree_mode = False
        self.cursor = 0
        self.cursor_pid: int | None = None
        self.columns: list[Column] = list(COLUMNS)

    # data

    def update_processes(self, processes: tuple[ProcessView, ...]) -> None:
        self.processes = processes
        self._rebuild()

    def _rebuild(self) -> None:
        column = self.column(self.sort_key)
        needle = self.filter_text.lower()
        if self.tree_mode:
            rows = tree_order(self.processes, column.sort_key, self.sort_descending)
            if needle:
                rows = [r for r in rows if matches(r[0], needle)]
        else:
            procs: Iterable[ProcessView] = self.processes
            if needle:
                procs = [p for p in procs if matches(p, needle)]
            # pid breaks ties so equal rows do not swap places every tick
            ordered = sorted(procs, key=attrgetter("pid"))
            ordered.sort(key=column.sort_key, reverse=self.sort_descending)
            rows = [(p, "") for p in ordered]
        self.rows = rows
        if self.cursor_pid is not None:
            for i, (p, _) in enumerate(rows):
                if p.pid == self.cursor_pid:
                    self.cursor = i
                    break
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        self.cursor_pid = rows[self.cursor][0].pid if rows else None
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        self._scroll_cursor_into_view()
        self.refresh()

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def show_column(self, column: Column) -> None:
        """Add a column another probe provides (syscalls/s, GPU memory ...), before COMMAND.

        Its text and sort key look the value up by pid, so the caller keeps
        them current by updating the mapping they read.
        """
        if any(c.key == column.key for c in self.columns):
            return
        self.columns.insert(len(self.columns) - 1, column)
        self.refresh()

    def hide_column(self, key: str) -> None:
        if key == "command" or not any(c.key == key for c in self.columns):
            return
        self.columns = [c for c in self.columns if c.key != key]
        if self.sort_key == key:
            self.sort_key, self.sort_descending = "cpu", True
            self._rebuild()
        self.refresh()

    @property
    def selected(self) -> ProcessView | None:
        return self.rows[self.cursor][0] if self.rows else None

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._rebuild()
        self.post_message(self.Reordered())

    # actions

    def action_sort(self, key: str) -> None:
        if key == self.sort_key:
            self.sort_descending = not self.sort_descending
        else:
            self.sort_key = key
            self.sort_descending = self.column(key).descending
        self._rebuild()
        self.post_message(self.Reordered())

    def action_toggle_tree(self) -> None:
        self.tree_mode = not self.tree_mode
        self._rebuild()
        self.post_message(self.Reordered())

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.size.height - 2))

    def action_edge(self, direction: int) -> None:
        self._move_to(0 if direction < 0 else len(self.rows) - 1)

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self.selected.pid))

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(index, len(self.rows) - 1))
        self.cursor_pid = self.rows[self.cursor][0].pid
        self._scroll_cursor_into_view()
        self.refresh()

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.size.height - 1)
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
        for column, width in self._layout(self.size.width):
            if start <= x < start + width + 1:
                return column.key
            start += width + 1
        return None

    # drawing

    def _layout(self, width: int) -> list[tuple[Column, int]]:
        shown = [c for c in self.columns if width >= c.min_table_width]
        fixed = sum(c.width + 1 for c in shown if c.width)
        return [(c, c.width or max(8, width - fixed)) for c in shown]

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        layout = self._layout(width)
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("process-table--header")
            sorted_style = self.get_component_rich_style("process-table--sorted")
            segments = []
            for column, w in layout:
                arrow = ("▼" if self.sort_descending else "▲") if column.key == self.sort_key else ""
                label = fit(column.label + arrow, w, column.right)
                segments.append(Segment(label, sorted_style if column.key == self.sort_key else header))
                segments.append(Segment(" ", header))
            return Strip(segments).crop_extend(0, width, header)
        index = self.scroll_offset.y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        view, prefix = self.rows[index]
        row_style = base
        if index == self.cursor:
            row_style = base + self.get_component_rich_style("process-table--cursor")
        segments = []
        for column, w in layout:
            text = column.text(view)
            style = row_style + self._cell_style(column.key, view)
            if column.key == "command" and prefix:
                tree_style = row_style + self.get_component_rich_style("process-table--tree")
                segments.append(Segment(prefix[:w], tree_style))
                w = max(0, w - len(prefix))
            segments.append(Segment(fit(text, w, column.right), style))
            segments.append(Segment(" ", row_style))
        return Strip(segments).crop_extend(0, width, row_style)

    def _cell_style(self, key: str, view: ProcessView) -> Style:
        if key == "state":
            if view.state == "R":
                return self.get_component_rich_style("process-table--running")
            if view.state == "D":
                return self.get_component_rich_style("process-table--blocked")
        elif key == "cpu" and cpu_sort_key(view) >= 50:
            return self.get_component_rich_style("process-table--busy")
        return Style()
