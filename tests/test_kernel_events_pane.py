"""The kernel events pane: the kernel's records, with NVML's Xid and ECC events among them in time order."""

from __future__ import annotations

import time

from support.harness import PaneApp, mounted

from probes.contract import Views
from probes.host.nvml_events import GpuEvent
from probes.model.frame import Frame
from probes.sources.gpu import GpuView
from probes.sources.kmsg import KernelEvent, KmsgView
from tui.kernel_events_pane import KernelEventsPane

S = 10**9
XID_LINE = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus."


async def test_nvml_events_join_the_kernels_in_time_order_but_an_xid_it_logged_too() -> None:
    now = time.time_ns()
    # the log read at boot + 1000 s, now; its Xid line two seconds before
    kernel = KernelEvent(7, 998 * 10**6, 3, 0, XID_LINE, "xid", xid=79)
    view = KmsgView((kernel,), (kernel,), 0, 0, 1000 * S)
    nvml = GpuView(None, (), (), 0, events=(
        GpuEvent(now - 3 * S, 1, "Xid", 79),  # the same Xid as the kernel's line: shown once, as the kernel's
        GpuEvent(now - S, 0, "clock change", 0),  # not a kernel-log matter
        GpuEvent(now - S // 2, 0, "ECC double-bit error", 0),
        GpuEvent(now, 1, "Xid", 43),
    ))

    def join(pane: KernelEventsPane) -> None:
        # the frame shown is of `now` (not the clock at drawing, a second boundary away perhaps)
        pane.app.frame = Frame(now, 0, {})
        pane.joined = Views({"gpu": nvml})
        pane.show_view(view)

    app = PaneApp(KernelEventsPane(), view, then=join)
    async with mounted(app, (160, 20)):
        lines = str(app.query_one(KernelEventsPane).render()).splitlines()

    def at(wall_ns: int) -> str:
        return time.strftime("%H:%M:%S", time.localtime(wall_ns / 1e9))

    assert lines == [
        f"[{at(now - 2 * S)}] NVIDIA Xid 79: {XID_LINE}",
        f"[{at(now - S // 2)}] GPU 0 ECC double-bit error (NVML event)",
        f"[{at(now)}] GPU 1 Xid 43 (NVML event)",
    ]
