"""The top line: host, kernel, uptime, load, process and thread counts, state."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from probes.sources.processes import ProcessesView
from probes.sources.system import SystemView

from .format import uptime


class HeaderBar(Widget):
    DEFAULT_CSS = """
    HeaderBar { dock: top; height: 1; background: $panel; color: $foreground; }
    HeaderBar > .header-bar--name { color: $primary; text-style: bold; }
    HeaderBar > .header-bar--flag { background: $warning; color: $background; text-style: bold; }
    """

    COMPONENT_CLASSES = {"header-bar--name", "header-bar--flag"}

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.system: SystemView | None = None
        self.processes: ProcessesView | None = None
        self.flags: list[str] = []

    def update_views(self, system: SystemView | None, processes: ProcessesView | None) -> None:
        self.system = system or self.system
        self.processes = processes or self.processes
        self.refresh()

    def set_flags(self, flags: list[str]) -> None:
        self.flags = flags
        self.refresh()

    def render(self) -> Text:
        name = self.get_component_rich_style("header-bar--name")
        flag = self.get_component_rich_style("header-bar--flag")
        text = Text.assemble((" orac ", name))
        s = self.system
        if s is not None:
            load = " ".join(f"{v:.2f}" for v in s.load_avg)
            text.append(f" {s.hostname}  kernel {s.kernel}  up {uptime(s.uptime_s)}  load {load}")
        p = self.processes
        if p is not None:
            text.append(f"  procs {len(p.processes)}  threads {p.num_threads}")
        for f in self.flags:
            text.append("  ")
            text.append(f" {f} ", flag)
        return text
