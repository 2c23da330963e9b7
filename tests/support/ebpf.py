"""What the real eBPF tests share: skip where eBPF cannot run, fail instead in CI.

ORAC_REQUIRE_EBPF=1 (set by .ci/run) turns "cannot run here" into a failure,
so a broken bcc or headers install cannot pass as green.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NoReturn, TypeVar

from probes.contract import Probe, ProbeUnavailable
from support import cannot_run

P = TypeVar("P", bound=Probe)


def unavailable(reason: str) -> NoReturn:
    cannot_run(f"eBPF cannot run here: {reason}")


def start(probe: P) -> P:
    """Start a probe, or skip (fail in CI) with its reason."""
    try:
        probe.start()
    except ProbeUnavailable as exc:
        unavailable(str(exc))
    return probe


def compile_helper(source: Path, directory: Path, *flags: str) -> Path:
    """Build a C test helper with gcc, or skip (fail in CI) without it."""
    gcc = shutil.which("gcc")
    if gcc is None:
        unavailable("gcc is needed to build the test helper (apt-get install gcc)")
    binary = directory / source.stem
    subprocess.run([gcc, *flags, "-o", str(binary), str(source)], check=True)
    return binary


def lost_reasons_in(program_text: str) -> tuple[str, ...]:
    """The names of a program's enum lost_reason, in order, as its Python side spells them."""
    enum = program_text.split("enum lost_reason {", 1)[1].split("LOST_REASONS,", 1)[0]
    return tuple(line.split(",")[0].strip().removeprefix("LOST_").lower() for line in enum.splitlines() if "LOST_" in line)
