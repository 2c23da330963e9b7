"""The process table: every process, sorted, filtered or as a tree.

A DataTable rebuilt or re-sorted every second costs several percent of a core
at a few thousand processes; this is a LineTable, which keeps the sorted list
as plain Python data and renders just the visible lines, so its cost does not
grow with the number of processes off screen.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import replace
from operator import attrgetter
from typing import Any, ClassVar

from rich.style import Style
from textual.binding import Binding
from textual.message import Message

from probes.sources.processes import ProcessView, cpu_sort_key

from .format import cpu_time, human_bytes, percent
from .line_table import PLAIN, Column, LineTable


def program_first(view: ProcessView) -> str:
    """The command with its program's path left off: "/usr/lib/postgresql/15/bin/postgres -D x" -> "postgres -D x".

    Where the column is narrow (80 columns), two programs under one long
    directory otherwise both read as that directory.
    """
    program, space, args = view.command.partition(" ")
    return program.rsplit("/", 1)[-1] + space + args if "/" in program else view.command


COLUMNS: tuple[Column[ProcessView], ...] = (
    Column("pid", "PID", 7, lambda p: str(p.pid), attrgetter("pid"), right=True),
    Column("user", "USER", 9, attrgetter("user"), attrgetter("user")),
    Column("state", "S", 1, attrgetter("state"), attrgetter("state")),
    Column("cpu", "CPU%", 6, lambda p: percent(p.cpu_percent), cpu_sort_key, True, True),
    Column("rss", "RSS", 6, lambda p: human_bytes(p.rss_bytes), attrgetter("rss_bytes"), True, True),
    Column("threads", "THR", 4, lambda p: str(p.num_threads), attrgetter("num_threads"), True, True, min_table_width=90),
    Column("time", "TIME+", 9, lambda p: cpu_time(p.cpu_time_s), attrgetter("cpu_time_s"), True, True),
    Column("cgroup", "CGROUP", 18, attrgetter("cgroup"), attrgetter("cgroup"), min_table_width=110, hide_when_same=True),
    Column("command", "COMMAND", 0, attrgetter("command"), attrgetter("command"), narrow=program_first),
)


def matches(view: ProcessView, needle: str) -> bool:
    return needle in view.command.lower() or needle in view.user.lower()


def tree_order(
    processes: Iterable[ProcessView], key: Callable[[ProcessView], Any], reverse: bool, collapsed: Container[int] = (),
) -> list[tuple[ProcessView, str]]:
    """Processes in parent-before-children order, each with its tree prefix.

    Siblings keep the table's sort order. A process whose parent is not in
    the list (pid 1, kthreadd, or a parent that just exited) is a root. The
    descendants of a pid in `collapsed` are left out, and its prefix ends in
    "+" (htop's folded branch).
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
        kids = children.get(proc.pid, [])
        if kids and proc.pid in collapsed:
            out.append((proc, indent + connector + "+ "))
            continue
        out.append((proc, indent + connector))
        child_indent = indent + ("│  " if connector == "├─ " else "   " if connector else "")
        for i, kid in enumerate(reversed(kids)):
            stack.append((kid, child_indent, "└─ " if i == 0 else "├─ "))
    return out


class ProcessTable(LineTable[ProcessView]):
    """Sortable, filterable process list (and threads, with H) with a cursor that follows its process."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("enter", "open", "Open process", tooltip="Open the process screen of the selected process"),
        Binding("P", "sort('cpu')", "Sort CPU%", tooltip="Sort by CPU %; again reverses"),
        Binding("M", "sort('rss')", "Sort memory", tooltip="Sort by resident memory; again reverses"),
        Binding("N", "sort('pid')", "Sort PID", show=False, tooltip="Sort by PID; again reverses"),
        Binding("T", "sort('time')", "Sort time", show=False, tooltip="Sort by CPU time used; again reverses"),
        Binding("B", "sort('io_write')", "Sort disk writes", show=False,
                tooltip="Sort by bytes/s written to storage (DISKW/s; F6 for DISKR/s and IOD%); again reverses. '-': a process orac may not read (another user's: run as root)"),
        Binding("t,f5", "toggle_tree", "Tree", tooltip="Show processes under their parents, or as a list"),
        Binding("minus", "fold(True)", "Collapse", show=False, tooltip="In the tree: hide the selected process's children"),
        Binding("plus", "fold(False)", "Expand", show=False, tooltip="In the tree: show the selected process's children again"),
        Binding("F", "follow", "Follow", show=False, tooltip="Keep the cursor on the selected process through sorts and filters; again stops"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "process-table--running",
        "process-table--blocked",
        "process-table--busy",
        "process-table--tagged",
        "process-table--thread",
        "process-table--throttled",
        "process-table--killed",
    }

    DEFAULT_CSS = """
    ProcessTable > .process-table--running { color: $success; text-style: bold; }
    ProcessTable > .process-table--blocked { color: $error; text-style: bold; }
    ProcessTable > .process-table--busy { color: $warning; }
    ProcessTable > .process-table--throttled { color: $warning; text-style: bold; }
    ProcessTable > .process-table--tagged { color: $warning; text-style: bold underline; }
    ProcessTable > .process-table--thread { color: $foreground-muted; }
    ProcessTable > .process-table--killed { color: $error; text-style: bold; }
    """

    class Selected(Message):
        """The user asked to open a process (Enter), from any pane."""

        def __init__(self, pid: int) -> None:
            super().__init__()
            self.pid = pid

    def __init__(self, **kwargs: Any) -> None:
        columns = tuple(replace(c, text=self._cgroup_text) if c.key == "cgroup" else c for c in COLUMNS)
        super().__init__(columns, "cpu", attrgetter("pid"), **kwargs)
        # cgroups (as the column names them) that sat throttled at their CPU
        # quota in the last interval: their processes are held there, not idle
        self.throttled_cgroups: set[str] = set()
        self.processes: tuple[ProcessView, ...] = ()
        self.threads: tuple[ProcessView, ...] = ()
        # threads among the processes (htop's H), under them in the tree
        self.show_threads = False
        self.filter_text = ""
        # only this user's processes (u); None: everyone's
        self.user_filter: str | None = None
        self.tree_mode = False
        # pids whose children the tree leaves out
        self.collapsed: set[int] = set()
        # pid -> the process as it was tagged: a signal goes to that process
        # only (its start time), never to a later one with the pid
        self.tagged: dict[int, ProcessView] = {}

    def _cgroup_text(self, view: ProcessView) -> str:
        return f"@quota {view.cgroup}" if view.cgroup in self.throttled_cgroups else view.cgroup

    def mark_throttled(self, cgroups: set[str]) -> None:
        if cgroups != self.throttled_cgroups:
            self.throttled_cgroups = cgroups
            self.refresh()

    def update_processes(self, processes: tuple[ProcessView, ...], threads: tuple[ProcessView, ...] = ()) -> None:
        """This tick's processes, and their threads but the first of each when they were read."""
        self.processes = processes
        self.threads = threads
        if self.tagged:
            # A tagged process that exited is no longer tagged, whatever has its pid now.
            alive = {(p.pid, p.start_time_ns) for rows in (processes, threads) for p in rows}
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
        if view.state == "X":
            return "process-table--killed"
        if view.pid in self.tagged:
            return "process-table--tagged"
        return "process-table--thread" if view.thread_of is not None else ""

    def resort(self) -> None:
        needle = self.filter_text.lower()
        user = self.user_filter

        def shown(p: ProcessView) -> bool:
            return (not needle or matches(p, needle)) and (user is None or p.user == user)

        everyone: Iterable[ProcessView] = self.processes
        if self.show_threads and self.threads:
            # A thread's ppid is its process: the tree puts it there.
            everyone = (*self.processes, *self.threads)
        if self.tree_mode:
            column = self.column(self.sort_key)
            rows = tree_order(everyone, column.sort_key, self.sort_descending, self.collapsed)
            if needle or user is not None:
                rows = [r for r in rows if shown(r[0])]
        else:
            procs = everyone
            if needle or user is not None:
                procs = [p for p in procs if shown(p)]
            rows = [(p, "") for p in self.ordered(procs, tie_break=attrgetter("pid"))]
            # An OOM kill's victim (state X, see ProcessPane) leads, whatever the sort: it is the news.
            rows.sort(key=lambda row: row[0].state != "X")
        self.set_rows(rows)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.reordered()
        self.post_message(self.Reordered())

    def set_user(self, user: str | None) -> None:
        self.user_filter = user
        self.reordered()
        self.post_message(self.Reordered())

    def search(self, text: str, after: bool = False) -> bool:
        """Move the cursor to the first row from the cursor on (`after`: after it) whose command or user has `text`, wrapping round."""
        needle = text.lower()
        if not needle or not self.rows:
            return False
        count = len(self.rows)
        start = self.cursor + 1 if after else self.cursor
        for i in range(count):
            index = (start + i) % count
            if matches(self.rows[index][0], needle):
                self._move_to(index)
                return True
        return False

    def action_toggle_tree(self) -> None:
        self.tree_mode = not self.tree_mode
        self.reordered()
        self.post_message(self.Reordered())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "fold":
            # Only in the tree; in a replay's list, - and + change the speed.
            return self.tree_mode
        return True

    def action_fold(self, collapse: bool) -> None:
        view = self.selected
        if view is None:
            return
        if collapse:
            self.collapsed.add(view.pid)
        else:
            self.collapsed.discard(view.pid)
        self.resort()

    def action_follow(self) -> None:
        self.sticky = not self.sticky and self.selected is not None
        if self.sticky:
            self.following = True
        self.post_message(self.Reordered())

    def action_open(self) -> None:
        view = self.selected
        if view is not None:
            # A thread's row opens its process.
            self.post_message(self.Selected(view.thread_of if view.thread_of is not None else view.pid))

    def cell_style(self, key: str, view: ProcessView) -> Style:
        if key == "state":
            if view.state == "R":
                return self.style("process-table--running")
            if view.state == "D":
                return self.style("process-table--blocked")
        elif key == "cpu" and cpu_sort_key(view) >= 50:
            return self.style("process-table--busy")
        elif key == "cgroup" and view.cgroup in self.throttled_cgroups:
            return self.style("process-table--throttled")
        return PLAIN
