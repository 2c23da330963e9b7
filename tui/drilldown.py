"""The drill-down: what one process does, open while its screen is.

Its on-CPU profile is a trace of its own: perf_event sampling filtered in
the kernel to the process, added to the app's collector when the screen
opens and removed (detached) when it closes, so it is recorded and replayed
like any probe. Its syscalls and off-CPU time come from the app's
system-wide probes where those run: they already aggregate per process in
the kernel, and a second, targeted copy of them would make every syscall
and context switch on the box enter two programs (benchmarks/drilldown
measured +118 % on a bystander's syscalls). Where they do not run
(--probes), targeted ones are added instead. Its block I/O comes from the
system-wide "blockio" probe, which counts per issuing process already, beside
its off-CPU time in D state.

Its threads come from /proc (the "threads" probe, added like the profile);
their off-CPU time and syscalls from the same eBPF probes, told to count
this process thread by thread while the screen is open (`Collector.focus`):
a compare in programs that already run, not another program.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import TabbedContent, TabPane

from probes.contract import Probe
from probes.model.frame import Frame
from probes.model.joins import offcpu_of
from probes.sources.offcpu import OFFCPU, OffCpuView
from probes.sources.profile import (
    DEFAULT_FREQUENCY_HZ,
    PROFILE,
    FoldedStacks,
    folded_lines,
)
from probes.sources.python_stacks import PYTHON_STACKS, PythonStacksProbe
from probes.store.private_files import PrivateDirectory

from .drill_block_io_pane import DrillBlockIoPane
from .drill_syscalls_pane import DrillSyscallsPane
from .line_table import LineTable
from .offcpu_pane import OffCpuPane
from .profile_pane import ProfilePane
from .python_pane import PythonPane
from .threads_pane import ThreadsPane


class DrillOffCpuPane(OffCpuPane):
    """The process's off-CPU time, narrowed from the app's view."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def show_view(self, view: OffCpuView) -> None:
        super().show_view(offcpu_of(view, self.pid))


def drill_probes(pid: int, shared: Iterable[str], profile_hz: int = DEFAULT_FREQUENCY_HZ) -> list[Probe[Any]]:
    """What a drill-down starts: its threads, the profile, and the traces the app does not already run."""
    from probes.sources.block_io import BlockIoProbe
    from probes.sources.offcpu import OffCpuProbe
    from probes.sources.profile import ProfileProbe
    from probes.sources.python_stacks import PythonStacksProbe
    from probes.sources.syscalls import SyscallProbe
    from probes.sources.threads import ThreadsProbe

    # The Python probe says itself when the process is not Python.
    # The Python tab takes its stacks from the profile's samples where the profile reads them.
    profile = ProfileProbe(pid, profile_hz)
    probes: list[Probe[Any]] = [ThreadsProbe(pid), profile, PythonStacksProbe(pid, profile=profile)]
    if "syscalls" not in shared:
        probes.append(SyscallProbe(target_pid=pid))
    if "offcpu" not in shared:
        probes.append(OffCpuProbe(target_pid=pid))
    if "blockio" not in shared:
        # It has no per-process variant: requests are told apart by issuer anyway.
        probes.append(BlockIoProbe())
    return probes


def prepare_drill_down(shared: Iterable[str], profile_hz: int = DEFAULT_FREQUENCY_HZ) -> threading.Thread:
    """Compile a drill-down's eBPF programs and read the kernel's symbols now, aside, so that opening one only attaches them.

    Their target is a map word, so the programs do not depend on the
    process: orac's own pid stands in for the one a drill-down will get.
    """
    from probes.ebpf.prepared import PROGRAMS
    from probes.ebpf.probe import EbpfProbe
    from probes.symbols.kallsyms import prepare_kernel_symbols

    probes = [p for p in drill_probes(os.getpid(), shared, profile_hz) if isinstance(p, EbpfProbe)]
    return PROGRAMS.prepare(
        (p.program() for p in probes), tracefs=any(p.uses_tracefs for p in probes), then=prepare_kernel_symbols
    )


class DrillDown(Vertical):
    """Tabs of what one process does: profile, off-CPU, syscalls, threads, block I/O, Python."""

    DEFAULT_CSS = """
    DrillDown { height: 1fr; }
    DrillDown TabbedContent, DrillDown TabPane { height: 1fr; }
    """

    def __init__(
        self,
        pid: int,
        live: bool,
        shared: Iterable[str] = (),
        profile_hz: int = DEFAULT_FREQUENCY_HZ,
    ) -> None:
        """`shared`: the probes the app already runs system-wide."""
        super().__init__(id="drilldown")
        self.pid = pid
        self.live = live
        self.shared = frozenset(shared)
        self.profile_hz = profile_hz
        # names of the probes this drill-down added to the app's collector
        self.added: list[str] = []
        # the whole time the screen was open, for `f`
        self.folded = FoldedStacks()
        # off-CPU time per stack (root first), in microseconds
        self.offcpu_us: dict[tuple[str, ...], int] = defaultdict(int)
        # the Python probe's samples per Python stack (root first)
        self.python_samples: dict[tuple[str, ...], int] = defaultdict(int)
        # the Python probe this drill-down started, for `n` (its native frames)
        self.python_probe: PythonStacksProbe | None = None

    def compose(self) -> ComposeResult:
        with TabbedContent():
            with TabPane("1 Profile", id="profile"):
                yield ProfilePane(self.pid)
            with TabPane("2 Off-CPU", id="offcpu"):
                yield DrillOffCpuPane(self.pid)
            with TabPane("3 Syscalls", id="syscalls"):
                yield DrillSyscallsPane(self.pid)
            with TabPane("4 Threads", id="threads"):
                yield ThreadsPane(self.pid)
            with TabPane("5 Block I/O", id="blockio"):
                yield DrillBlockIoPane(self.pid)
            with TabPane("6 Python", id="python"):
                yield PythonPane(self.pid)

    class Tracing(Message):
        """A drill-down opened: run `probes` too, and count `pid` thread by thread."""

        def __init__(self, probes: list[Probe[Any]], pid: int) -> None:
            super().__init__()
            self.probes = probes
            self.pid = pid

    class Untracing(Message):
        """A drill-down closed: stop the probes it asked for, and the per-thread counting."""

        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.names = names

    def on_mount(self) -> None:
        if not self.live:
            return
        probes = drill_probes(self.pid, self.shared, self.profile_hz)
        self.added = [p.name for p in probes]
        self.python_probe = next((p for p in probes if isinstance(p, PythonStacksProbe)), None)
        # To the app itself: an unmounting widget's own messages go nowhere.
        self.app.post_message(self.Tracing(probes, self.pid))

    def toggle_native_python(self) -> bool | None:
        """Have py-spy take native frames too from its next chunk (it then pauses the process), or stop; None when not live."""
        if self.python_probe is None:
            return None
        self.python_probe.native = not self.python_probe.native
        return self.python_probe.native

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        # Again after any focus still pending (the first tab's table's, as the
        # screen opens): the widget last focused shows its tab.
        self.call_after_refresh(self._show_again, tab)

    def _show_again(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # The tab's first table takes the keys: arrows move its cursor at once.
        # (The block I/O tab has none.)
        self.call_after_refresh(self._focus_table, event.pane.id)

    def _focus_table(self, tab: str | None) -> None:
        # Only if that tab is still shown: a widget taking focus shows its tab, so a
        # late focus of the first tab's table, as the screen opens, would undo a
        # tab key pressed meanwhile.
        tabs = self.query_one(TabbedContent)
        if tab is None or tabs.active != tab:
            return
        for table in tabs.get_pane(tab).query(LineTable).results():
            table.focus()
            break

    def on_unmount(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Remove the traces this drill-down added (their programs detach)."""
        if self.added:
            self.app.post_message(self.Untracing(self.added))
            self.added = []

    def take_frame(self, frame: Frame) -> None:
        """Add this process's stacks of a frame to what `f` writes."""
        profile = frame.samples.get(PROFILE.name)
        if profile is not None and profile.target_pid == self.pid:
            self.folded.add(profile)
        python = frame.samples.get(PYTHON_STACKS.name)
        if python is not None and python.target_pid == self.pid:
            for pystack in python.stacks:
                self.python_samples[pystack.frames] += pystack.samples
        offcpu = frame.samples.get(OFFCPU.name)
        if offcpu is None:
            return
        for stack in offcpu.stacks:
            if stack.pid != self.pid:
                continue
            self.offcpu_us[stack.folded()] += stack.off_cpu_ns // 1000

    def write_folded(self, directory: Path) -> list[Path]:
        """Write the profile and Python stacks (samples) and off-CPU stacks (microseconds) so far as folded stacks.

        The Python stacks are a file of their own: they are sampled at other
        moments than the eBPF profile, so their samples do not add to those.

        Files are created as probes.private_files creates them (mode 0600,
        never through a planted link), since orac often runs as root.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        written = []
        with PrivateDirectory(directory) as private:
            for kind, lines in (
                ("profile", self.folded.lines()),
                ("python", folded_lines(self.python_samples)),
                ("offcpu", folded_lines(self.offcpu_us)),
            ):
                if not lines:
                    continue
                stem, (fd,) = private.create_set(f"orac-{kind}-{self.pid}-{stamp}", (".folded",))
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines) + "\n")
                written.append(directory / f"{stem}.folded")
        return written
