"""The drill-down's syscalls: the process's syscalls, and the highlighted one's errors and latency.

Left, each syscall the process made in the interval (rate, errors, top
errno, exact mean latency, and the log2 buckets its p50 and p99 lie in).
Right, for the highlighted syscall, its errors by errno and its latency
histogram (log2 buckets, as the kernel counted them).
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from probes.contract import ProbeSpec
from probes.sources.syscalls import SYSCALLS, SyscallRate, SyscallsView

from .format import human_duration_ns, human_rate, latency_bucket
from .histogram import BUCKET_LABEL_WIDTH, COUNT_WIDTH, histogram_lines
from .line_table import LineTable
from .pane import DetailPane, Lines
from .syscalls_pane import SYSCALL_COLUMNS, tracing_subtitle

# errnos listed for the highlighted syscall; the rest are summed on one line
MAX_ERRNOS = 8
# one histogram, not two side by side: its bars can be longer
MAX_DETAIL_BAR_WIDTH = 32


def syscalls_of(view: SyscallsView, pid: int) -> SyscallsView:
    """The system-wide view narrowed to one process."""
    mine = tuple(p for p in view.processes if p.pid == pid)
    if not mine:
        return dataclasses.replace(view, processes=(), top_syscalls=(), calls_per_s=0.0, errors_per_s=0.0, target_pid=pid)
    total = mine[0].total
    return dataclasses.replace(
        view, processes=mine, top_syscalls=mine[0].syscalls,
        calls_per_s=total.calls_per_s, errors_per_s=total.errors_per_s, target_pid=pid,
    )


def detail_lines(rate: SyscallRate, width: int) -> str:
    """One syscall's figures, its errors by errno and its latency histogram, as markup."""
    lines = [
        f"[b $accent]{escape(rate.name)}[/] {human_rate(rate.calls_per_s)}/s  mean {human_duration_ns(rate.mean_latency_ns)}"
        f"  p50 {latency_bucket(rate.p50_latency_bucket)}  p99 {latency_bucket(rate.p99_latency_bucket)}",
    ]
    if rate.errnos:
        lines.append(f"[b]errors[/] {human_rate(rate.errors_per_s)}/s")
        lines.extend(f"  {human_rate(per_s):>6}/s {escape(errno)}" for errno, per_s in rate.errnos[:MAX_ERRNOS])
        rest = sum(per_s for _, per_s in rate.errnos[MAX_ERRNOS:])
        if rest:
            lines.append(f"  {human_rate(rest):>6}/s [$foreground-muted]other errnos[/]")
    else:
        lines.append("[$foreground-muted]no errors[/]")
    lines.append("")
    timed = sum(rate.latency_hist)
    lines.append(
        histogram_lines(
            [("calls/s", rate.latency_hist, "$accent")], width, "took ≥", "no calls timed",
            max_bar_width=MAX_DETAIL_BAR_WIDTH, rate_scale=rate.calls_per_s / timed if timed else None,
        )
    )
    return "\n".join(lines)


class DrillSyscallsPane(DetailPane):
    """The drill-down process's syscalls, narrowed from the "syscalls" probe's view."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = SYSCALLS

    DEFAULT_CSS = """
    DrillSyscallsPane { height: 1fr; }
    DrillSyscallsPane > Horizontal { height: 1fr; }
    DrillSyscallsPane #drill-syscalls { width: 3fr; }
    DrillSyscallsPane #drill-syscall-detail { width: 2fr; padding: 0 1; }
    """

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        with Horizontal():
            yield LineTable(SYSCALL_COLUMNS, "calls", attrgetter("name"), id="drill-syscalls")
            with VerticalScroll(id="drill-syscall-detail"):
                yield Lines(id="syscall-detail")

    def show_view(self, view: SyscallsView) -> None:
        super().show_view(syscalls_of(view, self.pid))

    def draw(self, view: SyscallsView) -> None:
        self.border_title = (
            f"Syscalls of {self.pid}: {human_rate(view.calls_per_s)}/s  errors {human_rate(view.errors_per_s)}/s"
        )
        self.border_subtitle = tracing_subtitle(view)
        table = self.query_one("#drill-syscalls", LineTable)
        table.set_rows([(r, "") for r in table.ordered(view.top_syscalls)])
        self.draw_detail()

    def draw_detail(self) -> None:
        selected = self.query_one("#drill-syscalls", LineTable).selected
        detail = self.query_one("#syscall-detail", Lines)
        if selected is None:
            detail.set_text("[$foreground-muted]no syscalls in this interval[/]")
            return
        # Before the first layout the width is not known yet: a guess, redrawn on resize.
        detail.set_text(detail_lines(selected, detail.content_size.width or MAX_DETAIL_BAR_WIDTH + BUCKET_LABEL_WIDTH + COUNT_WIDTH + 1))

