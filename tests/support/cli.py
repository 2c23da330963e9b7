"""The `orac` command line, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def orac(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `python -m tui.cli ARGS` with stdout and stderr captured (so not a tty)."""
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `orac: error: ...` line of a run that exited 2, without a traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orac: error: "), result.stderr
    return lines[0]
