"""CPU and memory panes, both fed by the "cpu" probe's SystemView."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text

from probes.contract import ProbeSpec
from probes.sources.system import SYSTEM, CpuUsage, SystemView

from .format import MISSING, human_bytes, human_rate, percent
from .text_lines import TextPane

WAITING = "waiting for the second sample..."


def bar(width: int, parts: list[tuple[float, Style]], empty: Style) -> Text:
    """A bar `width` cells wide made of coloured parts given in percent."""
    text = Text()
    used = 0
    filled = 0.0
    for value, style in parts:
        filled += max(0.0, value) * width / 100.0
        cells = min(width, round(filled)) - used
        if cells > 0:
            text.append("|" * cells, style)
            used += cells
    if used < width:
        text.append(" " * (width - used), empty)
    return text


class CpuPane(TextPane):
    """Per-CPU busy bars split by mode, switch and interrupt rates, PSI."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = SYSTEM

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "cpu-pane--user",
        "cpu-pane--system",
        "cpu-pane--irq",
        "cpu-pane--steal",
        "cpu-pane--iowait",
        "cpu-pane--label",
        "cpu-pane--empty",
    }

    DEFAULT_CSS = """
    CpuPane {
        height: auto;
        min-height: 5;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    CpuPane > .cpu-pane--user { color: $success; }
    CpuPane > .cpu-pane--system { color: $error; }
    CpuPane > .cpu-pane--irq { color: $secondary; }
    CpuPane > .cpu-pane--steal { color: $accent; }
    CpuPane > .cpu-pane--iowait { color: $foreground-muted; }
    CpuPane > .cpu-pane--label { color: $primary; text-style: bold; }
    CpuPane > .cpu-pane--empty { color: $foreground-darken-3; }
    """

    def on_mount(self) -> None:
        self.border_title = "CPU"
        self.border_subtitle = (
            "[$success]user[/] [$error]sys[/] [$secondary]irq[/] [$accent]steal[/] [$foreground-muted]iowait[/]"
        )

    def show_view(self, view: SystemView) -> None:
        super().show_view(view)
        self.border_title = f"CPU {view.cpu_total.busy_percent:.1f}%"

    def _styles(self) -> dict[str, Style]:
        return {
            name: self.component_style(f"cpu-pane--{name}")
            for name in ("user", "system", "irq", "steal", "iowait", "label", "empty")
        }

    def _cpu_line(self, label: str, usage: CpuUsage, width: int, s: dict[str, Style]) -> Text:
        value = f"{usage.busy_percent:5.1f}%"
        bar_width = max(1, width - len(label) - len(value) - 3)
        parts = [
            (usage.user_percent, s["user"]),
            (usage.system_percent, s["system"]),
            (usage.irq_percent, s["irq"]),
            (usage.steal_percent, s["steal"]),
            (usage.iowait_percent, s["iowait"]),
        ]
        return Text.assemble((label, s["label"]), "[", bar(bar_width, parts, s["empty"]), "]", value)

    def text_lines(self) -> list[Text]:
        if self.unavailable:
            return Text(self.unavailable_text()).split("\n", allow_blank=True)
        view: SystemView | None = self.view
        if view is None:
            return [Text(WAITING)]
        s = self._styles()
        width = self.content_size.width or 60
        n = len(view.cpus)
        # Many-core boxes get columns so the pane stays a few lines high.
        columns = 1 if n <= 4 else 2 if n <= 16 else 4 if n <= 64 else 8
        while columns > 1 and width // columns < 18:
            columns //= 2
        rows = math.ceil(n / columns)
        col_width = (width - (columns - 1)) // columns
        label_width = len(str(max((c.cpu_id or 0) for c in view.cpus))) if n else 1
        lines = []
        for r in range(rows):
            line = Text()
            for c in range(columns):
                i = c * rows + r
                if i >= n:
                    break
                if c:
                    line.append(" ")
                cpu = view.cpus[i]
                line.append_text(self._cpu_line(f"{cpu.cpu_id:>{label_width}}", cpu, col_width, s))
            lines.append(line)
        rates = Text.assemble(
            ("ctxsw ", s["label"]), f"{human_rate(view.context_switches_per_s)}/s  ",
            ("intr ", s["label"]), f"{human_rate(view.interrupts_per_s)}/s",
        )
        # Recordings made before the probe kept /proc/stat's `processes`
        # have no fork rate; every kernel orac runs on has the line.
        if view.forks_per_s is not None:
            rates.append_text(Text.assemble("  ", ("forks ", s["label"]), f"{human_rate(view.forks_per_s)}/s"))
        lines.append(rates)
        # avg10 of "some" and "full" stall, in percent; the longer label only
        # where it fits, so the line never wraps.
        psi = Text.assemble(("PSI some/full avg10 " if width >= 52 else "PSI ", s["label"]))
        for resource in ("cpu", "memory", "io"):
            pressure = view.pressure.get(resource)
            if pressure is None:
                value = f"{MISSING}/{MISSING}"
            else:
                value = f"{percent(pressure.some_avg10)}/{percent(pressure.full_avg10)}"
            psi.append(f" {resource[:3]} ", s["label"])
            psi.append(value)
        lines.append(psi)
        return lines


class MemoryPane(TextPane):
    """Memory and swap bars with the numbers behind them, page fault rates.

    The bar is used (MemTotal - MemAvailable, as free and top count it), then
    what is cached but reclaimable (MemAvailable - MemFree), then free. Under
    it, cache is free's buff/cache (Buffers + Cached + SReclaimable) and shm
    (Shmem) the part of it that cannot be dropped, so it is inside used too.
    """

    PROBE: ClassVar[ProbeSpec[Any, Any]] = SYSTEM

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "memory-pane--used",
        "memory-pane--cached",
        "memory-pane--swap",
        "memory-pane--label",
        "memory-pane--empty",
    }

    DEFAULT_CSS = """
    MemoryPane {
        height: auto;
        min-height: 5;
        width: 40%;
        max-width: 46;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    MemoryPane > .memory-pane--used { color: $success; }
    MemoryPane > .memory-pane--cached { color: $accent; }
    MemoryPane > .memory-pane--swap { color: $error; }
    MemoryPane > .memory-pane--label { color: $primary; text-style: bold; }
    MemoryPane > .memory-pane--empty { color: $foreground-darken-3; }
    """

    def on_mount(self) -> None:
        self.border_title = "Memory"

    def show_view(self, view: SystemView) -> None:
        super().show_view(view)
        self.border_title = f"Memory {100 * view.memory_used_bytes / (view.memory_total_bytes or 1):.0f}%"

    def text_lines(self) -> list[Text]:
        if self.unavailable:
            return Text(self.unavailable_text()).split("\n", allow_blank=True)
        view: SystemView | None = self.view
        if view is None:
            return [Text(WAITING)]
        s = {
            name: self.component_style(f"memory-pane--{name}")
            for name in ("used", "cached", "swap", "label", "empty")
        }
        width = self.content_size.width or 40
        total = view.memory_total_bytes or 1
        reclaimable = max(0, view.memory_available_bytes - view.memory_free_bytes)
        mem_value = f" {human_bytes(view.memory_used_bytes)}/{human_bytes(view.memory_total_bytes)}"
        mem_bar = bar(
            max(1, width - 5 - len(mem_value)),
            [(100 * view.memory_used_bytes / total, s["used"]), (100 * reclaimable / total, s["cached"])],
            s["empty"],
        )
        swap_total = view.swap_total_bytes
        swap_value = f" {human_bytes(view.swap_used_bytes)}/{human_bytes(swap_total)}"
        swap_pct = 100 * view.swap_used_bytes / swap_total if swap_total else 0.0
        swap_bar = bar(max(1, width - 5 - len(swap_value)), [(swap_pct, s["swap"])], s["empty"])
        return [
            Text.assemble(("Mem", s["label"]), "[", mem_bar, "]", mem_value),
            Text.assemble(("Swp", s["label"]), "[", swap_bar, "]", swap_value),
            Text.assemble(
                ("used ", s["used"]), human_bytes(view.memory_used_bytes),
                ("  avail ", s["label"]), human_bytes(view.memory_available_bytes),
            ),
            Text.assemble(
                ("cache ", s["cached"]), human_bytes(view.memory_buffers_bytes + view.memory_cached_bytes),
                ("  shm ", s["label"]), human_bytes(view.memory_shmem_bytes),
            ),
            Text.assemble(
                ("faults ", s["label"]), f"{human_rate(view.page_faults_per_s)}/s",
                ("  major ", s["label"]), f"{human_rate(view.major_page_faults_per_s)}/s",
            ),
        ]
