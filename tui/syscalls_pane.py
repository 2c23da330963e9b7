"""The syscalls pane: processes by syscall rate, and the system's top syscalls.

MEAN is exact (the calls' total time / their count); P50 and P99 are the
log2 buckets the percentiles lie in ("8.4-17ms"), all a log2 histogram can
say of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from probes.contract import ProbeSpec
from probes.model.histograms import LatencyBucket
from probes.sources.syscalls import SYSCALLS, ProcessSyscalls, SyscallRate, SyscallsView

from .format import MISSING, human_duration_ns, human_rate, latency_bucket
from .line_table import Column, LineTable
from .pane import MessagePane
from .process_table import ProcessTable

# A busy box has thousands of (process, syscall) pairs; a pane shows a few
# dozen, and a few hundred keep scrolling useful without sorting them all.
MAX_ROWS = 300


def _none_low(value: float | None) -> float:
    return -1.0 if value is None else value


def _bucket_low(bucket: LatencyBucket | None) -> float:
    return -1.0 if bucket is None else bucket.low_ns


def rate_columns(of: Callable[[Any], SyscallRate], p50_min_table_width: int) -> list[Column[Any]]:
    """CALLS/s ... P99 of the SyscallRate `of` picks from a row.

    P50 only in tables at least `p50_min_table_width` wide: MEAN and P99 say
    more in less room.
    """
    return [
        Column("calls", "CALLS/s", 8, lambda r: human_rate(of(r).calls_per_s), lambda r: of(r).calls_per_s, True, True),
        Column("errors", "ERR/s", 6, lambda r: human_rate(of(r).errors_per_s), lambda r: of(r).errors_per_s, True, True),
        Column("errno", "ERRNO", 10, lambda r: of(r).top_errno or MISSING, lambda r: of(r).top_errno or ""),
        Column("mean", "MEAN", 7, lambda r: human_duration_ns(of(r).mean_latency_ns), lambda r: _none_low(of(r).mean_latency_ns), True, True),
        Column(
            "p50", "P50", 9, lambda r: latency_bucket(of(r).p50_latency_bucket), lambda r: _bucket_low(of(r).p50_latency_bucket),
            True, True, min_table_width=p50_min_table_width,
        ),
        Column("p99", "P99", 9, lambda r: latency_bucket(of(r).p99_latency_bucket), lambda r: _bucket_low(of(r).p99_latency_bucket), True, True),
    ]


def top_names(process: ProcessSyscalls, n: int = 3) -> str:
    return ", ".join(f"{r.name} {human_rate(r.calls_per_s)}" for r in process.syscalls[:n])


def narrow_drops(columns: list[Column[Any]], widths: dict[str, int]) -> list[Column[Any]]:
    """The columns, those named in `widths` left out of tables narrower than that."""
    return [dataclasses.replace(c, min_table_width=widths[c.key]) if c.key in widths else c for c in columns]


PROCESS_COLUMNS: list[Column[ProcessSyscalls]] = [
    Column("pid", "PID", 7, lambda p: str(p.pid), attrgetter("pid"), right=True),
    Column("comm", "COMM", 15, attrgetter("comm"), attrgetter("comm")),
    # A process's p50 over all its syscalls mixes fast and slow calls: shown
    # only where the table is wide enough to leave TOP SYSCALLS its room;
    # at 120 columns ERRNO and MEAN step aside too (TOP SYSCALLS was "op").
    *narrow_drops(rate_columns(attrgetter("total"), 130), {"errno": 90, "mean": 80}),
    Column("top", "TOP SYSCALLS", 0, top_names, top_names),
]

SYSCALL_COLUMNS: list[Column[SyscallRate]] = [
    Column("name", "SYSCALL", 16, attrgetter("name"), attrgetter("name")),
    # narrow (120 columns), P99 keeps its room rather than being cut off
    *narrow_drops(rate_columns(lambda r: r, 72), {"errno": 60, "mean": 55}),
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

    PROBE: ClassVar[ProbeSpec[Any, Any]] = SYSCALLS

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
