"""Files orac creates as root never land where another user points them.

The attack (issue 20, item 1): root runs orac with its working directory in
a directory other users can write to; another user has made
`orac-screenshots/` there (0777) and planted dangling links named like the
next screenshot, and races to link the PNG once the SVG appears. The
attacker here is a real second user (`nobody`), acting through its own
processes.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.store.format import RecordingError
from probes.store.private_files import PrivateDirectory, UnsafeDirectory, distrust
from probes.store.reader import Recording
from probes.store.writer import Recorder
from tui.screenshot import write_screenshot

NOBODY = 65534
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")


def fake_stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 0, uid, 0, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "owner", "trusted"),
    [
        (stat.S_IFDIR | 0o700, 1000, True),
        (stat.S_IFDIR | 0o755, 0, True),
        (stat.S_IFDIR | 0o1777, 0, True),  # /tmp
        (stat.S_IFDIR | 0o1777, 1000, True),  # the caller's own sticky directory
        (stat.S_IFDIR | 0o700, 2000, False),  # another user's
        (stat.S_IFDIR | 0o1777, 2000, False),  # another user's, even sticky
        (stat.S_IFDIR | 0o777, 1000, False),  # anyone may rename or replace files
        (stat.S_IFDIR | 0o770, 0, False),  # a group may
        (stat.S_IFREG | 0o600, 1000, False),
    ],
)
def test_which_directories_are_trusted(mode: int, owner: int, trusted: bool) -> None:
    assert (distrust(fake_stat(mode, owner), 1000) is None) is trusted


def as_nobody(code: str, *args: str) -> None:
    """Run Python code as the second user; it fails the test if it fails."""
    subprocess.run(
        [sys.executable, "-c", code, *args], user=NOBODY, group=NOBODY, extra_groups=[], check=True, timeout=30
    )


def stamps(seconds: int = 20) -> list[str]:
    now = time.time()
    return [time.strftime("%Y%m%d-%H%M%S", time.localtime(now + i)) for i in range(-1, seconds)]


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory the second user can reach (pytest's own tmp_path is root's, 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="orac-test-"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def victim(base: Path) -> Path:
    """A root-only directory with a file worth protecting; links point in here."""
    secret = base / "root-only"
    secret.mkdir(mode=0o700)
    (secret / "precious").write_text("root's data\n")
    return secret


def untouched(victim: Path) -> bool:
    return sorted(p.name for p in victim.iterdir()) == ["precious"] and (victim / "precious").read_text() == "root's data\n"


@pytest.fixture
def shared(base: Path) -> Path:
    """A world-writable directory the other user owns (root's working directory)."""
    directory = base / "shared"
    directory.mkdir()
    os.chown(directory, NOBODY, NOBODY)
    os.chmod(directory, 0o777)
    return directory


PLANT = """
import os, sys
directory, victim = sys.argv[1], sys.argv[2]
if not os.path.isdir(directory):
    os.mkdir(directory)
    os.chmod(directory, 0o777)
for stamp in sys.argv[3:]:
    for suffix in (".svg", ".png", ".txt"):
        os.symlink(os.path.join(victim, "from-" + stamp + suffix), os.path.join(directory, "orac-" + stamp + suffix))
"""


@as_root
def test_a_screenshot_directory_made_by_another_user_is_refused(shared: Path, victim: Path) -> None:
    planted = shared / "orac-screenshots"
    as_nobody(PLANT, str(planted), str(victim), *stamps())
    for _ in range(4):
        with pytest.raises(UnsafeDirectory, match="belongs to another user"):
            write_screenshot(planted, SVG, "text")
    assert untouched(victim)
    assert all(p.is_symlink() for p in planted.iterdir())


@as_root
def test_a_screenshot_directory_orac_makes_is_private_whatever_the_umask(shared: Path, victim: Path) -> None:
    old = os.umask(0)
    try:
        paths = write_screenshot(shared / "orac-screenshots", SVG, "text")
    finally:
        os.umask(old)
    directory = paths[0].parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and directory.stat().st_uid == 0
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o600] * 3
    # The other user can plant nothing in it now.
    with pytest.raises(subprocess.CalledProcessError):
        as_nobody(PLANT, str(directory), str(victim), *stamps())
    assert untouched(victim)


RACE = """
import os, sys, time
directory, victim = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    for name in os.listdir(directory):
        if name.endswith(".svg") and not os.path.islink(os.path.join(directory, name)):
            try:
                os.symlink(os.path.join(victim, "precious"), os.path.join(directory, name[:-4] + ".png"))
            except FileExistsError:
                pass
            sys.exit(0)
"""


@as_root
def test_planted_links_in_a_sticky_directory_are_stepped_around(base: Path, victim: Path) -> None:
    """Like /tmp: root's, sticky, world-writable. Planted names move the screenshot to the next free name."""
    sticky = base / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    as_nobody(PLANT, str(sticky), str(victim), *stamps())
    racer = subprocess.Popen(
        [sys.executable, "-c", RACE, str(sticky), str(victim)], user=NOBODY, group=NOBODY, extra_groups=[]
    )
    try:
        written = [write_screenshot(sticky, SVG, f"shot {i}") for i in range(4)]
    finally:
        racer.wait(timeout=15)
    for paths in written:
        for path in paths:
            st = path.lstat()
            assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
            assert path.stat().st_size > 0
    assert len({p for paths in written for p in paths}) == 12
    assert untouched(victim)


@as_root
def test_recordings_refuse_another_users_directory_and_step_around_planted_side_files(
    shared: Path, base: Path, victim: Path
) -> None:
    with pytest.raises(RecordingError, match="belongs to another user"):
        Recorder(shared / "x.orac", interval_s=1.0)
    assert not (shared / "x.orac").exists()

    sticky = base / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    plant = "import os, sys\nfor s in ('-journal', '-wal', '-shm'):\n    os.symlink(sys.argv[2], sys.argv[1] + s)\n"
    as_nobody(plant, str(sticky / "x.orac"), str(victim / "precious"))
    Recorder(sticky / "x.orac", interval_s=1.0).close()
    assert untouched(victim)
    assert sorted(p.name for p in sticky.iterdir()) == ["x.orac"]
    assert stat.S_IMODE((sticky / "x.orac").stat().st_mode) == 0o600
    with Recording(sticky / "x.orac") as recording:
        assert len(recording) == 0


def test_recordings_refuse_a_world_writable_directory(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(RecordingError, match="writable by other users"):
        Recorder(open_dir / "x.orac", interval_s=1.0)
    assert list(open_dir.iterdir()) == []


def test_a_link_swapped_in_for_the_directory_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    with PrivateDirectory(real) as private:
        real.rename(tmp_path / "moved")
        (tmp_path / "elsewhere").mkdir()
        real.symlink_to(tmp_path / "elsewhere")
        os.close(private.create("file"))
    assert (tmp_path / "moved" / "file").exists()
    assert list((tmp_path / "elsewhere").iterdir()) == []
