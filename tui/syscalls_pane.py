"""The syscalls pane: processes by syscall rate, and the system's top syscalls."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Static

from probes.syscalls import ProcessSyscalls, SyscallRate, SyscallsView

from .format import MISSING, human_duration_ns, human_rate
from .pane import Pane
from .process_table import ProcessTable

# Rows drawn per table: a pane this size shows a few dozen at most, and the
# rest would only cost rebuild time every tick.
MAX_ROWS = 50

RateKey = Callable[[SyscallRate], Any]


def _none_low(value: float | None) -> float:
    return -1.0 if value is None else value


# column label -> (sort key on a SyscallRate, largest first)
RATE_SORTS: dict[str, tuple[RateKey, bool]] = {
    "SYSCALL": (lambda r: r.name, False),
    "CALLS/s": (lambda r: r.calls_per_s, True),
    "ERR/s": (lambda r: r.errors_per_s, True),
    "ERRNO": (lambda r: r.top_errno or "", False),
    "P50": (lambda r: _none_low(r.p50_latency_ns), True),
    "P99": (lambda r: _none_low(r.p99_latency_ns), True),
}
PROCESS_SORTS: dict[str, tuple[Callable[[ProcessSyscalls], Any], bool]] = {
    "PID": (lambda p: p.pid, False),
    "COMM": (lambda p: p.comm, False),
    **{label: ((lambda p, key=key: key(p.total)), desc) for label, (key, desc) in RATE_SORTS.items() if label != "SYSCALL"},
}


def right(text: str) -> Text:
    return Text(text, justify="right")


def rate_cells(rate: SyscallRate) -> list[str | Text]:
    return [
        right(human_rate(rate.calls_per_s)),
        right(human_rate(rate.errors_per_s)),
        rate.top_errno or MISSING,
        right(human_duration_ns(rate.p50_latency_ns)),
        right(human_duration_ns(rate.p99_latency_ns)),
    ]


def top_names(process: ProcessSyscalls, n: int = 3) -> str:
    return ", ".join(f"{r.name} {human_rate(r.calls_per_s)}" for r in process.syscalls[:n])


class SortedTable(DataTable[Any]):
    """A DataTable that keeps a sort order and its cursor's row across refills."""

    class Resorted(Message):
        """A header was clicked: the owner redraws in the new order."""

    def __init__(self, sorts: dict[str, tuple[Callable[[Any], Any], bool]], default: str, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sorts = sorts
        self.sort_label = default
        self.sort_descending = sorts[default][1]
        # what is on screen, to update only what changed
        self.shown_keys: list[str] = []
        self.shown_cells: list[list[str | Text]] = []

    def order(self, items: Sequence[Any]) -> list[Any]:
        key, _ = self.sorts[self.sort_label]
        return sorted(items, key=key, reverse=self.sort_descending)[:MAX_ROWS]

    def fill(self, rows: list[tuple[str, list[str | Text]]]) -> None:
        """Replace the rows, keeping the cursor on the same key where it still exists.

        When the same rows come in the same order (most ticks on a steady
        box), only the cells that changed are updated: rebuilding a DataTable
        costs several milliseconds a tick.
        """
        keys = [key for key, _ in rows]
        if keys == self.shown_keys:
            for row, ((_, cells), old) in enumerate(zip(rows, self.shown_cells)):
                for column, (cell, before) in enumerate(zip(cells, old)):
                    if cell != before:
                        self.update_cell_at(Coordinate(row, column), cell)
            self.shown_cells = [cells for _, cells in rows]
            return
        self.shown_keys = keys
        self.shown_cells = [cells for _, cells in rows]
        current = None
        if self.row_count and self.cursor_row < self.row_count:
            current = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        keys = [key for key, _ in rows]
        if current in keys:
            self.move_cursor(row=keys.index(current), animate=False)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        label = str(event.label).rstrip("▲▼")
        if label not in self.sorts:
            return
        if label == self.sort_label:
            self.sort_descending = not self.sort_descending
        else:
            self.sort_label = label
            self.sort_descending = self.sorts[label][1]
        self.post_message(self.Resorted())


class SyscallsPane(Pane):
    """Fed by the "syscalls" eBPF probe."""

    PROBE: ClassVar[str] = "syscalls"

    DEFAULT_CSS = """
    SyscallsPane { height: 1fr; }
    SyscallsPane.-unavailable { height: auto; }
    SyscallsPane > Horizontal { height: 1fr; }
    SyscallsPane #sys-processes { width: 3fr; }
    SyscallsPane #sys-top { width: 2fr; }
    SyscallsPane > Static { display: none; padding: 0 1; color: $error; }
    SyscallsPane.-unavailable > Static { display: block; }
    SyscallsPane.-unavailable > Horizontal { display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="sys-unavailable")
        with Horizontal():
            yield SortedTable(PROCESS_SORTS, "CALLS/s", id="sys-processes")
            yield SortedTable(RATE_SORTS, "CALLS/s", id="sys-top")

    def on_mount(self) -> None:
        self.border_title = "Syscalls"
        self.query_one("#sys-processes", SortedTable).add_columns(
            "PID", "COMM", "CALLS/s", "ERR/s", "ERRNO", "P50", "P99", "TOP SYSCALLS"
        )
        self.query_one("#sys-top", SortedTable).add_columns("SYSCALL", "CALLS/s", "ERR/s", "ERRNO", "P50", "P99")

    def show_view(self, view: SyscallsView) -> None:
        self.view = view
        self.unavailable = None
        self.remove_class("-unavailable")
        self._draw()

    def show_unavailable(self, reason: str, remedy: str) -> None:
        super().show_unavailable(reason, remedy)
        self.add_class("-unavailable")
        self.border_subtitle = ""
        self.query_one("#sys-unavailable", Static).update(
            f"{reason}" + (f"\nto fix: {remedy}" if remedy else "")
        )

    def on_sorted_table_resorted(self, event: SortedTable.Resorted) -> None:
        event.stop()
        if self.view is not None:
            self._draw()

    def _draw(self) -> None:
        view: SyscallsView = self.view
        self.border_title = (
            f"Syscalls {human_rate(view.calls_per_s)}/s  errors {human_rate(view.errors_per_s)}/s"
        )
        lost = sum(view.lost.values())
        subtitle = f"tracing ≈{view.overhead_cpu_percent:.1f}% of a CPU at {human_rate(view.events_per_s)} events/s"
        if lost:
            subtitle += f"  [$error]lost {lost}[/]"
        self.border_subtitle = subtitle
        processes = self.query_one("#sys-processes", SortedTable)
        processes.fill(
            [
                (str(p.pid), [right(str(p.pid)), p.comm, *rate_cells(p.total), top_names(p)])
                for p in processes.order(view.processes)
            ]
        )
        top = self.query_one("#sys-top", SortedTable)
        top.fill([(r.name, [r.name, *rate_cells(r)]) for r in top.order(view.top_syscalls)])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # Enter on a process row opens its process screen, as in the process table.
        event.stop()
        if event.data_table.id == "sys-processes" and event.row_key.value is not None:
            self.post_message(ProcessTable.Selected(int(event.row_key.value)))
