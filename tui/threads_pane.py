"""The drill-down's threads: each thread's CPU, run-queue wait, off-CPU time and syscalls.

The rows come from the "threads" probe (/proc), a Python thread's name
(threading's) beside the kernel's where the "python" probe read one; the off-CPU and syscall
columns from the eBPF probes, which count the drill-down's process thread by
thread while it is open. Where those cannot run, or what is shown was
recorded without them, their cells say "-" (not measured) and the pane's
subtitle says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from operator import attrgetter
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.widgets import Static

from probes.contract import ProbeSpec, Unavailable
from probes.model.joins import ThreadRow, focused, join_threads
from probes.sources.offcpu import OFFCPU
from probes.sources.profile import PROFILE
from probes.sources.python_stacks import PYTHON_STACKS
from probes.sources.syscalls import SYSCALLS
from probes.sources.threads import THREADS, ThreadsView

from .format import MISSING, human_duration_ns, human_rate, percent
from .line_table import Column, LineTable
from .pane import MessagePane


def _low(value: float | None) -> float:
    return -1.0 if value is None else value


def _seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _number(name: str, label: str, width: int, text: Any) -> Column[ThreadRow]:
    get = attrgetter(name)
    return Column(name, label, width, lambda r: text(get(r)), lambda r: _low(get(r)), True, True)


THREAD_COLUMNS: list[Column[ThreadRow]] = [
    Column("tid", "TID", 7, lambda r: str(r.tid), attrgetter("tid"), right=True),
    Column("state", "S", 1, attrgetter("state"), attrgetter("state")),
    Column("cpu", "CPU", 3, lambda r: MISSING if r.last_cpu is None else str(r.last_cpu), lambda r: _low(r.last_cpu), True),
    _number("cpu_percent", "CPU%", 6, percent),
    _number("run_delay_percent", "RQ%", 5, percent),
    _number("off_cpu_s_per_s", "OFFCPU", 6, _seconds),
    _number("off_cpu_d_s_per_s", "OFF-D", 6, _seconds),
    _number("syscalls_per_s", "SYSC/s", 7, human_rate),
    _number("errors_per_s", "ERR/s", 6, human_rate),
    _number("syscall_mean_ns", "AVG-LAT", 7, human_duration_ns),
    Column("name", "THREAD", 0, attrgetter("name"), attrgetter("name")),
]


def _missing_reason(
    probe: ProbeSpec[Any, Any], view: Any, pid: int, unavailable: Mapping[str, Unavailable]
) -> str | None:
    """Why a probe's per-thread numbers are not in the table, or None when they are."""
    if focused(view, pid) is not None:
        return None
    if probe.name in unavailable:
        return unavailable[probe.name].reason
    if view is None:
        return "not in what is shown"
    return "not counted per thread for this process in what is shown"


class ThreadsPane(MessagePane):
    """Fed by the "threads" probe, joined with the eBPF probes' per-thread counts."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = THREADS
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (OFFCPU, SYSCALLS, PROFILE, PYTHON_STACKS)

    DEFAULT_CSS = """
    ThreadsPane { height: 1fr; }
    """

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        # the title's thread counts, kept when the process exits
        self.counts = "Threads"
        # tid -> threading's name, kept: a py-spy dump names them now and then
        self.python_names: dict[int, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        yield LineTable(THREAD_COLUMNS, "cpu_percent", attrgetter("tid"), id="threads")

    def show_view(self, view: ThreadsView) -> None:
        if view.pid != self.pid:
            # Another process's threads (a replay of another drill-down).
            self.show_unavailable(f"no threads of process {self.pid} in what is shown", "")
            return
        super().show_view(view)

    def draw(self, view: ThreadsView) -> None:
        if view.exited:
            # Keep the last rows the process had.
            self.border_title = f"{self.counts}  [$error]exited: last data[/]"
            return
        joined = self.joined
        rows = join_threads(view, joined.get(OFFCPU), joined.get(SYSCALLS), joined.get(PROFILE))
        python = joined.get(PYTHON_STACKS)
        if python is not None and python.target_pid == self.pid:
            self.python_names.update(python.thread_names)
        rows = [
            dataclasses.replace(row, name=f"{row.name} ({py})")
            if (py := self.python_names.get(row.tid)) is not None and py != row.name
            else row
            for row in rows
        ]
        table = self.query_one("#threads", LineTable)
        table.set_rows([(row, "") for row in table.ordered(rows)])
        running = sum(1 for t in view.threads if t.state == "R")
        self.counts = f"Threads {len(view.threads)}, {running} running"
        self.border_title = self.counts
        missing = [
            f"{what}: {reason}"
            for what, probe in (("off-CPU", OFFCPU), ("syscalls", SYSCALLS))
            if (reason := _missing_reason(probe, joined.get(probe), self.pid, self.joined_unavailable)) is not None
        ]
        self.border_subtitle = escape("; ".join(missing))
