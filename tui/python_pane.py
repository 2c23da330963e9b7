"""The drill-down's Python tab: the process's Python functions and stacks, and where its threads wait.

The frames are read from the interpreter's memory by orac itself (3.11+) or by py-spy (older versions, native frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.widgets import Static

from probes.contract import ProbeSpec
from probes.sources.offcpu import OFFCPU
from probes.sources.python_stacks import CHUNK_S, PYTHON_STACKS, PythonStacksView

from .line_table import Column, LineTable
from .profile_pane import FunctionsAndStacksPane

WAITING_TITLE = "Where threads wait (not running when last read, once a tick)"


@dataclass(frozen=True, slots=True)
class WaitingRow:
    """A thread not running when its frames were last read: where it waited, and its off-CPU time."""

    tid: int
    name: str
    # seconds off CPU per second in the interval (eBPF, the off-CPU probe); None where not measured
    off_cpu_s_per_s: float | None
    frames: tuple[str, ...]  # outermost first


def _waits_at(row: WaitingRow) -> str:
    return " ← ".join(reversed(row.frames))


WAITING_COLUMNS: list[Column[WaitingRow]] = [
    Column("tid", "TID", 7, lambda r: str(r.tid), attrgetter("tid"), right=True),
    Column("name", "THREAD", 15, attrgetter("name"), attrgetter("name")),
    Column(
        # seconds a second, of blocks that ended in the interval ("-": none ended, or no eBPF)
        "off_cpu", "OFF-CPU", 8, lambda r: "-" if r.off_cpu_s_per_s is None else f"{r.off_cpu_s_per_s:.2f}",
        lambda r: -1.0 if r.off_cpu_s_per_s is None else r.off_cpu_s_per_s, True, True,
    ),
    Column("stack", "WAITS AT (leaf first)", 0, _waits_at, _waits_at),
]


class PythonPane(FunctionsAndStacksPane):
    """Fed by the drill-down's "python" probe."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = PYTHON_STACKS
    # the off-CPU time of each waiting thread, measured by eBPF where it runs
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (OFFCPU,)
    TABLES: ClassVar[str] = "python"

    DEFAULT_CSS = """
    PythonPane > .waiting-title { height: 1; margin-top: 1; text-style: bold; }
    PythonPane > #python-waiting { height: auto; max-height: 8; }
    """

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield Static(WAITING_TITLE, classes="waiting-title")
        yield LineTable(WAITING_COLUMNS, "off_cpu", attrgetter("tid"), id="python-waiting")

    def show_view(self, view: PythonStacksView) -> None:
        if view.target_pid != self.pid:
            self.show_unavailable(f"no Python stacks of process {self.pid} in what is shown", "")
            return
        if view.problem:
            self.show_unavailable(f"no Python frames: {view.problem}", "")
            return
        if not view.sampled_s and not view.exited:
            # py-spy's chunks end every CHUNK_S seconds, not every tick: keep the last one's figures,
            # but where threads wait is read each tick.
            if self.view is None:
                chunk = f" (py-spy's first {CHUNK_S} s)" if view.sampled_by == "py-spy" else ""
                self.show_unavailable(f"waiting for the first samples{chunk}", "")
            else:
                # no chunk ended: its stacks, native or not, are the last view's
                self._draw_waiting(view, self.view.native)
            return
        super().show_view(view)

    def draw(self, view: PythonStacksView) -> None:
        if view.native:
            source = "py-spy, native frames too: it stops the process each sample"
        else:
            source = {
                "ebpf": "read from its memory at the profile's samples, not stopping it",
                "orac": "read from its memory, not stopping it",
            }.get(view.sampled_by, "py-spy")
        title = f"Python {view.python_version} ({source})"
        if view.exited:
            title += "  [$error]exited: last data[/]"
        self.border_title = title
        subtitle = f"{view.samples} samples in {view.sampled_s:.1f}s at {view.rate_hz} Hz"
        if not view.samples:
            subtitle += ": no Python thread ran"
        if view.errors:
            subtitle += f", {view.errors} failed"
        if view.note:
            subtitle += f"; {view.note}"
        self.border_subtitle = escape(subtitle)
        functions = self.query_one("#python-functions", LineTable)
        functions.set_rows([(f, "") for f in functions.ordered(view.top_self)])
        stacks = self.query_one("#python-stacks", LineTable)
        stacks.set_rows([(s, "") for s in stacks.ordered(view.stacks)])
        self._draw_waiting(view, view.native)

    def _draw_waiting(self, view: PythonStacksView, native: bool) -> None:
        offcpu = self.joined.get(OFFCPU)
        off_s = {t.tid: t.off_cpu_s_per_s for t in offcpu.threads} if offcpu is not None and offcpu.focus_pid == self.pid else None
        rows = [
            WaitingRow(w.tid, view.thread_names.get(w.tid, ""), None if off_s is None else off_s.get(w.tid), w.frames)
            for w in view.waiting
        ]
        waiting = self.query_one("#python-waiting", LineTable)
        waiting.set_rows([(r, "") for r in waiting.ordered(rows)])
        self.query_one(".waiting-title", Static).update(
            "Where threads wait: not read while py-spy stops the process for native frames (n)" if native
            else WAITING_TITLE
        )
