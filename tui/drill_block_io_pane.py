"""The drill-down's block I/O tab: the process's requests, their bytes and latency, beside its time in D state.

Fed by the app's system-wide "blockio" probe, narrowed to the process (it
counts per issuing process in the kernel already), and joined with the
"offcpu" probe for the time its threads spent blocked uninterruptibly (D),
which is mostly what waiting for those requests costs it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult

from probes.contract import ProbeSpec
from probes.sources.block_io import BLOCK_IO, BlockIoView
from probes.sources.offcpu import OFFCPU

from .format import MISSING, human_bytes, human_duration_ns, latency_bucket
from .histogram import histogram_lines, literal
from .pane import Lines, MessagePane


class DrillBlockIoPane(MessagePane):
    """One process's block requests completed in the interval (biotop's row, biolatency's histogram)."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = BLOCK_IO
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (OFFCPU,)

    DEFAULT_CSS = """
    DrillBlockIoPane { height: 1fr; padding: 0 1; }
    DrillBlockIoPane > Lines { height: auto; }
    """

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def compose(self) -> ComposeResult:
        yield Lines(classes="pane-message")
        yield Lines(id="blockio-summary")
        yield Lines(id="blockio-histogram")

    def on_mount(self) -> None:
        self.border_title = "Block I/O"

    def d_state(self) -> str:
        """Its threads' time blocked in D state per second, from the off-CPU probe, or why it is not known."""
        offcpu = self.joined.get(OFFCPU)
        if offcpu is None:
            why = self.joined_unavailable.get(OFFCPU.name)
            return f"{MISSING} ({escape(why.reason)})" if why is not None else MISSING
        mine = next((p for p in offcpu.processes if p.pid == self.pid), None)
        seconds = mine.state_s_per_s.get("D", 0.0) if mine is not None else 0.0
        return f"{seconds * 1000:.0f} ms/s"

    def draw(self, view: BlockIoView) -> None:
        mine = view.process(self.pid)
        summary = self.query_one("#blockio-summary", Lines)
        histogram = self.query_one("#blockio-histogram", Lines)
        d_state = f"off-CPU in D state: {self.d_state()}"
        if mine is None:
            summary.set_text(f"no block request of this process completed in the interval   {d_state}")
            histogram.set_text("")
            return
        r = mine.rate
        mean = MISSING if r.mean_latency_ns is None else human_duration_ns(r.mean_latency_ns)
        summary.set_text(
            f"requests {r.requests_per_s:.0f}/s (read {r.read_requests_per_s:.0f}, write {r.write_requests_per_s:.0f})"
            f"   read {human_bytes(r.read_bytes_per_s)}/s   write {human_bytes(r.write_bytes_per_s)}/s\n"
            f"latency mean {mean}   p50 {latency_bucket(r.p50_latency_bucket)}"
            f"   p99 {latency_bucket(r.p99_latency_bucket)}   {d_state}\n"
            f"[$foreground-muted]issued as {literal(mine.comm)}; latency is issue to completion in the device[/]"
        )
        histogram.set_text(histogram_lines(
            [("requests", r.latency_hist, "$accent")], max(40, self.size.width - 2), "latency ≥",
            "no requests in this interval",
        ))
