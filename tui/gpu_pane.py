"""The GPU pane: one card per NVIDIA GPU, and the processes using them.

Fed by the "gpu" probe's GpuView. The app also hands it the host's process
view every tick (`set_host_processes`), so GPU processes show their user,
CPU % and command; Enter on one opens the process screen, through the same
message the process table posts.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import DataTable

from probes.contract import ProbeSpec, Unavailable
from probes.host.gpm import IN_USE
from probes.host.nvml_events import ALL_GPUS, SERIOUS, GpuEvent
from probes.sources.gpu import (
    GPU,
    GpuDeviceView,
    GpuProcessView,
    GpuView,
    MigInstanceSample,
)
from probes.sources.offcpu import OFFCPU
from probes.sources.processes import ProcessesView, ProcessView

from .format import MISSING, human_bytes, percent
from .line_table import fit
from .pane import Pane
from .process_table import ProcessTable
from .system_panes import WAITING, bar

RECENT_EVENTS = 4

# Throttle reasons that say nothing is wrong: an idle GPU, or clocks someone set.
BENIGN_REASONS = frozenset({"GPU idle", "applications clocks setting", "display clocks setting"})

# key, label, width (0: the rest), right-aligned
COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("gpu", "GPU", 5, False),
    ("pid", "PID", 7, True),
    ("user", "USER", 9, False),
    ("type", "TYPE", 4, False),
    ("memory", "GPU MEM", 7, True),
    ("sm", "SM%", 5, True),
    ("cpu", "CPU%", 5, True),
    # its threads' time off CPU (eBPF), "D" when most is uninterruptible (I/O): a GPU idle
    # beside a busy CPU% waits on its host code, beside an OFFCPU on what its threads wait for
    ("offcpu", "OFFCPU", 6, True),
    ("command", "COMMAND", 0, False),
)
TYPE_LETTERS = {"compute": "C", "graphics": "G", "compute+graphics": "C+G"}
MIN_COMMAND_WIDTH = 12


def _value(value: float | None, unit: str, digits: int = 0) -> str:
    return MISSING if value is None else f"{value:.{digits}f}{unit}"


def _used_of_total(used: int | None, total: int | None) -> str:
    return f"{human_bytes(used)}/{human_bytes(total)}"


def _shape(view: GpuView) -> tuple[int, ...]:
    """What the height of the device cards depends on."""
    return (len(view.devices), *(len(d.mig_instances) for d in view.devices), not view.processes)


def _mib(mib_per_s: float | None) -> str:
    return human_bytes(None if mib_per_s is None else int(mib_per_s * 1024 * 1024))


def _share(used: int | None, total: int | None) -> float | None:
    return None if used is None or not total else 100 * used / total


class GpuDevices(Widget):
    """The device cards, drawn as text like the CPU pane."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "gpu-devices--label",
        "gpu-devices--name",
        "gpu-devices--sm",
        "gpu-devices--memory-busy",
        "gpu-devices--vram",
        "gpu-devices--empty",
        "gpu-devices--warning",
        "gpu-devices--error",
        "gpu-devices--muted",
    }

    DEFAULT_CSS = """
    GpuDevices {
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    GpuDevices > .gpu-devices--label { color: $primary; text-style: bold; }
    GpuDevices > .gpu-devices--name { color: $foreground; text-style: bold; }
    GpuDevices > .gpu-devices--sm { color: $success; }
    GpuDevices > .gpu-devices--memory-busy { color: $secondary; }
    GpuDevices > .gpu-devices--vram { color: $accent; }
    GpuDevices > .gpu-devices--empty { color: $foreground-darken-3; }
    GpuDevices > .gpu-devices--warning { color: $warning; text-style: bold; }
    GpuDevices > .gpu-devices--error { color: $error; text-style: bold; }
    GpuDevices > .gpu-devices--muted { color: $foreground-muted; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: GpuView | None = None
        # (reason, remedy) when the probe cannot run
        self.unavailable: Unavailable | None = None
        # the last clock and power-state changes shown, oldest first (views carry only their interval's)
        self.recent_events: deque[GpuEvent] = deque(maxlen=RECENT_EVENTS)
        self._shown_wall_ns = 0

    def render(self) -> Text:
        s = {
            name: self.get_component_rich_style(f"gpu-devices--{name}")
            for name in ("label", "name", "sm", "memory-busy", "vram", "empty", "warning", "error", "muted")
        }
        if self.unavailable is not None:
            # One line: most boxes have no GPU, and the processes want the rows.
            reason, remedy = self.unavailable
            line = Text.assemble(("GPU ", s["label"]), (reason, s["error"]))
            if remedy:
                line.append_text(Text.assemble(("  fix: ", s["label"]), remedy))
            return line
        if self.view is None:
            return Text(WAITING)
        width = self.content_size.width or 80
        lines = []
        for device in self.view.devices:
            lines.extend(self._card(device, width, s))
        lines.append(self._events_line(s))
        if not self.view.processes:
            lines.append(Text("no processes are using the GPUs", s["muted"]))
        return Text("\n").join(lines)

    def add_events(self, events: tuple[GpuEvent, ...], shown_wall_ns: int) -> None:
        """The events of a frame shown at `shown_wall_ns`; a step back in time (a replay's seek) starts the list again.

        Faults need no list here: every sample carries the last minutes' (`recent_faults`).
        """
        if shown_wall_ns < self._shown_wall_ns:
            self.recent_events.clear()
        self._shown_wall_ns = shown_wall_ns
        self.recent_events.extend(e for e in events if e.kind not in SERIOUS)

    def _events_line(self, s: dict[str, Style]) -> Text:
        assert self.view is not None
        line = Text("events ", s["label"])
        faults = self.view.recent_faults[-RECENT_EVENTS:]
        shown = sorted((*faults, *self.recent_events), key=lambda e: e.wall_ns)
        if not shown:
            line.append("none seen", s["muted"])
        # faults first, then the rest, newest first in each: a narrow screen cuts the oldest changes
        ordered = [e for e in reversed(shown) if e.kind in SERIOUS] + [e for e in reversed(shown) if e.kind not in SERIOUS]
        for i, event in enumerate(ordered):
            when = time.strftime("%H:%M:%S", time.localtime(event.wall_ns / 1e9))
            what = f"Xid {event.data}" if event.kind == "Xid" else event.kind
            gpu = "?" if event.gpu_index is None else str(event.gpu_index)
            style = s["error"] if event.kind in SERIOUS else s["warning"] if "ECC" in event.kind else s["muted"]
            line.append_text(Text.assemble("  " if i else "", f"{when} GPU {gpu} ", (what, style)))
        whole = self.view.events_unavailable.get(ALL_GPUS)
        if whole:
            line.append(f"  ({whole})", s["muted"])
        silent = sorted(i for i in self.view.events_unavailable if i != ALL_GPUS)
        if silent:
            line.append(f"  (GPU {', '.join(map(str, silent))}: {self.view.events_unavailable[silent[0]]})", s["muted"])
        return line

    def _card(self, d: GpuDeviceView, width: int, s: dict[str, Style]) -> list[Text]:
        title = Text.assemble(
            (f"GPU {d.index} ", s["label"]), (d.name, s["name"]),
            "  ", _value(d.temperature_c, "°C"),
            ("  fan ", s["label"]), _value(d.fan_percent, "%"),
            ("  power ", s["label"]), f"{_value(d.power_draw_w, '')}/{_value(d.power_limit_w, ' W')}",
        )
        if d.mig_enabled:
            title.append("  MIG", s["warning"])
        if d.lost:
            title.append("  LOST", s["error"])
        vram = _used_of_total(d.memory_used_bytes, d.memory_total_bytes)
        gpm = d.gpm if d.gpm is not None and d.gpm.sm_activity_percent is not None else None
        if gpm is not None:
            # GPM's own figures lead: how much of the SMs, tensor cores and DRAM bandwidth the work used.
            shares = [
                ("SM", gpm.sm_activity_percent, s["sm"]),
                ("TENSOR", gpm.tensor_activity_percent, s["sm"]),
                ("DRAM", gpm.dram_bw_percent, s["memory-busy"]),
            ]
        else:
            # NVML's "utilization": the share of time some kernel ran, however little of the GPU it used.
            shares = [("BUSY", d.sm_util_percent, s["sm"]), ("MEM", d.memory_util_percent, s["memory-busy"])]
        # The bars share the line: labels, brackets and values are fixed, the bars take the rest.
        fixed = sum(len(f"{label}[] 100%  ") for label, _, _ in shares) + len("VRAM[] ") + len(vram)
        bar_width = max(4, (width - fixed) // (len(shares) + 1))
        parts: list[Any] = []
        for label, value, style in shares:
            parts += [*self._bar(label, value, f"{_value(value, '%'):>4}", bar_width, style, s), "  "]
        bars = Text.assemble(
            *parts, *self._bar("VRAM", _share(d.memory_used_bytes, d.memory_total_bytes), vram, bar_width, s["vram"], s)
        )
        if d.lost:
            bars = Text("NVML says this GPU is lost (it fell off the bus): no figures until a GPU reset or reboot", s["error"])
        # ECC first: on a narrow screen the line is cut at the right, and an
        # uncorrected error matters more than the PCIe figures.
        details = Text.assemble(
            ("ECC ", s["label"]), self._ecc(d, s),
            ("  clock ", s["label"]), f"SM {_value(d.sm_clock_mhz, '')} mem {_value(d.memory_clock_mhz, ' MHz')}",
            ("  PCIe ", s["label"]), self._link(d, s),
            f"rx {human_bytes(d.pcie_rx_bytes_per_s)}/s tx {human_bytes(d.pcie_tx_bytes_per_s)}/s",
        )
        lines = [title, bars, self._gpm_line(d, s), details, self._throttle(d, s), self._health(d, s)]
        lines.extend(self._mig_line(m, bar_width, s) for m in d.mig_instances)
        return lines

    @staticmethod
    def _bar(label: str, value: float | None, text: str, width: int, fill: Style, s: dict[str, Style]) -> list[Any]:
        parts = [] if value is None else [(value, fill)]
        return [(label, s["label"]), "[", bar(width, parts, s["empty"]), "] ", text]

    @staticmethod
    def _gpm_line(d: GpuDeviceView, s: dict[str, Style]) -> Text:
        gpm = d.gpm
        if gpm is None or gpm.sm_activity_percent is None:
            line = Text("GPM ", s["label"])
            if gpm is not None and gpm.problem:
                line.append(gpm.problem, s["warning"] if gpm.problem == IN_USE else s["muted"])
            else:
                line.append("waiting for a second sample" if gpm is not None else "not in this recording", s["muted"])
            return line.append("; BUSY: time any kernel ran", s["muted"])
        # BUSY is NVML's figure (a kernel ran), beside GPM's: far apart, the work is small or stuck.
        line = Text.assemble(
            ("occupancy ", s["label"]), _value(gpm.sm_occupancy_percent, "%"),
            ("  FP16 ", s["label"]), _value(gpm.fp16_percent, "%"),
            (" FP32 ", s["label"]), _value(gpm.fp32_percent, "%"),
            (" FP64 ", s["label"]), _value(gpm.fp64_percent, "%"),
            ("  BUSY ", s["label"]), _value(d.sm_util_percent, "%"),
        )
        if gpm.tensor_activity_percent:
            # which tensor pipes: half precision (HMMA), integer (IMMA), double (DFMA)
            line.append_text(Text.assemble(
                ("  HMMA ", s["label"]), _value(gpm.hmma_tensor_percent, "%"),
                (" IMMA ", s["label"]), _value(gpm.imma_tensor_percent, "%"),
                (" DFMA ", s["label"]), _value(gpm.dfma_tensor_percent, "%"),
            ))
        return line.append_text(Text.assemble(
            ("  NVLink ", s["label"]), f"rx {_mib(gpm.nvlink_rx_mib_per_s)}/s tx {_mib(gpm.nvlink_tx_mib_per_s)}/s",
        ))

    @staticmethod
    def _ecc(d: GpuDeviceView, s: dict[str, Style]) -> Text:
        text = Text(f"corr {_value(d.ecc_corrected_volatile, '')} uncorr ")
        text.append(_value(d.ecc_uncorrected_volatile, ""), s["error"] if d.ecc_uncorrected_volatile else Style())
        new = sum(n for n in (d.ecc_corrected_new, d.ecc_uncorrected_new) if n)
        if new:
            text.append(f" (+{new})", s["warning"])
        return text

    @staticmethod
    def _health(d: GpuDeviceView, s: dict[str, Style]) -> Text:
        """Memory rows remapped to spares, and the NVLinks: up, and their error counters."""
        if d.remapped_rows_correctable is None and d.retired_pages_single_bit is not None:
            # before Ampere: pages retired, not rows remapped
            line = Text("pages retired ", s["label"])
            line.append(f"single-bit {d.retired_pages_single_bit} double-bit ")
            line.append(str(d.retired_pages_double_bit), s["error"] if d.retired_pages_double_bit else Style())
            if d.retire_pending:
                line.append(" pending: reset the GPU", s["warning"])
        else:
            line = Text("rows remapped ", s["label"])
            line.append(f"corr {_value(d.remapped_rows_correctable, '')} uncorr ")
            line.append(_value(d.remapped_rows_uncorrectable, ""), s["error"] if d.remapped_rows_uncorrectable else Style())
            if d.remap_failed:
                line.append(" remapping failed", s["error"])
            elif d.remap_pending:
                line.append(" pending: reset the GPU", s["warning"])
        line.append("  NVLink ", s["label"])
        if not d.nvlinks:
            return line.append("none", s["muted"])
        up = sum(1 for link in d.nvlinks if link.active)
        down = [str(link.link) for link in d.nvlinks if link.active is False]
        line.append(f"{up}/{len(d.nvlinks)} up", s["error"] if down else Style())
        if down:
            line.append(f" (down: {', '.join(down)})", s["error"])

        def total(values: list[int | None]) -> str:
            known = [v for v in values if v is not None]
            return str(sum(known)) if known else MISSING

        errors = (
            ("replay", total([link.replay_errors for link in d.nvlinks])),
            ("recovery", total([link.recovery_errors for link in d.nvlinks])),
            ("CRC", total([link.crc_errors for link in d.nvlinks])),
        )
        line.append("  errors ", s["label"])
        return line.append(" ".join(f"{name} {n}" for name, n in errors))

    @staticmethod
    def _link(d: GpuDeviceView, s: dict[str, Style]) -> Text:
        if d.pcie_link_gen is None and d.pcie_link_width is None:
            return Text()
        link = Text(f"Gen{_value(d.pcie_link_gen, '')} x{_value(d.pcie_link_width, '')}")
        if d.pcie_link_width is not None and d.pcie_link_width_max and d.pcie_link_width < d.pcie_link_width_max:
            # Width does not drop to save power as the generation does: a narrower link is a fault.
            link.append(f" of x{d.pcie_link_width_max}", s["error"])
        elif d.pcie_link_gen is not None and d.pcie_link_gen_max and d.pcie_link_gen < d.pcie_link_gen_max:
            link.append(f" of Gen{d.pcie_link_gen_max}", s["muted"])
        return link.append(" ")

    @staticmethod
    def _throttle(d: GpuDeviceView, s: dict[str, Style]) -> Text:
        line = Text("throttle ", s["label"])
        if d.throttle_reasons is None:
            line.append(MISSING)
        elif not d.throttle_reasons:
            line.append("none", s["muted"])
        else:
            for i, reason in enumerate(d.throttle_reasons):
                if i:
                    line.append(", ")
                line.append(reason, s["muted"] if reason in BENIGN_REASONS else s["warning"])
        held = {policy: share for policy, share in d.held_back_percent.items() if share >= 0.5}
        if held:
            # The driver's own count of the interval's time at a lower clock, by cause.
            line.append("  held back ", s["label"])
            line.append(" ".join(f"{policy} {share:.0f}%" for policy, share in sorted(held.items(), key=lambda i: -i[1])))
        return line

    def _mig_line(self, m: MigInstanceSample, bar_width: int, s: dict[str, Style]) -> Text:
        # GPU instance.compute instance, as the process rows write it too
        ids = f"{_value(m.gpu_instance_id, '')}.{_value(m.compute_instance_id, '')}"
        memory = _used_of_total(m.memory_used_bytes, m.memory_total_bytes)
        line = Text.assemble(
            ("  MIG GI.CI ", s["label"]), f"{ids:<5} ",
            *self._bar("VRAM", _share(m.memory_used_bytes, m.memory_total_bytes), memory, bar_width, s["vram"], s),
        )
        gpm = m.gpm
        if gpm is not None and gpm.sm_activity_percent is not None:
            # its GPU instance's own counters
            return line.append_text(Text.assemble(
                ("  SM ", s["label"]), _value(gpm.sm_activity_percent, "%"),
                ("  TENSOR ", s["label"]), _value(gpm.tensor_activity_percent, "%"),
                ("  DRAM ", s["label"]), _value(gpm.dram_bw_percent, "%"),
            ))
        return line.append_text(Text.assemble(
            ("  BUSY ", s["label"]), _value(m.sm_util_percent, "%"),
            ("  MEM ", s["label"]), _value(m.memory_util_percent, "%"),
        ))


class GpuPane(Pane):
    """NVIDIA GPUs: a card per device, then the processes using them."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = GPU
    # each GPU process's threads' time off CPU, beside its SM share
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (OFFCPU,)

    DEFAULT_CSS = """
    GpuPane {
        height: auto;
        padding: 0 1;
    }
    GpuPane > DataTable {
        height: auto;
        max-height: 12;
        margin-top: 1;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    GpuPane.-no-processes > DataTable { display: none; }
    GpuPane.-unavailable { border: none; height: 1; }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host: dict[int, ProcessView] = {}
        # row key -> pid of the rows on screen, in order
        self._rows: dict[str, int] = {}
        self._command_width = 0
        self._rebuild_pending = False

    def compose(self) -> ComposeResult:
        yield GpuDevices()
        yield DataTable(cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        self.border_title = "GPU"
        self.add_class("-no-processes")

    @property
    def devices(self) -> GpuDevices:
        return self.query_one(GpuDevices)

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one(DataTable)

    # data in

    def show_view(self, view: GpuView) -> None:
        devices = self.devices
        # As Pane.show_view: relayout only when the cards' height can have changed.
        relayout = self.view is None or self.unavailable is not None or _shape(view) != _shape(self.view)
        self.view = view
        self.unavailable = None
        self.remove_class("-unavailable")
        devices.view, devices.unavailable = view, None
        devices.add_events(view.events, self.shown_wall_ns())
        devices.refresh(layout=relayout)
        count = len(view.devices)
        driver = f", driver {view.driver_version}" if view.driver_version else ""
        self.border_title = f"GPU {count} device{'s' if count != 1 else ''}{driver}"
        self.border_subtitle = f"NVML {view.nvml_time_ns / 1e6:.1f} ms/tick"
        self._schedule_rebuild()

    def show_unavailable(self, reason: str, remedy: str) -> None:
        if self.unavailable == (reason, remedy):
            return
        self.unavailable = (reason, remedy)
        self.add_class("-unavailable")
        self.view = None
        devices = self.devices
        devices.view, devices.unavailable = None, (reason, remedy)
        devices.refresh(layout=True)
        self.border_title = "GPU"
        self.border_subtitle = ""
        self._schedule_rebuild()

    def set_host_processes(self, processes_view: ProcessesView | None) -> None:
        """The host's processes, to give GPU processes their user, CPU % and command."""
        self.host = {} if processes_view is None else {p.pid: p for p in processes_view.processes}
        self._schedule_rebuild()

    # the process table

    def _schedule_rebuild(self) -> None:
        # show_view and set_host_processes arrive together each tick: one rebuild for both.
        if not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_pending = False
        view: GpuView | None = self.view
        processes = view.processes if view is not None else ()
        self.set_class(not processes, "-no-processes")
        table = self.table
        # COMMAND takes what the other columns (and each column's padding,
        # and the scrollbar) leave; the table is hidden, so 0 wide, before its first row.
        width = table.size.width or self.content_size.width
        fixed = sum(w + 2 * table.cell_padding for _, _, w, _ in COLUMNS if w)
        command_width = max(MIN_COMMAND_WIDTH, width - fixed - 2 * table.cell_padding - 1)
        rows = {self._key(p): (p.pid, self._cells(p, command_width)) for p in processes}
        if command_width == self._command_width and list(rows) == list(self._rows):
            # Same rows in the same order: update in place, so the cursor and scroll stay.
            for key, (_, cells) in rows.items():
                for (column, _, _, _), cell in zip(COLUMNS, cells):
                    table.update_cell(key, column, cell)
            return
        keys = list(self._rows)
        selected = keys[table.cursor_row] if 0 <= table.cursor_row < len(keys) else None
        table.clear(columns=True)
        for key, label, width, right in COLUMNS:
            table.add_column(Text(label, justify="right" if right else "left"), width=width or command_width, key=key)
        for key, (_, cells) in rows.items():
            table.add_row(*cells, key=key)
        self._rows = {key: pid for key, (pid, _) in rows.items()}
        self._command_width = command_width
        if selected in self._rows:
            # The cursor stays on its process when rows come, go or move.
            table.move_cursor(row=list(self._rows).index(selected), animate=False)

    def on_resize(self) -> None:
        self._schedule_rebuild()

    @staticmethod
    def _key(p: GpuProcessView) -> str:
        # A process may use several GPUs: one row on each.
        return f"{p.gpu_index}/{p.pid}"

    def _cells(self, p: GpuProcessView, command_width: int) -> list[Text]:
        host = self.host.get(p.pid)
        gpu = str(p.gpu_index)
        if p.gpu_instance_id is not None:
            gpu += f"/{p.gpu_instance_id}.{_value(p.compute_instance_id, '')}"
        memory = human_bytes(p.gpu_memory_bytes)
        command = MISSING if host is None else fit(host.command, command_width, False).rstrip()
        return [
            Text(gpu),
            Text(str(p.pid), justify="right"),
            Text(MISSING if host is None else fit(host.user, 9, False).rstrip()),
            Text(TYPE_LETTERS.get(p.type, p.type)),
            Text(memory, justify="right"),
            Text(percent(p.sm_util_percent, 0), justify="right"),
            Text(MISSING if host is None else percent(host.cpu_percent), justify="right"),
            Text(self._off_cpu(p.pid), justify="right"),
            Text(command),
        ]

    def _off_cpu(self, pid: int) -> str:
        offcpu = self.joined.get(OFFCPU)
        if offcpu is None:
            return MISSING
        # thread-seconds per second, of blocks that ended in the interval, as the process table's OFFCPU
        process = next((p for p in offcpu.processes if p.pid == pid), None)
        if process is None:
            return "0.00"
        io = process.state_s_per_s.get("D", 0.0)
        return f"{process.off_cpu_s_per_s:.2f}" + ("D" if io > process.off_cpu_s_per_s / 2 else "")

    @property
    def selected_pid(self) -> int | None:
        pids = list(self._rows.values())
        row = self.table.cursor_row
        return pids[row] if 0 <= row < len(pids) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # Enter (or a click on the highlighted row): the app opens the
        # process screen for ProcessTable.Selected, wherever it comes from.
        event.stop()
        pid = self._rows.get(str(event.row_key.value))
        if pid is not None:
            self.post_message(ProcessTable.Selected(pid))
