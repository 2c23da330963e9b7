"""The drill-down: eBPF traces filtered in the kernel to one process, open while its screen is.

It runs its own Collector with targeted probes, so the traces attach when
the process screen opens and detach when it closes; the app's system-wide
probes go on untouched.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, TabbedContent, TabPane

from probes.base import Probe
from probes.collector import Collector

from .messages import FrameReady
from .pane import Pane, feed
from .syscalls_pane import SyscallsPane


class DrillSyscallsPane(SyscallsPane):
    """The syscalls pane, fed by the drill-down's own syscalls trace."""

    SOURCE: ClassVar[str] = "drilldown"


# (tab title, pane class, probe factory taking the pid)
DrillPart = tuple[str, type[Pane], Callable[[int], Probe[Any]]]


def default_parts() -> list[DrillPart]:
    from probes.syscalls import SyscallProbe

    return [("Syscalls", DrillSyscallsPane, lambda pid: SyscallProbe(target_pid=pid))]


class DrillDown(Vertical):
    """Tabs of targeted traces of one process."""

    DEFAULT_CSS = """
    DrillDown { height: 1fr; }
    DrillDown > Static { padding: 0 1; color: $warning; }
    DrillDown TabbedContent, DrillDown TabPane { height: 1fr; }
    """

    def __init__(self, pid: int, live: bool, parts: Iterable[DrillPart] | None = None) -> None:
        super().__init__(id="drilldown")
        self.pid = pid
        self.live = live
        self.parts = list(parts if parts is not None else default_parts())
        self.collector: Collector | None = None

    def compose(self) -> ComposeResult:
        if not self.live:
            yield Static("The drill-down traces a running process: it has nothing to show for recorded frames.")
            return
        with TabbedContent():
            for title, pane_class, _ in self.parts:
                with TabPane(title):
                    yield pane_class()

    def on_mount(self) -> None:
        if not self.live:
            return
        self.collector = Collector([make(self.pid) for _, _, make in self.parts], interval_s=1.0)
        self.collector.start(lambda frame, views: self.post_message(FrameReady(frame, views)))

    def on_unmount(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Detach every trace (their programs unload with their fds)."""
        if self.collector is not None:
            self.collector.stop()
            self.collector = None

    def on_frame_ready(self, message: FrameReady) -> None:
        # Handled here, not by the app: these frames are this process's only.
        message.stop()
        feed(self.query(Pane), message.frame, message.views, source="drilldown")

