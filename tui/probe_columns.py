"""Process-table columns that other probes provide while they run (SYSC/s, OFFCPU, GPUMEM, disk I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probes.contract import ProbeSpec, Views
from probes.model.frame import Frame
from probes.sources.gpu import GPU
from probes.sources.offcpu import OFFCPU
from probes.sources.process_io import PROCESS_IO, ProcessIoView
from probes.sources.syscalls import SYSCALLS

from .format import MISSING, human_bytes, human_rate, percent
from .line_table import Column
from .process_table import ProcessTable


@dataclass
class ProbeColumn:
    """A column fed by one probe's view: pid -> value, formatted per cell."""

    probe: ProbeSpec[Any, Any]
    key: str
    label: str
    width: int
    # a pid mapped to None: the probe cannot know (not orac's to read), shown as "-"
    values_of: Callable[[Any], dict[int, float | None]]
    text: Callable[[float], str]
    # the value of a pid missing from the view, where absence is a measurement
    # (a tracer that sees every syscall saw none); None shows an empty cell
    absent: float | None = None
    # narrower tables leave the column out (see Column.min_table_width)
    min_table_width: int = 0
    # refilled in place each tick: the column's cells read it
    values: dict[int, float | None] = field(default_factory=dict)

    def column(self) -> Column[Any]:
        values, text, absent = self.values, self.text, self.absent

        def cell(p: Any) -> str:
            if p.pid in values:
                value = values[p.pid]
                return MISSING if value is None else text(value)
            return "" if absent is None else text(absent)

        def sort_key(p: Any) -> float:
            value = values.get(p.pid, absent)
            return -1.0 if value is None else value

        return Column(
            self.key, self.label, self.width, cell, sort_key,
            right=True, descending=True, min_table_width=self.min_table_width,
        )

    def update(self, table: ProcessTable, frame: Frame, views: Views) -> None:
        view = views.get(self.probe)
        if view is None:
            # Keep the column through the one tick with no view yet (first
            # sample); drop it when the probe is not running at all.
            if self.probe.name not in frame.samples:
                table.hide_column(self.key)
            return
        self.values.clear()
        self.values.update(self.values_of(view))
        table.show_column(self.column())


def probe_columns() -> list[ProbeColumn]:
    return [
        # Below 90 columns the command needs the room more (30 columns at 80); the syscalls pane has the figure.
        ProbeColumn(
            SYSCALLS, "syscalls", "SYSC/s", 6,
            lambda view: {p.pid: p.total.calls_per_s for p in view.processes}, human_rate, absent=0.0,
            min_table_width=90,
        ),
        # At 80 columns the command keeps its room; the off-CPU pane has the figure.
        ProbeColumn(
            OFFCPU, "offcpu", "OFFCPU", 6, lambda view: view.off_cpu_by_pid(), lambda v: f"{v:.2f}", min_table_width=100,
        ),
        ProbeColumn(GPU, "gpu_memory", "GPUMEM", 6, lambda view: view.memory_by_pid(), human_bytes),
        # Where the command keeps its room: 80 columns show none, 120 the bytes, 140 the delay too.
        ProbeColumn(
            PROCESS_IO, "io_read", "DISKR/s", 7, lambda view: io_values(view, "read_bytes_per_s"), human_bytes,
            min_table_width=120,
        ),
        ProbeColumn(
            PROCESS_IO, "io_write", "DISKW/s", 7, lambda view: io_values(view, "write_bytes_per_s"), human_bytes,
            min_table_width=120,
        ),
        ProbeColumn(
            PROCESS_IO, "io_delay", "IOD%", 5, lambda view: io_values(view, "blkio_delay_percent"), percent,
            min_table_width=140,
        ),
    ]


def io_values(view: ProcessIoView, field: str) -> dict[int, float | None]:
    """Each process's rate `field`; None for those orac may not read (and every delay without delay accounting)."""
    values: dict[int, float | None] = {pid: getattr(rates, field) for pid, rates in view.rates.items()}
    values.update(dict.fromkeys(view.denied))
    return values
