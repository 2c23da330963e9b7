"""The "filesystems" probe: mountinfo parsing, df's figures, a hung network mount, and a real loop filesystem."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.loop_device import MIB, loop_filesystem

from probes.contract import ProbeUnavailable
from probes.sources.filesystems import (
    NEAR_FULL_PERCENT,
    FilesystemsProbe,
    FilesystemsSample,
    FilesystemView,
    MountedFilesystem,
    MountEntry,
    Space,
    derive_filesystems,
    is_remote,
    parse_mountinfo,
    select_filesystems,
)

REPO = Path(__file__).resolve().parent.parent
MOUNTINFO = b"""\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 27 254:0 /home/x /srv/bind rw,relatime - ext4 /dev/vda rw,discard
31 27 8:1 / /mnt/my\\040disk rw,relatime shared:5 master:2 - xfs /dev/sda1 rw
32 27 0:40 / /tmp rw,nosuid - tmpfs tmpfs rw,size=100k
33 27 0:41 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a,upperdir=/b
34 27 0:42 / /net/home rw - nfs4 server:/home rw,vers=4.2
35 27 7:3 / /snap/core/1 ro,nodev - squashfs /dev/loop3 ro
36 27 8:2 / /boot ro,relatime - ext4 /dev/sda2 rw
37 27 0:43 / /auto rw - autofs systemd-1 rw
this line is not a mount
38 27 254:0 / /mnt/again rw - ext4 /dev/vda rw,discard
"""
GIB = 1 << 30


def statvfs(blocks: int, bfree: int, bavail: int, files: int = 1000, ffree: int = 900) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


# --- parsing and choosing ---------------------------------------------------


def test_parse_mountinfo_fields() -> None:
    entries = {e.mount_point: e for e in parse_mountinfo(MOUNTINFO)}
    assert entries["/"] == MountEntry(
        mount_id=27, major=254, minor=0, root="/", mount_point="/", fs_type="ext4", source="/dev/vda",
        read_only=False, path=b"/",
    )
    # octal escapes undone, optional fields skipped
    disk = entries["/mnt/my disk"]
    assert (disk.path, disk.fs_type, disk.source, disk.major, disk.minor) == (b"/mnt/my disk", "xfs", "/dev/sda1", 8, 1)
    # read-only by its mount options even where the superblock is rw
    assert entries["/boot"].read_only and entries["/snap/core/1"].read_only
    assert entries["/srv/bind"].root == "/home/x"
    assert len(entries) == 11  # the malformed line is skipped


def test_select_leaves_out_pseudo_virtual_and_second_mounts() -> None:
    chosen = [e.mount_point for e in select_filesystems(parse_mountinfo(MOUNTINFO))]
    # /srv/bind and /mnt/again are / again (same device): df shows it once, at /
    assert chosen == ["/", "/mnt/my disk", "/net/home", "/boot"]


def test_select_with_virtual_adds_tmpfs_overlay_and_images() -> None:
    chosen = [e.mount_point for e in select_filesystems(parse_mountinfo(MOUNTINFO), include_virtual=True)]
    assert chosen == [
        "/", "/mnt/my disk", "/tmp", "/var/lib/docker/overlay2/x/merged", "/net/home", "/snap/core/1", "/boot",
    ]


def test_second_mounts_keep_the_whole_tree_over_a_shorter_bind() -> None:
    text = b"40 1 8:1 /sub /a rw - ext4 /dev/sda1 rw\n41 1 8:1 / /data rw - ext4 /dev/sda1 rw\n"
    assert [e.mount_point for e in select_filesystems(parse_mountinfo(text))] == ["/data"]


@pytest.mark.parametrize(
    ("fs_type", "remote"),
    [("nfs4", True), ("cifs", True), ("fuse.sshfs", True), ("fuseblk", True), ("ext4", False), ("xfs", False)],
)
def test_is_remote(fs_type: str, remote: bool) -> None:
    assert is_remote(fs_type) is remote


# --- the probe on a fake /proc and statvfs ----------------------------------


def fake_proc(tmp_path: Path, text: bytes = MOUNTINFO) -> str:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_bytes(text)
    return str(tmp_path)


def test_probe_reads_each_filesystem_and_drops_unmounted_and_sizeless(tmp_path: Path) -> None:
    answers = {
        b"/": statvfs(1000, 400, 350),
        b"/mnt/my disk": statvfs(0, 0, 0),  # reports no size: hidden, as df does
        b"/net/home": statvfs(500, 500, 500),
    }

    def fake_statvfs(path: bytes) -> os.statvfs_result:
        if path not in answers:
            raise FileNotFoundError(path)  # /boot: unmounted since mountinfo was read
        return answers[path]

    probe = FilesystemsProbe(fake_proc(tmp_path), statvfs=fake_statvfs)
    probe.start()
    got = probe.sample()
    assert got.mono_ns is not None
    assert [f.mount_point for f in got.filesystems] == ["/", "/net/home"]
    assert got.filesystems[0].space == Space(1000 * 4096, 400 * 4096, 350 * 4096, 1000, 900)


def nfs_space(sample: FilesystemsSample) -> Space | None:
    return next(f for f in sample.filesystems if f.mount_point == "/net/home").space


def test_a_hung_network_filesystem_shows_as_not_responding_and_is_not_asked_again(tmp_path: Path) -> None:
    release = threading.Event()
    asked: list[bytes] = []

    def fake_statvfs(path: bytes) -> os.statvfs_result:
        asked.append(path)
        if path == b"/net/home":
            release.wait(10)
        return statvfs(100, 50, 50)

    probe = FilesystemsProbe(fake_proc(tmp_path), statvfs=fake_statvfs, remote_timeout_s=0.05)
    started = time.monotonic()
    first = probe.sample()
    second = probe.sample()
    waited_s = time.monotonic() - started
    assert nfs_space(first) is None and nfs_space(second) is None
    assert asked.count(b"/net/home") == 1  # the hung call is not made again
    assert waited_s < 2  # and the samples did not wait for it
    view = derive_filesystems(first, second, 1.0).filesystems
    hung = next(v for v in view if v.mount_point == "/net/home")
    assert not hung.responding and hung.used_percent is None and not hung.near_full
    release.set()
    # Answered once the hung call returns: that call's answer if it comes
    # within a sample's wait, else a new call's.
    for _ in range(100):
        if nfs_space(probe.sample()) is not None:
            break
    else:
        pytest.fail("the network filesystem never answered after it was released")


def test_probe_without_mountinfo_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable, match="mountinfo"):
        FilesystemsProbe(str(tmp_path)).start()


# --- derive: df's figures ---------------------------------------------------


def mounted(space: Space | None, mount_id: int = 27, read_only: bool = False) -> MountedFilesystem:
    return MountedFilesystem(mount_id, "/", "/dev/vda", "ext4", 254, 0, read_only, space)


def view(space: Space | None, prev: Space | None = None, read_only: bool = False) -> FilesystemView:
    before = FilesystemsSample((mounted(prev, read_only=read_only),) if prev else ())
    return derive_filesystems(before, FilesystemsSample((mounted(space, read_only=read_only),)), 2.0).filesystems[0]


def test_used_percent_is_dfs_used_over_used_plus_available() -> None:
    # 100 GiB, 40 free of which 35 available to users (5 reserved for root)
    v = view(Space(100 * GIB, 40 * GIB, 35 * GIB, 1000, 250))
    assert (v.size_bytes, v.used_bytes, v.free_bytes, v.available_bytes) == (100 * GIB, 60 * GIB, 40 * GIB, 35 * GIB)
    assert v.used_percent == pytest.approx(60 / 95 * 100)
    assert v.inodes_used_percent == 75.0
    assert v.growth_bytes_per_s is None and v.responding and not v.near_full


def test_near_full_by_space_or_by_inodes_and_never_read_only() -> None:
    full = Space(100 * GIB, 10 * GIB, 5 * GIB, 1000, 900)
    v = view(full)
    assert v.near_full and v.used_percent is not None and v.used_percent >= NEAR_FULL_PERCENT
    assert view(Space(100 * GIB, 80 * GIB, 75 * GIB, 1000, 50)).near_full
    assert not view(full, read_only=True).near_full


def test_no_inode_count_gives_none() -> None:
    assert view(Space(GIB, GIB // 2, GIB // 2, 0, 0)).inodes_used_percent is None


def test_growth_per_second() -> None:
    v = view(Space(100 * GIB, 39 * GIB, 34 * GIB, 1000, 250), prev=Space(100 * GIB, 40 * GIB, 35 * GIB, 1000, 250))
    assert v.growth_bytes_per_s == GIB / 2


def test_an_unmounted_filesystem_goes_away_and_a_remount_is_new() -> None:
    space = Space(GIB, GIB // 2, GIB // 2, 10, 5)
    prev = FilesystemsSample((mounted(space, 27), mounted(space, 28)))
    curr = FilesystemsSample((mounted(space, 29),))
    views = derive_filesystems(prev, curr, 1.0).filesystems
    assert len(views) == 1 and views[0].growth_bytes_per_s is None


# --- a real filesystem on a loop device (root) -------------------------------


def df(mount: Path) -> dict[str, str]:
    out = subprocess.run(
        ["df", "-B1", "--output=size,used,avail,pcent,ipcent", str(mount)],
        check=True, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
    ).stdout.splitlines()
    return dict(zip(out[0].split(), out[1].split()))


def real_view(probe: FilesystemsProbe, mount: Path) -> FilesystemView:
    a = probe.sample()
    b = probe.sample()
    return next(v for v in derive_filesystems(a, b, 1.0).filesystems if v.mount_point == str(mount))


def test_a_filesystem_filled_to_a_known_percentage_shows_it(tmp_path: Path) -> None:
    with loop_filesystem(tmp_path) as fs:
        probe = FilesystemsProbe()
        probe.start()
        before = real_view(probe, fs.mount)
        assert (before.fs_type, before.source, before.read_only) == ("ext4", fs.device, False)
        st = os.statvfs(fs.mount)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        users = used + st.f_bavail * st.f_frsize
        target = 60.0
        fill = int(users * target / 100) - used
        with open(fs.mount / "fill", "wb") as f:
            os.posix_fallocate(f.fileno(), 0, fill)
            os.fsync(f.fileno())
        after = real_view(probe, fs.mount)
        theirs = df(fs.mount)
    assert after.used_percent == pytest.approx(target, abs=1)
    # the same statvfs as df, so the bytes agree exactly; df rounds Use% up
    assert (after.size_bytes, after.used_bytes, after.available_bytes) == (
        int(theirs["1B-blocks"]), int(theirs["Used"]), int(theirs["Avail"]),
    )
    assert after.used_percent is not None and after.inodes_used_percent is not None
    assert math.ceil(after.used_percent) == int(theirs["Use%"].rstrip("%"))
    assert math.ceil(after.inodes_used_percent) == int(theirs["IUse%"].rstrip("%"))
    assert after.used_bytes is not None and before.used_bytes is not None
    assert after.used_bytes - before.used_bytes == pytest.approx(fill, rel=0.01)
    assert not after.near_full


def test_a_filesystem_filled_past_the_threshold_is_near_full(tmp_path: Path) -> None:
    with loop_filesystem(tmp_path, size_mib=16) as fs:
        st = os.statvfs(fs.mount)
        with open(fs.mount / "fill", "wb") as f:
            os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - MIB // 2)
        probe = FilesystemsProbe()
        probe.start()
        v = real_view(probe, fs.mount)
    assert v.used_percent is not None and v.used_percent > NEAR_FULL_PERCENT and v.near_full


def test_a_filesystem_unmounted_mid_run_goes_away(tmp_path: Path) -> None:
    with loop_filesystem(tmp_path) as fs:
        probe = FilesystemsProbe()
        probe.start()
        before = probe.sample()
        assert str(fs.mount) in {f.mount_point for f in before.filesystems}
        subprocess.run(["umount", str(fs.mount)], check=True)
        after = probe.sample()
    assert str(fs.mount) not in {f.mount_point for f in after.filesystems}
    assert str(fs.mount) not in {v.mount_point for v in derive_filesystems(before, after, 1.0).filesystems}


def test_the_probe_needs_no_privilege() -> None:
    script = (
        "from probes.sources.filesystems import FilesystemsProbe; p = FilesystemsProbe(); p.start();"
        "print(' '.join(f.mount_point for f in p.sample().filesystems))"
    )
    # As root, run it as nobody.
    nobody = 65534 if os.geteuid() == 0 else None
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={"PYTHONPATH": str(REPO)}, check=True,
        capture_output=True, text=True, user=nobody, group=nobody,
    ).stdout
    assert "/" in out.split()
