"""The off-CPU pane: processes by time spent waiting, why, where, and run-queue latency.

Left, processes ranked by the time they could not run, uninterruptible (D)
or waiting for a CPU (R), beside all their off-CPU time per second and its
share sleeping (S), with their run-queue p99; orac's own waits come last.
Right, for the highlighted process, its top blocking stacks (most time
first) and the run-queue latency histogram, the system's beside the
process's. Enter on a process opens its process screen. Run-queue
percentiles are the log2 buckets they lie in ("16-33us"), means exact. The
title gives the share of the interval's blocks whose stacks were taken but
lost (OffCpuView.stacks_lost_percent).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from probes.contract import ProbeSpec
from probes.model.histograms import LatencyBucket
from probes.sources.offcpu import OFFCPU, OffCpuView, ProcessOffCpu, StackRate

from .format import human_duration_ns, human_rate, latency_bucket, percent
from .histogram import BUCKET_LABEL_WIDTH, MAX_BAR_WIDTH, histogram_lines
from .line_table import Column, LineTable
from .pane import DetailPane, Lines
from .process_table import ProcessTable

# A busy box has thousands of processes that waited; a pane shows a few
# dozen, and a few hundred keep scrolling useful without sorting them all.
MAX_ROWS = 300
# Stacks drawn for the highlighted process: the pane shows a handful at most.
MAX_STACKS = 8
# Outer frames every syscall's kernel stack starts with: they say nothing
# about the wait, and the pane is narrow.
SYSCALL_ENTRY_FRAMES = frozenset({"entry_SYSCALL_64", "entry_SYSCALL_64_after_hwframe", "do_syscall_64"})


def _bucket_low(bucket: LatencyBucket | None) -> float:
    return -1.0 if bucket is None else bucket.low_ns


def seconds_per_second(value: float) -> str:
    """Thread-seconds off CPU per second: "0" for none, two decimals below 10, one above."""
    if value == 0:
        return "0"
    if value < 0.005:
        return "<.01"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _state_column(state: str) -> Column[ProcessOffCpu]:
    return Column(
        state, state, 5,
        lambda p: seconds_per_second(p.state_s_per_s[state]), lambda p: p.state_s_per_s[state],
        right=True, descending=True,
    )


def stalled_s_per_s(p: ProcessOffCpu) -> float:
    """Time it wanted a CPU and could not have one: uninterruptible (D) or runnable on a run queue (R).

    What a person triaging looks for first: sleeping (S) is mostly waiting
    by choice (idle loops, timers, orac itself).
    """
    return p.state_s_per_s["D"] + p.state_s_per_s["R"]


PROCESS_COLUMNS: list[Column[ProcessOffCpu]] = [
    Column("pid", "PID", 7, lambda p: str(p.pid), attrgetter("pid"), right=True),
    Column("comm", "COMM", 0, attrgetter("comm"), attrgetter("comm")),
    Column("stalled", "D+R", 5, lambda p: seconds_per_second(stalled_s_per_s(p)), stalled_s_per_s, True, True),
    Column(
        "off", "OFF/s", 6, lambda p: seconds_per_second(p.off_cpu_s_per_s), attrgetter("off_cpu_s_per_s"), True, True,
        min_table_width=52,
    ),
    *(_state_column(state) for state in ("S", "D", "R")),
    Column(
        "rq_p99", "RQ P99", 9, lambda p: latency_bucket(p.rq_p99_bucket), lambda p: _bucket_low(p.rq_p99_bucket), True, True,
        min_table_width=54,
    ),
]


def stack_lines(stack: StackRate, width: int = 0) -> str:
    """One stack as markup: its figures, then its frames leaf first, the leaf emphasised.

    Leaf first, "do_nanosleep ← hrtimer_nanosleep ← ...": where the thread
    waited is what a reader looks for, and a long stack wrapped in a narrow
    pane keeps it on the first line. The user frames follow the kernel's,
    muted but for Python frames; the syscall entry frames every kernel stack
    has are left out.
    Frames are wrapped to `width` cells (0: not wrapped).
    """
    head = (
        f"[b]{seconds_per_second(stack.off_cpu_s_per_s)} s/s[/] "
        f"[$secondary]{stack.state}[/] {human_rate(stack.blocks_per_s)} blocks/s"
    )
    if stack.missing is not None:
        return f"{head}\n  [$foreground-muted]({escape(stack.missing)})[/]"
    kernel = [f for f in reversed(stack.kernel_frames) if f not in SYSCALL_ENTRY_FRAMES]
    # Python frames (the root end of the user frames) are the code its people wrote: not muted
    # like the native frames of the interpreter and the libraries below them
    user = [(f, "" if i < stack.python_frames else "$foreground-muted") for i, f in enumerate(stack.user_frames)]
    frames = [(f, "") for f in kernel] + user[::-1]
    if not frames:
        return f"{head}\n  [$foreground-muted](no frames)[/]"
    frames[0] = (frames[0][0], "b $accent")
    return head + "".join(f"\n  {line}" for line in wrapped_frames(frames, width - 2 if width else 0))


def wrapped_frames(frames: list[tuple[str, str]], width: int) -> list[str]:
    """(name, style) frames joined by " ← " as markup lines of at most `width` cells (0: one line).

    A line breaks between frames, and the next starts with the arrow; one
    frame longer than the width stays whole (the widget cuts it). Runs of
    frames of one style share one markup span.
    """
    lines: list[str] = []
    # the current line: its visible length, and its (style, [pieces]) runs
    length, runs = 0, []
    for i, (name, style) in enumerate(frames):
        piece = name if i == 0 else "← " + name
        if runs and width and length + 1 + len(piece) > width:
            lines.append(_markup(runs))
            length, runs = 0, []
        length += len(piece) + (1 if runs else 0)
        if runs and runs[-1][0] == style:
            runs[-1][1].append(piece)
        else:
            runs.append((style, [piece]))
    lines.append(_markup(runs))
    return lines


def _markup(runs: list[tuple[str, list[str]]]) -> str:
    spans = []
    for style, pieces in runs:
        text = escape(" ".join(pieces))
        spans.append(f"[{style}]{text}[/]" if style else text)
    return " ".join(spans)


class OffCpuPane(DetailPane):
    """Fed by the "offcpu" eBPF probe."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = OFFCPU

    DEFAULT_CSS = """
    OffCpuPane { height: 1fr; }
    OffCpuPane > Horizontal { height: 1fr; }
    OffCpuPane #offcpu-processes { width: 1fr; min-width: 45; }
    OffCpuPane #offcpu-detail { width: 1fr; padding: 0 1; }
    OffCpuPane #offcpu-title { color: $primary; text-style: bold; }
    OffCpuPane #offcpu-rq { margin-top: 1; }
    """

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("o", "toggle_own", "Hide orac", tooltip="Off-CPU pane: hide orac's own waits, or show them last again"),
    ]

    def __init__(self, *args: Any, own_pid: int | None = None, **kwargs: Any) -> None:
        """`own_pid`: orac's own process, when it is among those shown (live)."""
        super().__init__(*args, **kwargs)
        # orac's own threads wait on purpose (its timers, its collector): last, or not at all
        self.own_pid = own_pid
        self.hide_own = False

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-message")
        with Horizontal():
            yield LineTable(PROCESS_COLUMNS, "stalled", attrgetter("pid"), id="offcpu-processes")
            with VerticalScroll(id="offcpu-detail"):
                yield Lines(id="offcpu-title")
                yield Lines(id="offcpu-stacks", keep_height=True)
                yield Lines(id="offcpu-rq")

    def on_mount(self) -> None:
        self.border_title = "Off-CPU"
        # (first, last) run-queue buckets shown for the highlighted process
        self.rq_span: tuple[int, int] | None = None
        # Lines scrolled out of view are left as they are (see Lines.set_text).
        self.watch(self.query_one("#offcpu-detail", VerticalScroll), "scroll_y", self._detail_scrolled, init=False)

    def _detail_scrolled(self) -> None:
        # After the screen has moved the lines: until then they are where they were.
        if self.view is not None:
            self.call_after_refresh(self.draw_detail)

    def draw(self, view: OffCpuView) -> None:
        table = self.query_one("#offcpu-processes", LineTable)
        self.border_title = (
            f"Off-CPU {seconds_per_second(view.off_cpu_s_per_s)} s/s  "
            f"run queue mean {human_duration_ns(view.rq_mean_ns)} p99 {latency_bucket(view.rq_p99_bucket)}"
            + (f"  stacks lost {percent(view.stacks_lost_percent)}%" if view.stacks_lost_percent is not None else "")
            + f"  by {table.column(table.sort_key).label}{'▼' if table.sort_descending else '▲'}"
            + (", orac hidden" if self.hide_own else "")
        )
        subtitle = (
            f"blocks ≥{human_duration_ns(view.min_block_ns)}; shorter: "
            f"{human_rate(view.short_blocks_per_s)}/s, {seconds_per_second(view.short_off_cpu_s_per_s)} s/s"
        )
        # "unmatched" is mostly the warm-up: threads already off CPU when
        # tracing began, whose blocks end later. Nothing the probe promised.
        lost = sum(n for reason, n in view.lost.items() if reason != "unmatched")
        if lost:
            subtitle += f"  [$error]lost {lost}[/]"
        self.border_subtitle = subtitle
        # pid breaks ties, so rows of equal time keep their order from tick to tick
        ordered = table.ordered(view.processes, attrgetter("pid"))
        own = [p for p in ordered if self._is_own(p)]
        rows = [p for p in ordered if not self._is_own(p)] + ([] if self.hide_own else own)
        table.set_rows([(p, "") for p in rows[:MAX_ROWS]])
        self.draw_detail()

    def _is_own(self, process: ProcessOffCpu) -> bool:
        """orac itself, or a process called orac (what recorded a replayed file)."""
        return process.pid == self.own_pid or process.comm == "orac"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_own":
            # Offered where orac is among the processes: not in another process's drill-down.
            return self.view is not None and any(self._is_own(p) for p in self.view.processes)
        return True

    def action_toggle_own(self) -> None:
        self.hide_own = not self.hide_own
        if self.view is not None:
            self.draw(self.view)

    def on_line_table_reordered(self, event: LineTable.Reordered) -> None:
        # A new sort: the title says it, and orac stays last.
        event.stop()
        if self.view is not None:
            self.draw(self.view)

    def draw_detail(self) -> None:
        view: OffCpuView = self.view
        process = self.query_one("#offcpu-processes", LineTable).selected
        title = self.query_one("#offcpu-title", Lines)
        stacks = self.query_one("#offcpu-stacks", Lines)
        # Before the first layout the width is not known yet: a guess, redrawn on resize.
        width = stacks.content_size.width or 2 * MAX_BAR_WIDTH + BUCKET_LABEL_WIDTH + 2
        if process is None:
            title.set_text("no process blocked in this interval")
            stacks.set_text("")
        else:
            coverage = process.stack_coverage_percent
            covered = f" [$foreground-muted](stacks cover {coverage:.0f}%)[/]" if coverage is not None else ""
            title.set_text(f"{escape(process.comm)} {process.pid}: where it waits{covered}")
            shown = process.stacks[:MAX_STACKS]
            stacks.set_text("\n".join(stack_lines(s, width) for s in shown) if shown else "[$foreground-muted]no stacks[/]")
        lines = [
            f"[b $primary]run queue[/] system mean {human_duration_ns(view.rq_mean_ns)} "
            f"p50 {latency_bucket(view.rq_p50_bucket)} p99 {latency_bucket(view.rq_p99_bucket)}, "
            f"{human_rate(view.rq_waits_per_s)} waits/s"
        ]
        if process is not None:
            lines.append(
                f"[$accent]{escape(process.comm)}[/] mean {human_duration_ns(process.rq_mean_ns)} "
                f"p50 {latency_bucket(process.rq_p50_bucket)} p99 {latency_bucket(process.rq_p99_bucket)}"
            )
        series = [("system", view.rq_hist, "$primary")]
        if process is not None:
            series.append((process.comm, process.rq_hist, "$accent"))
        # The buckets shown only grow while one process is highlighted: the
        # histogram keeps its height from tick to tick (see Lines).
        used = [i for _, hist, _ in series for i, n in enumerate(hist) if n]
        if used:
            low, high = self.rq_span or (min(used), max(used))
            self.rq_span = (min(low, *used), max(high, *used))
        lines.append(histogram_lines(series, width, "wait ≥", "no run-queue waits in this interval", span=self.rq_span))
        self.query_one("#offcpu-rq", Lines).set_text("\n".join(lines))

    def on_line_table_cursor_moved(self, event: LineTable.CursorMoved) -> None:
        # Another process: its histogram's buckets and its stacks' height start afresh (DetailPane then draws it).
        self.rq_span = None
        self.query_one("#offcpu-stacks", Lines).reset_height()

    def on_line_table_opened(self, event: LineTable.Opened) -> None:
        # Enter on a process row opens its process screen, as in the process table.
        event.stop()
        self.post_message(ProcessTable.Selected(event.item.pid))
