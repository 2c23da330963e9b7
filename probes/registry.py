"""Every probe orac knows: the one list the collector, derive_frame, `orac doctor`, dump and the panes learn from.

A new probe is one module in probes/sources/ ending in its ProbeSpec, and one
line in PROBES.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from probes.contract import Probe, ProbeSpec
from probes.sources import (
    block_io,
    cgroups,
    disks,
    filesystems,
    gpu,
    kmsg,
    network,
    offcpu,
    own_cost,
    process_io,
    processes,
    profile,
    python_stacks,
    syscalls,
    system,
    tcp,
    tcp_events,
    threads,
)
from probes.store.codec import register_type

# In the order panes and `orac doctor` list them. Those with a `make` run
# system-wide; the others only in a drill-down.
PROBES: tuple[ProbeSpec[Any, Any], ...] = (
    system.SYSTEM,
    processes.PROCESSES,
    process_io.PROCESS_IO,
    gpu.GPU,
    disks.DISKS,
    filesystems.FILESYSTEMS,
    syscalls.SYSCALLS,
    offcpu.OFFCPU,
    block_io.BLOCK_IO,
    profile.PROFILE,
    python_stacks.PYTHON_STACKS,
    threads.THREADS,
    network.NETWORK,
    tcp.TCP,
    tcp_events.TCP_EVENTS,
    cgroups.CGROUPS,
    kmsg.KMSG,
    own_cost.OWN_COST,
)
_BY_NAME = {spec.name: spec for spec in PROBES}

# A recording names each sample type by module and class. These modules sat
# in probes/ itself when their types were first recorded; they keep those
# names, so recordings made before and after probes/ had sub-packages read
# alike, in either orac.
RECORDED_AS: dict[ModuleType, str] = {
    system: "probes.system",
    processes: "probes.processes",
    gpu: "probes.gpu",
    syscalls: "probes.syscalls",
    offcpu: "probes.offcpu",
    profile: "probes.profile",
    threads: "probes.threads",
}


def _register_recorded_names() -> None:
    for module, name in RECORDED_AS.items():
        for cls in vars(module).values():
            if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
                register_type(cls, f"{name}:{cls.__qualname__}")


_register_recorded_names()


def spec_named(name: str) -> ProbeSpec[Any, Any] | None:
    """The probe a frame's samples or a --probes list call `name`."""
    return _BY_NAME.get(name)


def all_probes() -> list[Probe[Any]]:
    """A new instance of every system-wide probe."""
    return [spec.make() for spec in PROBES if spec.make is not None]


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
