"""CPU quotas: each cgroup with a quota, how much of it it used and how long it sat throttled.

Figures are the cgroups probe's view (probes.sources.cgroups gives each
one's source and formula). The pane takes no room while no cgroup has a
quota, which is most machines outside containers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text

from probes.contract import ProbeSpec
from probes.sources.cgroups import CGROUPS, CgroupCpuView, CgroupsView
from probes.sources.processes import short_cgroup

from .format import MISSING, percent
from .pane import Pane

# The busiest first; a box with hundreds of quota'd containers shows these.
MAX_ROWS = 6


def is_throttled(cgroup: CgroupCpuView) -> bool:
    """Its runqueues sat throttled for some of the interval: the quota, not the work, set its CPU."""
    return bool(cgroup.throttled_percent)


def throttled_cgroups(view: CgroupsView) -> set[str]:
    """The process table's names (short_cgroup) of the cgroups throttled in the interval."""
    return {short_cgroup(c.path) for c in view.cgroups if is_throttled(c)}


def _order(cgroup: CgroupCpuView) -> tuple[float, float]:
    return (-(cgroup.throttled_percent or 0.0), -(cgroup.usage_cpus or 0.0))


class CgroupsPane(Pane):
    """A line per cgroup with a CPU quota: quota, used, used of quota, throttled."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = CGROUPS

    COMPONENT_CLASSES: ClassVar[set[str]] = {"cgroups-pane--label", "cgroups-pane--warning"}

    DEFAULT_CSS = """
    CgroupsPane {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    CgroupsPane.-empty, CgroupsPane.-absent, CgroupsPane.-unavailable { display: none; }
    CgroupsPane > .cgroups-pane--label { color: $primary; text-style: bold; }
    CgroupsPane > .cgroups-pane--warning { color: $warning; text-style: bold; }
    """

    def on_mount(self) -> None:
        self.border_title = "CPU quotas"
        self.add_class("-empty")

    def show_view(self, view: CgroupsView) -> None:
        self.remove_class("-absent")
        self.set_class(not view.cgroups, "-empty")
        super().show_view(view)
        throttled = sum(1 for c in view.cgroups if is_throttled(c))
        self.border_title = f"CPU quotas (cgroup v{view.version}), {throttled} throttled"
        hidden = len(view.cgroups) - MAX_ROWS
        self.border_subtitle = f"{hidden} more" if hidden > 0 else ""

    def show_absent(self, reason: str) -> None:
        self.add_class("-absent")

    def render(self) -> Text:
        view: CgroupsView | None = self.view
        if view is None or self.unavailable:
            return Text("")
        label = self.get_component_rich_style("cgroups-pane--label")
        warning = self.get_component_rich_style("cgroups-pane--warning")
        if self.screen.has_class("-medium"):
            return self._summary(view, label, warning)
        lines = [Text(f"{'QUOTA':>6} {'USED':>6} {'OF QUOTA':>8} {'THROTTLED':>9} {'PERIODS':>7}  CGROUP", label)]
        for c in sorted(view.cgroups, key=_order)[:MAX_ROWS]:
            used = MISSING if c.usage_cpus is None else f"{c.usage_cpus:.2f}"
            of_quota = MISSING if c.usage_of_quota_percent is None else f"{c.usage_of_quota_percent:.0f}%"
            throttled = MISSING if c.throttled_percent is None else f"{c.throttled_percent:.0f}%"
            periods = MISSING if c.throttled_periods_percent is None else f"{percent(c.throttled_periods_percent, 0)}%"
            line = Text(f"{c.quota_cpus:>6.2f} {used:>6} {of_quota:>8} {throttled:>9} {periods:>7}  {c.path}")
            if is_throttled(c):
                line.stylize(warning, 23, 40)
            lines.append(line)
        return Text("\n").join(lines)

    @staticmethod
    def _summary(view: CgroupsView, label: Style, warning: Style) -> Text:
        """One line on a short terminal: the most throttled cgroup, as the process table names it."""
        throttled = sorted((c for c in view.cgroups if is_throttled(c)), key=_order)
        text = Text("quotas ", label)
        if not throttled:
            text.append(f"{len(view.cgroups)}, none throttled")
            return text
        worst = throttled[0]
        text.append(f"{len(throttled)} of {len(view.cgroups)} throttled: ")
        text.append(f"{short_cgroup(worst.path)} {percent(worst.throttled_percent, 0)}%", warning)
        text.append(f" at its quota of {worst.quota_cpus:.2f} CPU")
        return text
