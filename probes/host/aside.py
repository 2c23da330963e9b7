"""Running a piece of orac in a short-lived child process.

Work that needs a lot of memory only while it runs (compiling eBPF with
bcc, parsing /proc/kallsyms) is done in a child, so orac's own process keeps
only the result, not the allocator's leftovers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def package_root() -> str:
    """The directory holding the `probes` package, installed or a checkout."""
    return str(Path(__file__).resolve().parents[2])


def child_env() -> dict[str, str]:
    """This environment, with `python -m probes....` finding this very code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH")) if p)
    return env


def run_module(module: str, *args: str, timeout_s: float = 30.0) -> bytes | None:
    """Run `python -m module args` and return its stdout, or None if it failed."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True, env=child_env(), timeout=timeout_s, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
