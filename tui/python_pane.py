"""The drill-down's Python tab: the process's Python functions and stacks, from py-spy."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape

from probes.contract import ProbeSpec
from probes.sources.python_stacks import CHUNK_S, PYTHON_STACKS, PythonStacksView

from .line_table import LineTable
from .profile_pane import FunctionsAndStacksPane


class PythonPane(FunctionsAndStacksPane):
    """Fed by the drill-down's "python" probe."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = PYTHON_STACKS
    TABLES: ClassVar[str] = "python"

    def show_view(self, view: PythonStacksView) -> None:
        if view.target_pid != self.pid:
            self.show_unavailable(f"no Python stacks of process {self.pid} in what is shown", "")
            return
        if view.problem:
            self.show_unavailable(f"no Python frames: {view.problem}", "")
            return
        if not view.sampled_s and not view.exited:
            # py-spy's chunks end every CHUNK_S seconds, not every tick: keep the last one's figures.
            if self.view is None:
                self.show_unavailable(f"waiting for py-spy's first {CHUNK_S} s of samples", "")
            return
        super().show_view(view)

    def draw(self, view: PythonStacksView) -> None:
        title = f"Python {view.python_version} (py-spy)"
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
