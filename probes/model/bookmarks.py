"""Spike bookmarks: the moments of a recording where something began.

A `Bookmarker` is fed each frame's views in order and says which moments
deserve a mark; replay lists them and jumps between them. The rules, each
tested at its edge:

- a verdict cell rises to warning, saturated or error, having been below
  that level for the QUIET_FRAMES frames before (or since the recording
  began): "CPU saturated", "vda 98 % util", an OOM kill's error. A cell
  flapping at a level's edge is marked once, not every time it crosses;
- a process takes the top of the CPU table at TOP_MIN_CPU_PERCENT or more
  of a core, not having been there in the QUIET_FRAMES frames before;
- a kernel log record of a kind that means trouble (an OOM kill, a hung
  task, a segfault, an NVIDIA Xid ...: kmsg's KINDS), each one;
- the share of time some task stalled on a resource (PSI, over the
  interval) steps up by PSI_STEP_PERCENT points or more from one frame to
  the next.

orac's own process is left out of the CPU rule: its start (compiling its
eBPF programs) would otherwise open every recording with a mark.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from probes.contract import Views
from probes.model.verdict import THRESHOLDS, State, Threshold, verdict
from probes.sources.kmsg import KINDS, KMSG
from probes.sources.processes import PROCESSES
from probes.sources.system import SYSTEM

# frames a signal must have been quiet before it is marked again
QUIET_FRAMES = 5
# a process taking the top of the CPU table below this is not a spike
TOP_MIN_CPU_PERCENT = 50.0
# a PSI step: stalled share of the interval up by this many points
PSI_STEP_PERCENT = 10.0
# kernel log kinds that mark a moment (all of KINDS but the context lines of an OOM kill)
MARKED_KINDS = frozenset(KINDS) - {"oom"}
OWN_NAME = "orac"


@dataclass(frozen=True, slots=True)
class Bookmark:
    """A moment: its frame's wall time, the rule that marked it (verdict, top, kernel, pressure), and what happened."""

    wall_ns: int
    kind: str
    text: str

    def line(self) -> str:
        return f"{time.strftime('%H:%M:%S', time.localtime(self.wall_ns / 1e9))}  {self.text}"


class Bookmarker:
    """Marks moments frame by frame (see the module's rules); feed it every frame's views in order."""

    def __init__(self, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> None:
        self._thresholds = thresholds
        self._states: dict[tuple[str, str], deque[State]] = {}
        self._tops: deque[int | None] = deque(maxlen=QUIET_FRAMES)
        self._stalled: dict[str, float] = {}

    def add(self, wall_ns: int, views: Views) -> list[Bookmark]:
        marks = self._verdict(wall_ns, views)
        marks += self._top(wall_ns, views)
        marks += self._kernel(wall_ns, views)
        marks += self._pressure(wall_ns, views)
        return marks

    def _verdict(self, wall_ns: int, views: Views) -> list[Bookmark]:
        marks = []
        for cell in verdict(views, self._thresholds, wall_ns):
            recent = self._states.setdefault((cell.resource, cell.label), deque(maxlen=QUIET_FRAMES))
            if cell.state >= State.WARNING and all(state < cell.state for state in recent):
                marks.append(Bookmark(wall_ns, "verdict", cell.summary))
            recent.append(cell.state)
        return marks

    def _top(self, wall_ns: int, views: Views) -> list[Bookmark]:
        processes = views.get(PROCESSES)
        if processes is None:
            return []
        rated = [p for p in processes.processes if p.cpu_percent is not None and p.name != OWN_NAME]
        top = max(rated, key=lambda p: p.cpu_percent or 0.0, default=None)
        if top is None or top.cpu_percent is None or top.cpu_percent < TOP_MIN_CPU_PERCENT:
            self._tops.append(None)
            return []
        marks = []
        if top.pid not in self._tops:
            marks.append(Bookmark(wall_ns, "top", f"{top.name} (pid {top.pid}) takes the top: {top.cpu_percent:.0f} % CPU"))
        self._tops.append(top.pid)
        return marks

    def _kernel(self, wall_ns: int, views: Views) -> list[Bookmark]:
        kmsg = views.get(KMSG)
        if kmsg is None:
            return []
        marks = []
        for e in kmsg.new_events:
            if e.kind not in MARKED_KINDS or e.earlier:
                continue
            who = f": {e.comm} (pid {e.pid})" if e.comm and e.pid is not None else ""
            xid = f" {e.xid}" if e.xid is not None else ""
            marks.append(Bookmark(wall_ns, "kernel", f"{KINDS[e.kind]}{xid}{who}"))
        return marks

    def _pressure(self, wall_ns: int, views: Views) -> list[Bookmark]:
        system = views.get(SYSTEM)
        if system is None:
            return []
        marks = []
        for resource, share in system.pressure_share.items():
            if share is None:
                continue
            before = self._stalled.get(resource)
            if before is not None and share.some_percent - before >= PSI_STEP_PERCENT:
                marks.append(Bookmark(
                    wall_ns, "pressure", f"{resource} pressure steps up: {before:.0f} % to {share.some_percent:.0f} % stalled",
                ))
            self._stalled[resource] = share.some_percent
        return marks
