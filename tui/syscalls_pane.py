"""The syscalls pane: processes by syscall rate, and the system's top syscalls."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, ClassVar

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from probes.syscalls import ProcessSyscalls, SyscallRate, SyscallsView

from .format import MISSING, human_duration_ns, human_rate
from .line_table import Column, LineTable
from .pane import MessagePane
from .process_table import ProcessTable

# A busy box has thousands of (process, syscall) pairs; a pane shows a few
# dozen, and a few hundred keep scrolling useful without sorting them all.
MAX_ROWS = 300


def _none_low(value: float | None) -> float:
    return -1.0 if value is None else value


def rate_columns(of: Callable[[Any], SyscallRate]) -> list[Column[Any]]:
    """CALLS/s ... P99 of the SyscallRate `of` picks from a row."""
    return [
        Column("calls", "CALLS/s", 8, lambda r: human_rate(of(r).calls_per_s), lambda r: of(r).calls_per_s, True, True),
        Column("errors", "ERR/s", 6, lambda r: human_rate(of(r).errors_per_s), lambda r: of(r).errors_per_s, True, True),
        Column("errno", "ERRNO", 10, lambda r: of(r).top_errno or MISSING, lambda r: of(r).top_errno or ""),
        Column("p50", "P50", 7, lambda r: human_duration_ns(of(r).p50_latency_ns), lambda r: _none_low(of(r).p50_latency_ns), True, True),
        Column("p99", "P99", 7, lambda r: human_duration_ns(of(r).p99_latency_ns), lambda r: _none_low(of(r).p99_latency_ns), True, True),
    ]


def top_names(process: ProcessSyscalls, n: int = 3) -> str:
    return ", ".join(f"{r.name} {human_rate(r.calls_per_s)}" for r in process.syscalls[:n])


PROCESS_COLUMNS: list[Column[ProcessSyscalls]] = [
    Column("pid", "PID", 7, lambda p: str(p.pid), attrgetter("pid"), right=True),
    Column("comm", "COMM", 15, attrgetter("comm"), attrgetter("comm")),
    *rate_columns(attrgetter("total")),
    Column("top", "TOP SYSCALLS", 0, top_names, top_names),
]

SYSCALL_COLUMNS: list[Column[SyscallRate]] = [
    Column("name", "SYSCALL", 16, attrgetter("name"), attrgetter("name")),
    *rate_columns(lambda r: r),
]


def tracing_subtitle(view: SyscallsView) -> str:
    """The probe's estimated cost, and what it lost, as markup."""
    lost = sum(view.lost.values())
    subtitle = f"tracing ≈{view.overhead_cpu_percent:.1f}% of a CPU at {human_rate(view.events_per_s)} events/s"
    if lost:
        subtitle += f"  [$error]lost {lost}[/]"
    return subtitle


class SyscallsPane(MessagePane):
    """Fed by the "syscalls" eBPF probe."""

    PROBE: ClassVar[str] = "syscalls"

    DEFAULT_CSS = """
    SyscallsPane { height: 1fr; }
    SyscallsPane > Horizontal { height: 1fr; }
    SyscallsPane #sys-processes { width: 3fr; }
    SyscallsPane #sys-top { width: 2fr; margin-left: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        with Horizontal():
            yield LineTable(PROCESS_COLUMNS, "calls", attrgetter("pid"), id="sys-processes")
            yield LineTable(SYSCALL_COLUMNS, "calls", attrgetter("name"), id="sys-top")

    def on_mount(self) -> None:
        self.border_title = "Syscalls"

    def draw(self, view: SyscallsView) -> None:
        self.border_title = (
            f"Syscalls {human_rate(view.calls_per_s)}/s  errors {human_rate(view.errors_per_s)}/s"
        )
        self.border_subtitle = tracing_subtitle(view)
        for table_id, items in (("#sys-processes", view.processes), ("#sys-top", view.top_syscalls)):
            table = self.query_one(table_id, LineTable)
            table.set_rows([(item, "") for item in table.ordered(items)[:MAX_ROWS]])

    def on_line_table_opened(self, event: LineTable.Opened) -> None:
        # Enter on a process row opens its process screen, as in the process table.
        event.stop()
        if event.table.id == "sys-processes":
            self.post_message(ProcessTable.Selected(event.item.pid))
