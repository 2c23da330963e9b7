"""orac's data sources. Usable without the UI: this package never imports textual.

The sub-packages are the layers, in the order data flows through them:

    host/     reading /proc and /sys, short-lived children, signals
    ebpf/     eBPF programs: checks, compiling in a child, bpf(2), map reads
    symbols/  stack addresses to names: kallsyms, ELF files, process maps
    sources/  the probes, one module each: a raw sample, its view, its derive
    model/    a tick's Frame, derived views, the collector, redaction
    store/    recordings: format, codec, writer, reader, replay, dump

contract.py says what a probe is; registry.py lists the probes.
"""

from __future__ import annotations

from probes.contract import Probe, ProbeUnavailable
from probes.model.frame import Frame

__all__ = ["Frame", "Probe", "ProbeUnavailable"]
