"""What the real block I/O tests share: a loop device of their own, and a direct-I/O workload.

The tests make I/O on a loop device they attach to a file and format
themselves, so what they measure is isolated from the machine's own disk
traffic. They need root (losetup, mkfs, mount) and skip with the reason
without it, or fail instead where ORAC_REQUIRE_EBPF=1 (CI's switch for
"the real kernel tests must run here": it runs as root). Everything a test
changes is undone when it ends, failed or not.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import support

HELPER = Path(__file__).parent / "workloads" / "direct_io.py"
MIB = 1 << 20
# <linux/loop.h>
LOOP_CTL_ADD = 0x4C80
LOOP_CTL_REMOVE = 0x4C81
# mkfs.ext4 without a journal, and with its inode tables written now rather
# than by a kernel thread after mount: nothing but the test's own I/O then
# reaches the device while a test measures.
MKFS = ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
TOOLS = {"losetup": "mount", "mkfs.ext4": "e2fsprogs", "mount": "mount", "umount": "mount"}


def cannot_run(reason: str) -> NoReturn:
    support.cannot_run(f"real block I/O tests cannot run here: {reason}")


def require_root(**tools: str) -> None:
    """Skip (fail in CI) unless root with the loop tools, and `tools` (command -> Debian package)."""
    if os.geteuid() != 0:
        cannot_run("they need root to attach a loop device and mount it (run the tests with sudo)")
    for command, package in {**TOOLS, **tools}.items():
        if shutil.which(command) is None:
            cannot_run(f"{command} is missing (apt-get install -y {package})")
    if not os.path.exists("/dev/loop-control"):
        cannot_run("the kernel has no loop device support (/dev/loop-control)")


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass(frozen=True)
class LoopFs:
    device: str  # /dev/loopN
    name: str  # loopN, as /proc/diskstats names it
    mount: Path


@contextmanager
def loop_filesystem(directory: Path, size_mib: int = 64) -> Iterator[LoopFs]:
    """An ext4 filesystem on a loop device on a file in `directory`, mounted; all undone after."""
    require_root()
    image = directory / "disk.img"
    mount = directory / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mib * MIB)
    device = ""
    mounted = False
    try:
        device = _run("losetup", "-f", "--show", str(image)).strip()
        _run(*MKFS, device)
        _run("mount", device, str(mount))
        mounted = True
        yield LoopFs(device, os.path.basename(device), mount)
    finally:
        if mounted and subprocess.run(["umount", str(mount)], check=False, capture_output=True).returncode:
            # Busy (a helper that did not exit): detach it from the tree now,
            # the kernel lets go of it when its last user does. (It fails
            # too where the test unmounted it itself, which is fine.)
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        image.unlink(missing_ok=True)


@contextmanager
def new_loop_device() -> Iterator[str]:
    """A loop device made for the test (LOOP_CTL_ADD) and removed after: its name."""
    require_root()
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    index = None
    try:
        # The first free number from 200 up, well above the ones losetup uses.
        for candidate in range(200, 1000):
            try:
                index = fcntl.ioctl(control, LOOP_CTL_ADD, candidate)
                break
            except OSError:
                continue
        if index is None:
            cannot_run("no loop device number from 200 to 999 is free")
        yield f"loop{index}"
    finally:
        if index is not None:
            try:
                fcntl.ioctl(control, LOOP_CTL_REMOVE, index)
            except OSError:
                pass
        os.close(control)


def remove_loop_device(name: str) -> None:
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(control, LOOP_CTL_REMOVE, int(name.removeprefix("loop")))
    finally:
        os.close(control)


class DirectIo:
    """tests/support/workloads/direct_io.py running in a child process, driven a command at a time."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        ready = self.line().split()
        assert ready[0] == "ready", ready
        self.pid = int(ready[1])

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"direct_io helper ended (status {self.process.wait()})")
        return line.strip()

    def call(self, command: str) -> list[str]:
        """Send a command and wait for its "done ..." answer: the numbers in it."""
        self.send(command)
        answer = self.line().split()
        assert answer[0] == "done", answer
        return answer[1:]


@contextmanager
def direct_io() -> Iterator[DirectIo]:
    process = subprocess.Popen(
        [sys.executable, str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        yield DirectIo(process)
    finally:
        process.kill()
        process.wait()
