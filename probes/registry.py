"""Every probe orac knows, in the order panes and `orac doctor` list them."""

from __future__ import annotations

from typing import Any

from .base import Probe
from .gpu import GpuProbe
from .offcpu import OffCpuProbe
from .processes import ProcessProbe
from .syscalls import SyscallProbe
from .system import SystemProbe


def all_probes() -> list[Probe[Any]]:
    return [SystemProbe(), ProcessProbe(), GpuProbe(), SyscallProbe(), OffCpuProbe()]
