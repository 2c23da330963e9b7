"""The process screen: one process in detail, with its last minute as sparklines."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Sparkline, Static, TabbedContent

from probes.contract import ProbeSpec
from probes.host.process_details import ProcessDetails, ProcessGone, read_details
from probes.host.procfs import shown
from probes.model.redaction import redact_cmdline
from probes.sources.gpu import GPU
from probes.sources.processes import PROCESSES, ProcessesView, ProcessView
from probes.sources.profile import DEFAULT_FREQUENCY_HZ

from .drilldown import DrillDown
from .format import DENIED, MISSING, cpu_time, human_bytes, percent, state
from .pane import Pane


def find(view: ProcessesView | None, pid: int) -> ProcessView | None:
    if view is None:
        return None
    return next((p for p in view.processes if p.pid == pid), None)


def _detail(value: object) -> str:
    """A detail read from /proc: None is what the kernel would not tell; empty, what there is none of (a kernel thread's exe)."""
    if value is None:
        return DENIED
    return str(value) or MISSING


class ProcessSummary(Pane):
    """The chosen process's row of the "procs" view, its details and history."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = PROCESSES
    # what it holds on each GPU, beside its profile and off-CPU stacks below
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (GPU,)

    DEFAULT_CSS = """
    ProcessSummary { height: auto; padding: 0 1; }
    ProcessSummary #command { height: auto; max-height: 3; }
    ProcessSummary #summary { height: auto; }
    /* Short lines that never wrap, beside a history that shrinks: at 80
       columns the details had no width left and went one letter a line. */
    ProcessSummary #details { height: auto; width: 3fr; text-wrap: nowrap; text-overflow: ellipsis; }
    ProcessSummary #history { height: auto; width: 2fr; max-width: 76; }
    ProcessSummary #history > Horizontal { height: 3; margin-bottom: 1; }
    ProcessSummary Horizontal > Label { width: 16; }
    ProcessSummary Sparkline { height: 2; }
    ProcessSummary #cpu-spark > .sparkline--max-color { color: $error; }
    ProcessSummary #cpu-spark > .sparkline--min-color { color: $success; }
    ProcessSummary #rss-spark > .sparkline--max-color { color: $accent; }
    ProcessSummary #rss-spark > .sparkline--min-color { color: $primary; }
    """

    def __init__(
        self,
        pid: int,
        history: tuple[list[float], list[float]],
        live: bool,
        current: ProcessesView | None,
        redact: bool = True,
    ) -> None:
        super().__init__()
        self.pid = pid
        # The command line read here, not from a frame, is redacted as frames are.
        self.redact = redact
        # `history` already holds the current tick: it is drawn from `current`
        # now, without counting it twice.
        self.cpu_history, self.rss_history = history
        # Details beyond the frame (exe, cwd, fds) exist only for a process
        # running now, not for one in fixed or recorded frames.
        self.live = live
        self.last: ProcessView | None = find(current, pid)
        # the tick already in `history`, so being fed it again adds nothing
        self.seen = current
        self.details: ProcessDetails | None = None
        self.gone = False

    def compose(self) -> ComposeResult:
        # The command line across the width (it is the long one), then details
        # left and the last minute right: the drill-down below gets the height.
        yield Static(id="command")
        with Horizontal(id="summary"):
            yield Static(id="details")
            with Vertical(id="history"):
                with Horizontal():
                    yield Label("CPU %", id="cpu-label")
                    yield Sparkline(self.cpu_history, id="cpu-spark")
                with Horizontal():
                    yield Label("RSS", id="rss-label")
                    yield Sparkline(self.rss_history, id="rss-spark")

    def on_mount(self) -> None:
        self.border_title = f"Process {self.pid}"
        if self.live:
            self._load_details()
        self._draw()

    def show_view(self, view: ProcessesView) -> None:
        if view is self.seen:
            return
        self.seen = view
        found = find(view, self.pid)
        if found is None:
            self.gone = True
        else:
            self.last = found
            if found.cpu_percent is not None:
                self.cpu_history = ([*self.cpu_history, found.cpu_percent])[-60:]
            self.rss_history = ([*self.rss_history, float(found.rss_bytes)])[-60:]
            if self.live:
                self._load_details()
        self._draw()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load_details(self) -> None:
        try:
            details = read_details(self.pid)
        except ProcessGone:
            self.app.call_from_thread(self._mark_gone)
            return
        self.app.call_from_thread(self._set_details, details)

    def _mark_gone(self) -> None:
        self.gone = True
        self._draw()

    def _set_details(self, details: ProcessDetails) -> None:
        self.details = details
        self._draw()

    def _gpus(self) -> str:
        """Its memory and SM share on each GPU it uses, with the GPU's own SM activity where GPM gives it."""
        gpu = self.joined.get(GPU)
        if gpu is None:
            return ""
        devices = {d.index: d for d in gpu.devices}
        parts = []
        for used in (p for p in gpu.processes if p.pid == self.pid):
            sm = MISSING if used.sm_util_percent is None else f"{used.sm_util_percent:.0f}%"
            part = f"{used.gpu_index}: {human_bytes(used.gpu_memory_bytes)} SM {sm}"
            device = devices.get(used.gpu_index)
            if device is not None and device.gpm is not None and device.gpm.sm_activity_percent is not None:
                part += f" (GPU SM activity {device.gpm.sm_activity_percent:.0f}%)"
            parts.append(part)
        return "; ".join(parts)

    def _command(self, cmdline: str) -> str:
        return shown(redact_cmdline(cmdline) if self.redact else cmdline)

    def _draw(self) -> None:
        p = self.last
        d = self.details
        command = self._command(d.cmdline) if d else (p.command if p else MISSING)
        rows: list[tuple[str, str]] = []
        rows.append(("exe", _detail(d.exe) if d else MISSING))
        rows.append(("cwd", _detail(d.cwd) if d else MISSING))
        rows.append(("state", state(p.state) if p else MISSING))
        rows.append(("user", p.user if p else MISSING))
        rows.append(("threads", str(p.num_threads) if p else MISSING))
        rows.append(("open fds", _detail(d.num_fds) if d else MISSING))
        rows.append(("cgroup", p.cgroup if p else MISSING))
        rows.append(("parent", str(p.ppid) if p else MISSING))
        if d:
            rows.append(("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.started))))
        rows.append(("cpu time", cpu_time(p.cpu_time_s) if p else MISSING))
        gpus = self._gpus()
        if gpus:
            rows.append(("gpu", gpus))
        self.query_one("#details", Static).update("\n".join(f"[b]{name:>9}[/b]  {escape(value)}" for name, value in rows))
        head = f"[b]{'command':>9}[/b]  {escape(command)}"
        if self.gone:
            head = "[$error b]this process has exited; showing its last data[/]\n" + head
        self.query_one("#command", Static).update(head)
        if p is not None:
            self.border_title = f"Process {p.pid} ({p.name})"
            self.query_one("#cpu-label", Label).update(f"CPU {percent(p.cpu_percent):>5}%")
            self.query_one("#rss-label", Label).update(f"RSS {human_bytes(p.rss_bytes):>6}")
        for spark_id, data in (("#cpu-spark", self.cpu_history), ("#rss-spark", self.rss_history)):
            spark = self.query_one(spark_id, Sparkline)
            spark.data = data
            # At most one cell per sample, so a short history is drawn short
            # rather than stretched into a flat band that looks like a minute
            # of data; fewer where the width is short.
            spark.styles.width = "1fr"
            spark.styles.max_width = max(1, len(data))


class ProcessScreen(Screen[None]):
    """Opened with Enter on a process; Escape goes back."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the main screen; the traces detach"),
        Binding(
            "f", "write_folded", "Folded stacks",
            tooltip="Write the profile, Python and off-CPU stacks so far as folded stacks (flamegraph.pl, speedscope)",
        ),
        Binding("1", "tab('profile')", "Profile", show=False, tooltip="The on-CPU profile tab"),
        Binding("2", "tab('offcpu')", "Off-CPU", show=False, tooltip="The off-CPU tab"),
        Binding("3", "tab('syscalls')", "Syscalls", show=False, tooltip="The syscalls tab"),
        Binding("4", "tab('threads')", "Threads", show=False, tooltip="The threads tab"),
        Binding("5", "tab('blockio')", "Block I/O", show=False,
                tooltip="The block I/O tab: its requests, bytes and latency, and its time in D state"),
        Binding("6", "tab('python')", "Python", show=False,
                tooltip="The Python tab: a Python process's functions and stacks, read from its memory"),
        Binding(
            "n", "native_python", "Native frames",
            tooltip="Python tab: py-spy takes the native frames too (C extensions' code under their Python callers); "
            "it then stops the process for each sample",
        ),
    ]

    DEFAULT_CSS = """
    ProcessScreen > Vertical { height: 1fr; }
    """

    def __init__(
        self,
        pid: int,
        history: tuple[list[float], list[float]],
        live: bool = True,
        current: ProcessesView | None = None,
        shared: Iterable[str] = (),
        profile_hz: int = DEFAULT_FREQUENCY_HZ,
        redact: bool = True,
    ) -> None:
        """`shared`: the probes whose system-wide views the app feeds this screen."""
        super().__init__()
        self.redact = redact
        self.pid = pid
        self.history = history
        self.live = live
        self.current = current
        self.shared = frozenset(shared)
        self.profile_hz = profile_hz

    def action_tab(self, tab: str) -> None:
        self.query_one(DrillDown).show_tab(tab)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "native_python":
            # Only on the Python tab of a live drill-down (one that runs py-spy).
            drill = self.query(DrillDown)
            return self.live and bool(drill) and drill.first().query_one(TabbedContent).active == "python"
        return True

    def on_tabbed_content_tab_activated(self) -> None:
        self.refresh_bindings()

    def action_native_python(self) -> None:
        native = self.query_one(DrillDown).toggle_native_python()
        if native is None:
            return
        if native:
            self.notify("Python tab: native frames from the next py-spy chunk; py-spy stops the process for each sample")
        else:
            self.notify("Python tab: Python frames only, without stopping the process")

    def action_write_folded(self) -> None:
        try:
            paths = self.query_one(DrillDown).write_folded(Path.cwd())
        except OSError as exc:
            self.notify(f"folded stacks not written: {exc}", severity="error")
            return
        if not paths:
            self.notify("no stacks yet", severity="warning")
        else:
            names = ", ".join(p.name for p in paths)
            self.notify(f"wrote {names}: flamegraph.pl FILE > flame.svg, or open it in speedscope")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield ProcessSummary(self.pid, self.history, self.live, self.current, self.redact)
            yield DrillDown(self.pid, self.live, self.shared, self.profile_hz)
        yield Footer()
