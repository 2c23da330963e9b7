"""`?`: every key, read from the bindings themselves so the list cannot drift,
and how the figures on screen are computed, so they can be checked against
the standard tools."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {
    "slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter", "ctrl+p": "Ctrl+P", "space": "Space",
    "left": "←", "right": "→", "comma": ",", "full_stop": ".", "less_than_sign": "<", "greater_than_sign": ">",
    "minus": "-", "plus": "+", "exclamation_mark": "!", "left_square_bracket": "[", "right_square_bracket": "]",
}


# (figure, where it comes from): the formulas of probes/model/views.py and the
# probes' docstrings, in the words of the tools a reader checks them with.
FIGURES: list[tuple[str, str]] = [
    ("Mem used", "MemTotal - MemAvailable (/proc/meminfo), as free and top count it: shm is in it"),
    ("Mem bar", "used, then reclaimable cache (MemAvailable - MemFree), then free"),
    ("avail", "MemAvailable: what can be allocated without swapping"),
    ("cache", "Buffers + Cached + SReclaimable, free's buff/cache"),
    ("shm", "Shmem (tmpfs, /dev/shm, shared memory): in cache, yet not reclaimable"),
    ("Swp", "SwapTotal - SwapFree"),
    ("CPU%", "utime + stime (/proc/PID/stat) gained between two reads of it, over the time between them, of one core, as top"),
    ("RSS", "resident pages of /proc/PID/statm, as ps and top show them"),
    ("P50, P99", "latency percentiles as the log2 bucket they lie in (8.4-17ms): the kernel counts calls per bucket"),
    ("MEAN", "exact mean latency: the calls' total time / their count"),
    ("r/s, w/s", "reads, writes completed per second (/proc/diskstats), as iostat -x"),
    ("rMB/s, wMB/s", "sectors read, written x 512 / 2^20 per second: iostat -m's MB are MiB"),
    ("r_await, w_await", "ms spent on the reads (writes) that completed / their count, queueing included"),
    ("aqu-sz", "weighted ms doing I/O / ms elapsed: requests in flight on average"),
    ("%util", "share of the interval with a request in flight; saturated: 90 % or more with aqu-sz above 1"),
    ("DISKR/s, DISKW/s", "read_bytes, write_bytes of /proc/PID/io per second (pidstat -d); '-': not orac's to read (another user's process: run as root)"),
    ("IOD%", "delayacct_blkio_ticks (stat field 42) per interval: the main thread's wait for block I/O"),
    ("verdict", "USE method: state from saturation and errors (run queue, PSI, swap-in, aqu-sz, await, GPU throttling, ECC), never utilisation; thresholds in README"),
    ("USE%", "df's: used / (used + avail) of statvfs; avail leaves out root's reserve"),
    ("forks", "tasks created per second (/proc/stat processes), sar -w's proc/s"),
    ("RX, TX MiB/s", "/proc/net/dev bytes per second / 1048576: sar -n DEV's rxkB/s, txkB/s / 1024"),
    ("UTIL", "sar's %ifutil: max(rx, tx) bytes/s * 8 / link speed (the sum on half duplex); - where no speed is known"),
    ("retrans/s (%)", "RetransSegs per second (/proc/net/snmp), and of OutSegs + RetransSegs: sar -n ETCP"),
    ("sockets", "ss -s's TCP line (/proc/net/sockstat); states counted from /proc/net/tcp and tcp6"),
    ("THROTTLED", "time the cgroup's runqueues sat throttled (cpu.stat), of the interval; PERIODS: periods that ran out"),
    ("@quota", "in CGROUP: that cgroup was throttled at its CPU quota in the interval, so its processes are held, not idle"),
]


def key_label(key: str) -> str:
    return ", ".join(KEY_NAMES.get(k, k.upper() if k[:1] == "f" and k[1:].isdigit() else k) for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,question_mark,q", "app.pop_screen", "Close help"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 80; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    """

    def __init__(
        self, sections: Iterable[tuple[str, Iterable[Binding]]], status: Iterable[tuple[str, str]] = ()
    ) -> None:
        """`status`: (what, how it stands) rows about this run, shown first (the kept past, say)."""
        super().__init__()
        self.sections = list(sections)
        self.status = list(status)

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=False)
        table.add_column("key", style="bold", width=14)
        table.add_column("what it does")
        if self.status:
            table.add_row("[b u]This run[/]", "")
            for what, state in self.status:
                table.add_row(what, state)
            table.add_row("", "")
        for title, bindings in self.sections:
            table.add_row(f"[b u]{title}[/]", "")
            for b in bindings:
                table.add_row(key_label(b.key), b.tooltip or b.description)
            table.add_row("", "")
        table.add_row("[b u]Mouse[/]", "")
        table.add_row("click header", "Sort by that column; again reverses")
        table.add_row("click row", "Select it; double-click opens it")
        table.add_row("", "")
        table.add_row("[b u]Figures[/]", "")
        for figure, formula in FIGURES:
            table.add_row(figure, formula)
        with VerticalScroll():
            yield Static(table)
