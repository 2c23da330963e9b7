"""The drill-down's on-CPU profile: top functions and hottest stacks."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from probes.contract import ProbeSpec
from probes.sources.profile import PROFILE, FunctionShare, HotStack, ProfileView
from probes.sources.python_stacks import PYTHON_STACKS

from .line_table import Column, LineTable
from .pane import MessagePane

FUNCTION_COLUMNS: list[Column[FunctionShare]] = [
    Column("self", "SELF%", 6, lambda f: f"{f.self_percent:.1f}", attrgetter("self_percent"), True, True),
    Column("total", "TOTAL%", 6, lambda f: f"{f.total_percent:.1f}", attrgetter("total_percent"), True, True),
    Column("name", "FUNCTION", 0, attrgetter("name"), attrgetter("name")),
]


def leaf_first(stack: HotStack) -> str:
    # The leaf is what was running: first, so a narrow column still shows it.
    return " ← ".join(reversed(stack.frames))


STACK_COLUMNS: list[Column[HotStack]] = [
    Column("percent", "%", 5, lambda s: f"{s.percent:.1f}", attrgetter("percent"), True, True),
    Column("stack", "STACK (leaf first)", 0, leaf_first, leaf_first),
]


class FunctionsAndStacksPane(MessagePane):
    """A message line over two tables: functions by share, beside the hottest stacks.

    The tables are `#{TABLES}-functions` and `#{TABLES}-stacks`.
    """

    TABLES: ClassVar[str]

    DEFAULT_CSS = """
    FunctionsAndStacksPane { height: 1fr; }
    FunctionsAndStacksPane > Horizontal { height: 1fr; }
    FunctionsAndStacksPane .functions { width: 2fr; }
    FunctionsAndStacksPane .stacks { width: 3fr; margin-left: 1; }
    """

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        with Horizontal():
            yield LineTable(FUNCTION_COLUMNS, "self", attrgetter("name"), id=f"{self.TABLES}-functions", classes="functions")
            yield LineTable(STACK_COLUMNS, "percent", attrgetter("frames"), id=f"{self.TABLES}-stacks", classes="stacks")


class ProfilePane(FunctionsAndStacksPane):
    """Fed by the drill-down's "profile" probe; the "python" probe's joined for a line about Python frames."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = PROFILE
    # A CPython 3.11+ process's Python frames are in these stacks; an older one's are not
    # (only the interpreter's, unless a 3.12+ perf map names them): say where they are.
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (PYTHON_STACKS,)
    TABLES: ClassVar[str] = "profile"

    def show_view(self, view: ProfileView) -> None:
        if view.target_pid != self.pid:
            # A profile of another process (a replay of another drill-down).
            self.show_unavailable(f"no profile of process {self.pid} in what is shown", "")
            return
        title = f"on CPU {view.on_cpu_percent:.1f}% of a CPU, {view.samples} samples at {view.frequency_hz} Hz"
        if view.exited:
            title += "  [$error]exited: last data[/]"
        python = self.joined.get(PYTHON_STACKS)
        if view.python_note:
            title += f"; no Python frames: {view.python_note}"
        if python is not None and python.target_pid == self.pid:
            if view.python_note or python.sampled_by == "py-spy":
                title += f"; Python functions: tab 6{'; ' + python.note if python.note else ''}"
            else:
                title += "; Python frames read from its memory"
        self.border_subtitle = title
        lost = sum(view.lost.values())
        heading = "On-CPU profile"
        if view.cut_short_percent:
            # Code without frame pointers (Debian's own binaries) loses its callers:
            # say how often, so that nobody reads a truncated stack as the whole.
            share = f"{view.cut_short_percent:.0f}%" if view.cut_short_percent >= 1 else "<1%"
            heading += f"  {share} of stacks cut short: callers unknown"
        self.border_title = heading + (f"  lost {lost}" if lost else "")
        super().show_view(view)

    def draw(self, view: ProfileView) -> None:
        functions = self.query_one("#profile-functions", LineTable)
        functions.set_rows([(f, "") for f in functions.ordered(view.top_self)])
        stacks = self.query_one("#profile-stacks", LineTable)
        stacks.set_rows([(s, "") for s in stacks.ordered(view.stacks)])
