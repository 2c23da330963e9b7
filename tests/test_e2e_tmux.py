"""End to end: the real orac in tmux, read back with capture-pane, as a person would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "orac-e2e-marker"

pytestmark = pytest.mark.e2e

if shutil.which("tmux") is None and not os.environ.get("CI"):
    pytest.skip("tmux is not installed (apt-get install tmux)", allow_module_level=True)


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "orac")

    def wait_for(self, text: str, timeout_s: float = 20) -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


@pytest.fixture
def tmux():
    t = Tmux(f"orac-test-{os.getpid()}")
    yield t
    subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True)


@pytest.fixture
def marked_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(120)", MARKER])
    yield proc
    proc.kill()
    proc.wait()


def test_orac_in_tmux_finds_a_process_it_started(tmux: Tmux, marked_process: subprocess.Popen[bytes]) -> None:
    # COLUMNS and LINES from the test runner's environment would override the
    # pane's real size in orac (shutil.get_terminal_size reads them first).
    command = f"cd {ROOT} && exec env -u COLUMNS -u LINES {sys.executable} -m tui.cli --interval 0.5"
    tmux("new-session", "-d", "-s", "orac", "-x", "160", "-y", "48", command)
    tmux.wait_for("Processes")
    tmux("send-keys", "-t", "orac", "/")
    tmux.wait_for("filter on command or user")  # typed before the input has focus, keys go elsewhere
    tmux("send-keys", "-t", "orac", "-l", MARKER)
    screen = tmux.wait_for(f"matching '{MARKER}'")
    rows = [line for line in screen.splitlines() if MARKER in line and str(marked_process.pid) in line]
    assert rows, f"no row for pid {marked_process.pid}:\n{screen}"
    # it runs as the test's own user (USER is 9 cells: a longer name is cut to 8 and "…")
    user = pwd.getpwuid(os.getuid()).pw_name
    assert f" {user[:8]}" in rows[0], rows[0]
    # The header shows real values from this box.
    assert os.uname().nodename in screen and os.uname().release in screen
    tmux("send-keys", "-t", "orac", "Enter")
    tmux("send-keys", "-t", "orac", "q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["tmux", "-L", tmux.socket, "has-session", "-t", "orac"], capture_output=True).returncode:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("orac did not exit on q")


def test_keys_sent_in_one_burst_after_slash_go_to_the_filter(tmux: Tmux) -> None:
    command = f"cd {ROOT} && exec env -u COLUMNS -u LINES {sys.executable} -m tui.cli --interval 0.5 --probes cpu,procs"
    tmux("new-session", "-d", "-s", "orac", "-x", "160", "-y", "48", command)
    tmux.wait_for("Processes")
    # One send-keys: the terminal hands orac all six keys in one read; `q` would quit.
    tmux("send-keys", "-t", "orac", "/", "m", "y", "s", "q", "l")
    tmux.wait_for("matching 'mysql'")
    tmux("send-keys", "-t", "orac", "Enter", "N")
    screen = tmux.wait_for("PID▲")
    assert "matching 'mysql'" in screen
