"""The top line: host, kernel, uptime, load, process and thread counts, orac's own cost, state."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from probes.sources.own_cost import OwnCostView
from probes.sources.processes import ProcessesView
from probes.sources.system import SystemView

from .format import human_bytes, uptime
from .text_lines import TextLines


class HeaderBar(TextLines, Widget):
    DEFAULT_CSS = """
    HeaderBar { dock: top; height: 1; background: $panel; color: $foreground; }
    HeaderBar > .header-bar--name { color: $primary; text-style: bold; }
    HeaderBar > .header-bar--flag { background: $warning; color: $background; text-style: bold; }
    HeaderBar > .header-bar--cost { color: $foreground-muted; }
    """

    COMPONENT_CLASSES = {"header-bar--name", "header-bar--flag", "header-bar--cost"}

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.system: SystemView | None = None
        self.processes: ProcessesView | None = None
        self.own_cost: OwnCostView | None = None
        self.flags: list[str] = []
        # "frames 2.4 s apart" while the screen falls behind its interval
        self.behind: str | None = None

    def update_views(
        self, system: SystemView | None, processes: ProcessesView | None, own_cost: OwnCostView | None = None,
    ) -> None:
        self.system = system or self.system
        self.processes = processes or self.processes
        self.own_cost = own_cost or self.own_cost
        self.refresh_lines()

    def set_flags(self, flags: list[str]) -> None:
        self.flags = flags
        self.refresh()

    def set_behind(self, behind: str | None) -> None:
        if behind != self.behind:
            self.behind = behind
            self.refresh()

    def render(self) -> Text:
        name = self.component_style("header-bar--name")
        flag = self.component_style("header-bar--flag")
        text = Text.assemble((" orac ", name))
        s = self.system
        if s is not None:
            load = " ".join(f"{v:.2f}" for v in s.load_avg)
            text.append(f" {s.hostname}  kernel {s.kernel}  up {uptime(s.uptime_s)}  load {load}")
        p = self.processes
        if p is not None:
            text.append(f"  procs {len(p.processes)}  threads {p.num_threads}")
        c = self.own_cost
        if c is not None:
            cost = f"  orac {c.cpu_percent:.1f}% {human_bytes(c.rss_bytes)}"
            if c.bpf_cpu_percent is not None:
                cost += f" bpf {c.bpf_cpu_percent:.1f}%"
            text.append(cost, self.component_style("header-bar--cost"))
        for f in ([f"behind: {self.behind}"] if self.behind else []) + self.flags:
            text.append("  ")
            text.append(f" {f} ", flag)
        return text
