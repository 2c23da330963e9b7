"""The process table: every process, sorted, filtered or as a tree.

A DataTable rebuilt or re-sorted every second costs several percent of a core
at a few thousand processes; this is a LineTable, which keeps the sorted list
as plain Python data and renders just the visible lines, so its cost does not
grow with the number of processes off screen.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, ClassVar, Iterable

from rich.style import Style
from textual.binding import Binding
from textual.message import Message

from probes.views import ProcessView, cpu_sort_key

from .format import cpu_time, human_bytes, percent
from .line_table import Column, LineTable


COLUMNS: tuple[Column[ProcessView], ...] = (
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


class ProcessTable(LineTable[ProcessView]):
    """Sortable, filterable process list with a cursor that follows its process."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("enter", "open", "Open process", tooltip="Open the process screen of the selected process"),
        Binding("P", "sort('cpu')", "Sort CPU%", tooltip="Sort by CPU %; again reverses"),
        Binding("M", "sort('rss')", "Sort memory", tooltip="Sort by resident memory; again reverses"),
        Binding("N", "sort('pid')", "Sort PID", show=False, tooltip="Sort by PID; again reverses"),
        Binding("T", "sort('time')", "Sort time", show=False, tooltip="Sort by CPU time used; again reverses"),
        Binding("t", "toggle_tree", "Tree", tooltip="Show processes under their parents, or as a list"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "process-table--running",
        "process-table--blocked",
        "process-table--busy",
        "process-table--tagged",
    }

    DEFAULT_CSS = """
    ProcessTable > .process-table--running { color: $success; text-style: bold; }
    ProcessTable > .process-table--blocked { color: $error; text-style: bold; }
    ProcessTable > .process-table--busy { color: $warning; }
    ProcessTable > .process-table--tagged { color: $warning; text-style: bold underline; }
    """

    class Selected(Message):
        """The user asked to open a process (Enter), from any pane."""

        def __init__(self, pid: int) -> None:
            super().__init__()
            self.pid = pid

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COLUMNS, "cpu", attrgetter("pid"), **kwargs)
        self.processes: tuple[ProcessView, ...] = ()
        self.filter_text = ""
        self.tree_mode = False
        # pid -> the process as it was tagged: a signal goes to that process
        # only (its start time), never to a later one with the pid
        self.tagged: dict[int, ProcessView] = {}

    def update_processes(self, processes: tuple[ProcessView, ...]) -> None:
        self.processes = processes
        if self.tagged:
            # A tagged process that exited is no longer tagged, whatever has its pid now.
            alive = {(p.pid, p.start_time_ns) for p in processes}
            self.tagged = {pid: p for pid, p in self.tagged.items() if (pid, p.start_time_ns) in alive}
        self.resort()

    def toggle_tag(self) -> None:
        """Tag the selected process, or untag it, and move on to the next row (as htop's space)."""
        view = self.selected
        if view is None:
            return
        if self.tagged.pop(view.pid, None) is None:
            self.tagged[view.pid] = view
        self.action_cursor(1)
        self.refresh()

    def untag_all(self) -> None:
        self.tagged.clear()
        self.refresh()

    def row_component(self, view: ProcessView) -> str:
        return "process-table--tagged" if view.pid in self.tagged else ""

    def resort(self) -> None:
        needle = self.filter_text.lower()
        if self.tree_mode:
            column = self.column(self.sort_key)
            rows = tree_order(self.processes, column.sort_key, self.sort_descending)
            if needle:
                rows = [r for r in rows if matches(r[0], needle)]
        else:
            procs: Iterable[ProcessView] = self.processes
            if needle:
                procs = [p for p in procs if matches(p, needle)]
            rows = [(p, "") for p in self.ordered(procs, tie_break=attrgetter("pid"))]
        self.set_rows(rows)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.reordered()
        self.post_message(self.Reordered())

    def action_toggle_tree(self) -> None:
        self.tree_mode = not self.tree_mode
        self.reordered()
        self.post_message(self.Reordered())

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self.selected.pid))

    def cell_style(self, key: str, view: ProcessView) -> Style:
        if key == "state":
            if view.state == "R":
                return self.style("process-table--running")
            if view.state == "D":
                return self.style("process-table--blocked")
        elif key == "cpu" and cpu_sort_key(view) >= 50:
            return self.style("process-table--busy")
        return Style()
