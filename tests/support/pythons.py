"""The CPython interpreters this machine has that orac reads frames of, and a Python workload started on one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import WORKLOADS

PYENV = Path.home() / ".pyenv" / "versions"
# Each minor version lays its frames out differently: Debian 12's 3.11 and pyenv's 3.12+ where this machine has them.
CPYTHONS = [exe for exe in ["/usr/bin/python3.11", *map(str, sorted(PYENV.glob("3.1[2-9]*/bin/python3")))] if Path(exe).exists()]


def started(python: str, workload: str) -> subprocess.Popen[str]:
    """tests/support/workloads/`workload` running on `python`, once it printed "ready"; the caller kills it."""
    target = subprocess.Popen([python, str(WORKLOADS / workload)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
    except BaseException:
        target.kill()
        target.wait()
        raise
    return target
