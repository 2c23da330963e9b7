"""Kernel events: `dmesg | tail` made live, the records that matter in triage named and highlighted.

The kmsg probe classifies (probes.sources.kmsg); each record shows at its
time of day, as `dmesg -T` prints it. NVML's Xid and ECC events (the gpu
probe) join them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, ClassVar

from rich.text import Text

from probes.contract import ProbeSpec
from probes.host.nvml_events import SERIOUS, GpuEvent
from probes.sources.gpu import GPU
from probes.sources.kmsg import KINDS, KMSG, KernelEvent, KmsgView

from .text_lines import TextPane

WAITING = "waiting for the second sample..."
# NVML's events that belong beside the kernel's errors (clock and power-state changes do not)
GPU_ERROR_EVENTS = SERIOUS | {"ECC single-bit error"}
# An NVML Xid and the kernel's line for it are one event when this close (their clocks differ).
XID_SAME_S = 5.0
# lines shown: the newest, as dmesg | tail
TAIL = 6


def event_text(e: KernelEvent, wall_s: float) -> str:
    """The record as `dmesg -T | tail` shows it: its local time of day (`wall_s`), its kind and whom it names."""
    who = ""
    if e.kind == "oom-kill":
        who = f" {e.comm} pid {e.pid}" + (f" in {e.cgroup}" if e.cgroup else "")
    elif e.kind == "xid" and e.xid is not None:
        who = f" {e.xid}"
    tag = f"{KINDS[e.kind]}{who}: " if e.kind else ""
    at = time.strftime("%H:%M:%S", time.localtime(wall_s))
    return f"[{at}] {'earlier ' if e.earlier else ''}{tag}{e.message}"


def gpu_event_text(e: GpuEvent) -> str:
    what = f"Xid {e.data}" if e.kind == "Xid" else e.kind
    gpu = "a GPU" if e.gpu_index is None else f"GPU {e.gpu_index}"
    return f"[{time.strftime('%H:%M:%S', time.localtime(e.wall_ns / 1e9))}] {gpu} {what} (NVML event)"


def said_by_the_kernel(e: GpuEvent, kernel: list[tuple[float, KernelEvent]]) -> bool:
    """An NVML Xid the kernel log also has (its NVRM: Xid line, with the subcodes NVML's event lacks)."""
    return e.kind == "Xid" and any(
        k.kind == "xid" and k.xid == e.data and abs(wall_s - e.wall_ns / 1e9) <= XID_SAME_S for wall_s, k in kernel
    )


class KernelEventsPane(TextPane):
    """The newest kernel log records; OOM kills, hung tasks, I/O errors and the like stand out.

    NVML's own error events (Xid, ECC) join them in time order, but for an
    Xid the kernel logged too.
    """

    PROBE: ClassVar[ProbeSpec[Any, Any]] = KMSG
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (GPU,)

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "kernel-events-pane--error", "kernel-events-pane--warning", "kernel-events-pane--muted",
    }

    DEFAULT_CSS = """
    KernelEventsPane {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    KernelEventsPane.-absent { display: none; }
    KernelEventsPane.-unavailable { border: none; height: 1; }
    KernelEventsPane > .kernel-events-pane--error { color: $error; text-style: bold; }
    KernelEventsPane > .kernel-events-pane--warning { color: $warning; }
    KernelEventsPane > .kernel-events-pane--muted { color: $foreground-muted; }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # OOM kills and lost records seen since orac started showing this source
        self.oom_kills = 0
        self.lost_lines = 0
        # NVML's error events seen: frames carry only their interval's
        self.gpu_events: deque[GpuEvent] = deque(maxlen=TAIL)
        self._shown_wall_ns = 0

    def on_mount(self) -> None:
        self.border_title = "Kernel events"

    def show_view(self, view: KmsgView) -> None:
        self.remove_class("-absent")
        gpu = self.joined.get(GPU)
        shown_ns = self.shown_wall_ns()
        if shown_ns < self._shown_wall_ns:
            # a step back in time (a replay's seek): the events kept are of later frames
            self.gpu_events.clear()
        self._shown_wall_ns = shown_ns
        if gpu is not None:
            self.gpu_events.extend(e for e in gpu.events if e.kind in GPU_ERROR_EVENTS)
        super().show_view(view)
        self.oom_kills += len(view.oom_kills)
        self.lost_lines += view.lost_lines or 0
        parts = [f"{self.oom_kills} OOM kill{'s' if self.oom_kills != 1 else ''}"] if self.oom_kills else []
        if self.lost_lines:
            parts.append(f"{self.lost_lines} lines lost (ring buffer overrun)")
        self.border_title = "Kernel events" + (", " + ", ".join(parts) if parts else "")

    def show_absent(self, reason: str) -> None:
        self.add_class("-absent")

    def unavailable_text(self) -> str:
        # one line, as the GPU pane's
        assert self.unavailable is not None
        return f"kernel events: {self.unavailable}"

    def render(self) -> Text:
        if self.unavailable:
            return Text(self.unavailable_text(), self.component_style("kernel-events-pane--muted"))
        view: KmsgView | None = self.view
        if view is None:
            return Text(WAITING)
        styles = {n: self.component_style(f"kernel-events-pane--{n}") for n in ("error", "warning", "muted")}
        tail = 1 if self.screen.has_class("-medium") else TAIL
        now_ns = self.shown_wall_ns()
        kernel = [(view.wall_ns_of(e, now_ns) / 1e9, e) for e in view.events[-tail:]]
        lines: list[tuple[float, Text]] = []
        for wall_s, e in kernel:
            if e.kind or e.level <= 3:
                style = styles["error"] if e.kind in ("oom-kill", "hung-task", "xid", "soft-lockup") or e.level <= 2 else styles["warning"]
            else:
                style = styles["muted"] if e.earlier else None
            lines.append((wall_s, Text(event_text(e, wall_s), style or "")))
        logged = [(view.wall_ns_of(e, now_ns) / 1e9, e) for e in view.events if e.kind == "xid"]
        for g in self.gpu_events:
            if not said_by_the_kernel(g, logged):
                style = styles["warning"] if g.kind == "ECC single-bit error" else styles["error"]
                lines.append((g.wall_ns / 1e9, Text(gpu_event_text(g), style)))
        if not lines:
            return Text("no kernel log records in the last minutes", styles["muted"])
        lines.sort(key=lambda line: line[0])
        return Text("\n").join(text for _, text in lines[-tail:])
