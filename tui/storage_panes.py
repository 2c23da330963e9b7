"""The disks pane (iostat -xz, a row per device) and the filesystems pane (df, a row per filesystem).

Fed by the "disks" probe's DisksView and the "filesystems" probe's
FilesystemsView; every figure is computed there, with iostat's and df's
formulas (see DiskRates and FilesystemView). The disks pane joins the
eBPF "blockio" probe where it runs: each device's p50 and p99 request
latency (biolatency's), and under the devices the processes issuing the
most requests (biotop's).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar

from rich.markup import escape
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from probes.contract import ProbeSpec
from probes.sources.block_io import BLOCK_IO, BlockIoView, DeviceLatency, ProcessBlockIoRate
from probes.sources.disks import (
    DISKS,
    SATURATED_UTIL_PERCENT,
    DiskRates,
    DisksView,
    DiskView,
)
from probes.sources.filesystems import (
    FILESYSTEMS,
    NEAR_FULL_PERCENT,
    FilesystemsView,
    FilesystemView,
)

from .format import MISSING, human_bytes, human_duration_ns, human_rate, latency_bucket
from .line_table import PLAIN, Column, LineTable
from .pane import Lines, MessagePane

# Rows a storage table shows before it scrolls; fewer on a short terminal,
# where the process table needs the lines.
MAX_ROWS = 6
SHORT_MAX_ROWS = 2


def figure(value: float | None) -> str:
    """A rate or a time in at most 6 characters, with the decimals iostat gives small values."""
    if value is None:
        return MISSING
    if value >= 99_999.5:
        return human_rate(value)
    if value >= 99.95:
        return f"{value:.0f}"
    if value >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rate(field: str) -> Callable[[DiskView], float | None]:
    get = attrgetter(field)

    def of(disk: DiskView) -> float | None:
        return None if disk.rates is None else get(disk.rates)

    return of


def _low(of: Callable[[Any], float | None]) -> Callable[[Any], float]:
    # Unknown sorts below every measured value, descending or not.
    def key(item: Any) -> float:
        value = of(item)
        return -1.0 if value is None else value

    return key


def device_label(disk: DiskView) -> str:
    """The kernel's name, and a device-mapper device's own name (iostat -N) beside it."""
    return f"{disk.name} ({disk.dm_name})" if disk.dm_name else disk.name


def _rate_column(key: str, label: str, width: int, field: str, digits: Callable[[float | None], str] = figure,
                 min_table_width: int = 0) -> Column[DiskView]:
    of = _rate(field)
    return Column(key, label, width, lambda d: digits(of(d)), _low(of), True, True, min_table_width=min_table_width)


DISK_COLUMNS: tuple[Column[DiskView], ...] = (
    _rate_column("reads", "r/s", 6, "reads_per_s"),
    _rate_column("writes", "w/s", 6, "writes_per_s"),
    _rate_column("read_mib", "rMB/s", 6, "read_mib_per_s"),
    _rate_column("write_mib", "wMB/s", 6, "write_mib_per_s"),
    _rate_column("read_await", "r_await", 7, "read_await_ms"),
    _rate_column("write_await", "w_await", 7, "write_await_ms"),
    _rate_column("queue", "aqu-sz", 6, "queue_size"),
    _rate_column("util", "%util", 6, "util_percent", lambda v: MISSING if v is None else f"{v:.1f}"),
    Column("device", "DEVICE", 0, device_label, attrgetter("name"), narrow=attrgetter("name")),
)


def partition_rows(disk: DiskView, shown: Callable[[DiskView], bool], order: Callable[[list[DiskView]], list[DiskView]]) -> list[tuple[DiskView, str]]:
    """The disk, then its partitions that are shown, under it as a tree."""
    parts = order([p for p in disk.partitions if shown(p)])
    return [(disk, ""), *((p, "└─ " if i == len(parts) - 1 else "├─ ") for i, p in enumerate(parts))]


def _bucket_low(bucket: Any) -> float:
    return -1.0 if bucket is None else float(bucket.low_ns)


class DisksTable(LineTable[DiskView]):
    """Whole disks in the sort order, each with its partitions under it; idle ones hidden as by iostat -z.

    With the blockio probe, each whole disk's p50 and p99 request latency
    beside iostat's figures: partitions and device-mapper devices have no
    requests of their own (a request is issued on the disk under them) and
    show `-`.
    """

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("z", "toggle_idle", "Idle disks", show=False,
                tooltip="Disks pane: show the devices that did no I/O in the interval too (iostat without -z), or hide them"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"disks-table--saturated", "disks-table--idle", "disks-table--busy"}

    DEFAULT_CSS = """
    DisksTable > .disks-table--saturated { color: $error; text-style: bold; }
    DisksTable > .disks-table--busy { color: $warning; }
    DisksTable > .disks-table--idle { color: $foreground-muted; }
    """

    CURSOR_WHEN_BLURRED: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__((*DISK_COLUMNS[:-1], *self._latency_columns(), DISK_COLUMNS[-1]), "util",
                         attrgetter("name"), **kwargs)
        self.disks: tuple[DiskView, ...] = ()
        self.show_idle = False
        # device name -> its requests' latency in the interval (blockio probe)
        self.latency: dict[str, DeviceLatency] = {}

    def _latency_columns(self) -> tuple[Column[DiskView], ...]:
        def bucket(field: str) -> Callable[[DiskView], Any]:
            def of(disk: DiskView) -> Any:
                latency = self.latency.get(disk.name)
                return None if latency is None else getattr(latency.rate, field)

            return of

        p50, p99 = bucket("p50_latency_bucket"), bucket("p99_latency_bucket")
        return (
            Column("p50", "p50", 9, lambda d: latency_bucket(p50(d)), lambda d: _bucket_low(p50(d)), True, True,
                   min_table_width=90),
            Column("p99", "p99", 9, lambda d: latency_bucket(p99(d)), lambda d: _bucket_low(p99(d)), True, True,
                   min_table_width=90),
        )

    def update_disks(self, view: DisksView, latency: BlockIoView | None = None) -> None:
        self.disks = view.disks
        self.latency = {d.device: d for d in latency.devices} if latency is not None else {}
        self.resort()

    def shown(self, disk: DiskView) -> bool:
        return self.show_idle or not disk.idle

    def resort(self) -> None:
        def order(disks: list[DiskView]) -> list[DiskView]:
            return self.ordered(disks, tie_break=attrgetter("name"))

        rows: list[tuple[DiskView, str]] = []
        for disk in order([d for d in self.disks if self.shown(d)]):
            rows.extend(partition_rows(disk, self.shown, order))
        self.set_rows(rows)

    def action_toggle_idle(self) -> None:
        self.show_idle = not self.show_idle
        self.reordered()
        self.post_message(self.Reordered())

    def row_component(self, disk: DiskView) -> str:
        if disk.saturated:
            return "disks-table--saturated"
        return "disks-table--idle" if disk.idle else ""

    def cell_style(self, key: str, disk: DiskView) -> Style:
        rates: DiskRates | None = disk.rates
        if key == "util" and rates is not None and rates.util_percent >= SATURATED_UTIL_PERCENT and not disk.saturated:
            return self.style("disks-table--busy")
        return PLAIN


def _fit_rows(table: LineTable[Any], pane: MessagePane) -> None:
    """Size the table to its rows (a header line at least), up to the rows the screen has room for."""
    limit = SHORT_MAX_ROWS if pane.screen.has_class("-compact") else MAX_ROWS
    height = 1 + max(1, min(len(table.rows), limit))
    if table.styles.height is None or table.styles.height.value != height:
        table.styles.height = height


def _mb(value: float) -> str:
    return figure(value / (1 << 20))


def _latency_ns(value: float | None) -> str:
    return MISSING if value is None else human_duration_ns(value)


ISSUER_COLUMNS: tuple[Column[ProcessBlockIoRate], ...] = (
    Column("reqs", "reqs/s", 8, lambda p: figure(p.rate.requests_per_s), lambda p: p.rate.requests_per_s, True, True),
    Column("read_mb", "rMB/s", 6, lambda p: _mb(p.rate.read_bytes_per_s), lambda p: p.rate.read_bytes_per_s,
           True, True),
    Column("write_mb", "wMB/s", 6, lambda p: _mb(p.rate.write_bytes_per_s), lambda p: p.rate.write_bytes_per_s,
           True, True),
    Column("mean", "mean", 7, lambda p: _latency_ns(p.rate.mean_latency_ns), _low(lambda p: p.rate.mean_latency_ns),
           True, True),
    Column("p99", "p99", 9, lambda p: latency_bucket(p.rate.p99_latency_bucket),
           lambda p: _bucket_low(p.rate.p99_latency_bucket), True, True, min_table_width=60),
    Column("pid", "PID", 7, lambda p: str(p.pid), attrgetter("pid"), True),
    Column("comm", "ISSUED BY", 0, attrgetter("comm"), attrgetter("comm")),
)


class BlockIoTable(LineTable[ProcessBlockIoRate]):
    """The processes whose block requests completed in the interval, most requests first (biotop)."""

    CURSOR_WHEN_BLURRED: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ISSUER_COLUMNS, "reqs", attrgetter("pid"), **kwargs)
        self.processes: tuple[ProcessBlockIoRate, ...] = ()

    def update_processes(self, view: BlockIoView) -> None:
        self.processes = view.processes
        self.resort()

    def resort(self) -> None:
        self.set_rows([(p, "") for p in self.ordered(self.processes, tie_break=attrgetter("pid"))])


def lost_requests(view: BlockIoView) -> int:
    """Requests the blockio probe could not time or count in the interval, every reason together."""
    return sum(view.lost.values())


class DisksPane(MessagePane):
    """Fed by the "disks" probe: iostat -xz's figures a device a row; joined with "blockio" where it runs."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = DISKS
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (BLOCK_IO,)

    DEFAULT_CSS = """
    DisksPane { height: auto; }
    DisksPane > BlockIoTable { display: none; }
    DisksPane.-issuers > BlockIoTable { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        # the pane on a short screen (themes/orac.tcss): the busiest device in one line
        yield Lines(classes="disks-summary")
        yield DisksTable()
        yield BlockIoTable()

    def on_mount(self) -> None:
        self.border_title = "Disks"

    def draw(self, view: DisksView) -> None:
        table = self.query_one(DisksTable)
        latency = self.joined.get(BLOCK_IO)
        table.update_disks(view, latency)
        _fit_rows(table, self)
        issuers = self.query_one(BlockIoTable)
        # Under the devices where the screen has room for both.
        show_issuers = latency is not None and bool(latency.processes) and not self.screen.has_class("-medium")
        self.set_class(show_issuers, "-issuers")
        # Not while hidden: with no height, every change in its number of
        # rows was a new scrollable size, and so a layout of the screen.
        if show_issuers:
            issuers.update_processes(latency)
            _fit_rows(issuers, self)
        active = len(view.active)
        self.border_title = f"Disks {active} of {len(view.disks)} doing I/O"
        saturated = sum(d.saturated for d in view.disks)
        self.query_one(".disks-summary", Lines).set_text(disks_summary(view, saturated))
        subtitle = "z: idle shown" if table.show_idle else "z: show idle"
        if saturated:
            subtitle = f"[$error]{saturated} saturated[/]  {subtitle}"
        elif not active and not table.show_idle:
            subtitle = f"no device did I/O  {subtitle}"
        self.border_subtitle = f"{self._latency_note(latency)}{subtitle}"

    def _latency_note(self, latency: BlockIoView | None) -> str:
        """Why p50 and p99 say `-` where the blockio probe does not run, or what it lost."""
        if latency is not None:
            lost = lost_requests(latency)
            return f"[$warning]{lost} requests not timed[/]  " if lost else ""
        why = self.joined_unavailable.get(BLOCK_IO.name)
        if why is None:
            return "latency: no blockio data  "
        return f"latency -: {escape(why.reason)}  "

    def on_line_table_reordered(self, event: LineTable.Reordered) -> None:
        # z shows or hides idle devices: the table's height follows its rows.
        event.stop()
        if self.view is not None:
            self.draw(self.view)


def disks_summary(view: DisksView, saturated: int) -> str:
    """One line of markup: the busiest device's %util and aqu-sz, and how many did I/O."""
    rated = [d for d in view.active if d.rates is not None]
    if not rated:
        return f"[b]disks[/] no device did I/O (of {len(view.disks)})"
    busiest = max(rated, key=lambda d: (d.rates.util_percent if d.rates is not None else 0.0, d.name))
    assert busiest.rates is not None
    figures = f"{escape(busiest.dm_name or busiest.name)} {busiest.rates.util_percent:.0f}% util aqu-sz {busiest.rates.queue_size:.1f}"
    line = f"[b]disks[/] {f'[$error]{figures}[/]' if busiest.saturated else figures}  {len(view.active)} of {len(view.disks)} doing I/O"
    return line + (f"  [$error]{saturated} saturated[/]" if saturated else "")


def _fs_value(of: Callable[[FilesystemView], float | None], text: Callable[[float], str]) -> Callable[[FilesystemView], str]:
    def cell(fs: FilesystemView) -> str:
        value = of(fs)
        return MISSING if value is None else text(value)

    return cell


def _used_percent(value: float) -> str:
    return f"{value:.0f}%" if value >= 9.95 else f"{value:.1f}%"


def _growth(value: float) -> str:
    return ("+" if value > 0 else "-" if value < 0 else "") + human_bytes(abs(value))


def mount_label(fs: FilesystemView) -> str:
    state = "" if fs.responding else "  (not responding)"
    return f"{fs.mount_point}  {fs.source}{state}"


def _fs_column(key: str, label: str, width: int, field: str, text: Callable[[float], str],
               min_table_width: int = 0) -> Column[FilesystemView]:
    of = attrgetter(field)
    return Column(key, label, width, _fs_value(of, text), _low(of), True, True, min_table_width=min_table_width)


FILESYSTEM_COLUMNS: tuple[Column[FilesystemView], ...] = (
    _fs_column("size", "SIZE", 6, "size_bytes", human_bytes),
    _fs_column("used", "USED", 6, "used_bytes", human_bytes, min_table_width=60),
    _fs_column("avail", "AVAIL", 6, "available_bytes", human_bytes),
    _fs_column("use", "USE%", 6, "used_percent", _used_percent),
    _fs_column("iuse", "IUSE%", 6, "inodes_used_percent", _used_percent, min_table_width=50),
    _fs_column("growth", "GROW/s", 7, "growth_bytes_per_s", _growth, min_table_width=70),
    Column("type", "TYPE", 6, attrgetter("fs_type"), attrgetter("fs_type"), min_table_width=55),
    Column("mount", "MOUNTED ON", 0, mount_label, attrgetter("mount_point"), narrow=attrgetter("mount_point")),
)


class FilesystemsTable(LineTable[FilesystemView]):
    """Mounted filesystems, fullest first."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"filesystems-table--full", "filesystems-table--gone"}

    DEFAULT_CSS = """
    FilesystemsTable > .filesystems-table--full { color: $error; text-style: bold; }
    FilesystemsTable > .filesystems-table--gone { color: $foreground-muted; }
    """

    CURSOR_WHEN_BLURRED: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(FILESYSTEM_COLUMNS, "use", attrgetter("mount_point"), **kwargs)
        self.filesystems: tuple[FilesystemView, ...] = ()

    def update_filesystems(self, view: FilesystemsView) -> None:
        self.filesystems = view.filesystems
        self.resort()

    def resort(self) -> None:
        self.set_rows([(fs, "") for fs in self.ordered(self.filesystems, tie_break=attrgetter("mount_point"))])

    def row_component(self, fs: FilesystemView) -> str:
        if fs.near_full:
            return "filesystems-table--full"
        return "" if fs.responding else "filesystems-table--gone"


class FilesystemsPane(MessagePane):
    """Fed by the "filesystems" probe: df's figures a filesystem a row."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = FILESYSTEMS

    DEFAULT_CSS = """
    FilesystemsPane { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        yield FilesystemsTable()

    def on_mount(self) -> None:
        self.border_title = "Filesystems"

    def draw(self, view: FilesystemsView) -> None:
        table = self.query_one(FilesystemsTable)
        table.update_filesystems(view)
        _fit_rows(table, self)
        full = sum(f.near_full for f in view.filesystems)
        self.border_title = f"Filesystems {len(view.filesystems)}"
        self.border_subtitle = (
            f"[$error]{full} at {NEAR_FULL_PERCENT:.0f}% or fuller[/]" if full else ""
        )
