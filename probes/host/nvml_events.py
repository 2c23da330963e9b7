"""NVML's events: Xid errors, ECC errors, clock and power-state changes, as they happen.

A sample every second would miss what passes between two (an Xid is a
moment, not a level), so the GPU probe registers its GPUs in one NVML event
set and a thread of its own waits on it (`nvmlEventSetWait_v2`, which sleeps
in the driver until an event or the timeout: no CPU while the GPUs are
quiet, a wake-up every WAIT_MS to notice a stop). Each sample takes the
events that came since the previous one.

NVML's Xid event carries the Xid number only; the kernel log's `NVRM: Xid`
line (the kernel events pane) also has its subcodes and the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# nvidia-ml-py's nvmlEventType* bits, and what the pane calls them.
EVENT_KINDS: dict[int, str] = {
    0x08: "Xid",  # nvmlEventTypeXidCriticalError; its data is the Xid number
    0x02: "ECC double-bit error",  # nvmlEventTypeDoubleBitEccError
    0x01: "ECC single-bit error",  # nvmlEventTypeSingleBitEccError
    0x10: "clock change",  # nvmlEventTypeClock
    0x04: "power state change",  # nvmlEventTypePState
}
WANTED_MASK = sum(EVENT_KINDS)
# kinds that mean a fault, never dropped for the cap ("GPU lost": the wait said a GPU fell off the bus)
SERIOUS = frozenset({"Xid", "ECC double-bit error", "GPU lost"})
# How long one wait may sleep: a stop waits at most this long for the thread.
WAIT_MS = 250
# Events kept between two samples: clock changes can come in bursts.
MAX_KEPT = 256
INSTANCE_ID_INVALID = 0xFFFFFFFF
ALL_GPUS = -1  # the key of `unavailable` for a reason that holds for every GPU


@dataclass(frozen=True, slots=True)
class GpuEvent:
    wall_ns: int  # when orac's thread received it
    gpu_index: int | None  # None: NVML did not say which GPU
    kind: str  # EVENT_KINDS' words, or "event 0x..." for another bit
    data: int  # the Xid number for an Xid; 0 otherwise
    gpu_instance_id: int | None = None  # the MIG instance, where the event names one
    compute_instance_id: int | None = None


def _instance(value: int) -> int | None:
    return None if value == INSTANCE_ID_INVALID else value


class NvmlEventWatcher:
    """One event set for the given GPU handles, waited on by a thread; `take()` hands over what came."""

    def __init__(self, nvml: ModuleType, handles: Sequence[Any]) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._events: list[GpuEvent] = []
        self.dropped = 0  # events beyond MAX_KEPT between two samples, since the start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._set: Any = None
        # GPU index -> why that GPU sends no events; ALL_GPUS for every GPU
        self.unavailable: dict[int, str] = {}
        try:
            self._set = nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            self.unavailable[ALL_GPUS] = f"no GPU events: {exc}"
            return
        registered = 0
        for index, handle in enumerate(handles):
            try:
                types = nvml.nvmlDeviceGetSupportedEventTypes(handle) & WANTED_MASK
                if not types:
                    self.unavailable[index] = "this GPU reports none of the events"
                    continue
                nvml.nvmlDeviceRegisterEvents(handle, types, self._set)
                registered += 1
            except nvml.NVMLError as exc:
                self.unavailable[index] = f"no events: {exc}"
        if not registered:
            self._free()

    def start(self) -> None:
        if self._set is None:
            return
        self._thread = threading.Thread(target=self._run, name="orac-nvml-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nvml = self._nvml
        lost_said = False
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(self._set, WAIT_MS)
            except nvml.NVMLError_Timeout:
                continue
            except nvml.NVMLError_GpuIsLost:
                # One GPU off the bus: the others' events still come. Said once; the
                # wait may answer so at once from now on, so it pauses between tries.
                if not lost_said:
                    lost_said = True
                    self._keep(GpuEvent(time.time_ns(), None, "GPU lost", 0))
                self._stop.wait(WAIT_MS / 1000)
                continue
            except nvml.NVMLError as exc:
                # NVML shut down, the driver going away: say so once, stop waiting.
                self.unavailable[ALL_GPUS] = f"GPU events stopped: {exc}"
                return
            self._keep(self._event(data))

    def _keep(self, event: GpuEvent) -> None:
        with self._lock:
            # Past the cap, clock and power-state changes go; a fault is always kept.
            if len(self._events) < MAX_KEPT or event.kind in SERIOUS:
                self._events.append(event)
            else:
                self.dropped += 1

    def _event(self, data: Any) -> GpuEvent:
        nvml = self._nvml
        try:
            index: int | None = nvml.nvmlDeviceGetIndex(data.device)
        except nvml.NVMLError:
            index = None
        kind = EVENT_KINDS.get(data.eventType, f"event 0x{data.eventType:x}")
        return GpuEvent(
            wall_ns=time.time_ns(),
            gpu_index=index,
            kind=kind,
            data=int(data.eventData) if kind == "Xid" else 0,
            gpu_instance_id=_instance(data.gpuInstanceId),
            compute_instance_id=_instance(data.computeInstanceId),
        )

    def take(self) -> tuple[GpuEvent, ...]:
        with self._lock:
            events, self._events = self._events, []
        return tuple(events)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_MS / 1000 * 2 + 1)
            if self._thread.is_alive():
                # Still inside NVML (a sick GPU can hold a call for seconds): freeing
                # the set under it could crash the process; left to the process's end.
                self._set = None
            self._thread = None
        self._free()

    def _free(self) -> None:
        if self._set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._set)
            except self._nvml.NVMLError:
                pass
            self._set = None
