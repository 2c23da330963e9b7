"""The drill-down: eBPF traces filtered in the kernel to one process, open while its screen is.

It runs its own Collector with targeted probes, so the traces attach when
the process screen opens and detach when it closes; the app's system-wide
probes go on untouched.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, TabbedContent, TabPane

from probes.base import Probe
from probes.collector import Collector
from probes.profile import FoldedStacks, folded_lines

from .messages import FrameReady
from .offcpu_pane import OffCpuPane
from .pane import Pane, feed
from .profile_pane import ProfilePane, ThreadsPane
from .syscalls_pane import SyscallsPane


class DrillSyscallsPane(SyscallsPane):
    """The syscalls pane, fed by the drill-down's own syscalls trace."""

    SOURCE: ClassVar[str] = "drilldown"


class DrillOffCpuPane(OffCpuPane):
    """The off-CPU pane, fed by the drill-down's own off-CPU trace."""

    SOURCE: ClassVar[str] = "drilldown"


def targeted_probes(pid: int) -> list[Probe[Any]]:
    """The traces a drill-down runs, each filtered in the kernel to `pid`."""
    from probes.offcpu import OffCpuProbe
    from probes.profile import ProfileProbe
    from probes.syscalls import SyscallProbe

    return [SyscallProbe(target_pid=pid), ProfileProbe(pid), OffCpuProbe(target_pid=pid)]


# tab title and the pane in it
TABS: list[tuple[str, type[Pane]]] = [
    ("Profile", ProfilePane),
    ("Off-CPU", DrillOffCpuPane),
    ("Syscalls", DrillSyscallsPane),
    ("Threads", ThreadsPane),
]


class DrillDown(Vertical):
    """Tabs of targeted traces of one process."""

    DEFAULT_CSS = """
    DrillDown { height: 1fr; }
    DrillDown > Static { padding: 0 1; color: $warning; }
    DrillDown TabbedContent, DrillDown TabPane { height: 1fr; }
    """

    def __init__(
        self, pid: int, live: bool, probes: Callable[[int], list[Probe[Any]]] = targeted_probes
    ) -> None:
        super().__init__(id="drilldown")
        self.pid = pid
        self.live = live
        self.make_probes = probes
        self.collector: Collector | None = None
        # the whole time the screen was open, for `f`
        self.folded = FoldedStacks()
        # off-CPU time per stack (root first), in microseconds
        self.offcpu_us: dict[tuple[str, ...], int] = defaultdict(int)

    def compose(self) -> ComposeResult:
        if not self.live:
            yield Static("The drill-down traces a running process: it has nothing to show for recorded frames.")
            return
        with TabbedContent():
            for title, pane_class in TABS:
                with TabPane(title):
                    yield pane_class()

    def on_mount(self) -> None:
        if not self.live:
            return
        self.collector = Collector(self.make_probes(self.pid), interval_s=1.0)
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
        profile = message.frame.samples.get("profile")
        if profile is not None:
            self.folded.add(profile)
        offcpu = message.frame.samples.get("offcpu")
        if offcpu is not None:
            for stack in offcpu.stacks:
                frames = (*stack.user_frames, *stack.kernel_frames) or (f"[{stack.missing or 'no stack'}]",)
                self.offcpu_us[(f"[{stack.state}]", *frames)] += stack.off_cpu_ns // 1000
        feed(self.query(Pane), message.frame, message.views, source="drilldown")

    def write_folded(self, directory: Path) -> list[Path]:
        """Write the profile (samples) and off-CPU stacks (microseconds) so far as folded stacks."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        written = []
        for kind, lines in (("profile", self.folded.lines()), ("offcpu", folded_lines(self.offcpu_us))):
            if lines:
                path = directory / f"orac-{kind}-{self.pid}-{stamp}.folded"
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
                written.append(path)
        return written

