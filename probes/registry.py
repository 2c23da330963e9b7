"""Every probe orac knows, in the order panes and `orac doctor` list them."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .base import Probe
from .gpu import GpuProbe
from .offcpu import OffCpuProbe
from .processes import ProcessProbe
from .syscalls import SyscallProbe
from .system import SystemProbe


def all_probes() -> list[Probe[Any]]:
    return [SystemProbe(), ProcessProbe(), GpuProbe(), SyscallProbe(), OffCpuProbe()]


def select_probes(names: Iterable[str], probes: Sequence[Probe[Any]]) -> list[Probe[Any]]:
    """The probes named (as in `--probes cpu,procs`), in the order given.

    Raises:
        ValueError: a name is not one of `probes`; the message lists them.
    """
    by_name = {probe.name: probe for probe in probes}
    chosen: list[Probe[Any]] = []
    for name in names:
        name = name.strip()
        if name not in by_name:
            raise ValueError(f"unknown probe {name!r}; choose from {', '.join(by_name)}")
        if by_name[name] not in chosen:
            chosen.append(by_name[name])
    if not chosen:
        raise ValueError(f"no probe given; choose from {', '.join(by_name)}")
    return chosen
