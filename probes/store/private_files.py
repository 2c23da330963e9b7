"""Creating orac's files (screenshots, recordings, folded stacks) safely as root.

orac often runs as root in directories other users can write to. Every file
it creates goes through here:

- The directory must be owned by the caller or by root, and if group or
  others may write to it, it must be sticky (like /tmp), so nobody else can
  rename or replace what orac puts there. A directory orac creates is mode
  0700 whatever the umask.
- The directory is opened once and every file is created relative to that
  descriptor, so swapping the directory (or a parent) for a link after the
  check changes nothing.
- Files are created with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 whatever the
  umask: a name planted in advance (a dangling link, a hard link, a file)
  makes the creation fail instead of being followed or overwritten.

A root-owned sticky directory is accepted for any caller: root can do
anything anyway, and the sticky bit keeps other users off orac's files.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDirectory(OSError):
    """A directory orac will not write into; the message says why in one line."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.EPERM, f"{path} {why}")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def distrust(st: os.stat_result, uid: int) -> str | None:
    """Why a directory with this stat is unsafe for `uid` to write into, or None."""
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid not in (uid, 0):
        return f"belongs to another user (uid {st.st_uid}); choose a directory of your own"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return "is writable by other users; choose a directory only you can write to"
    return None


class PrivateDirectory:
    """A directory checked once and held open; files are created inside it by name.

    Raises:
        UnsafeDirectory: the directory belongs to another user or others may
            write to it (see the module's rules).
        OSError: it cannot be created or opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        # Links the user wrote in the path are followed once, here; the last
        # component is then opened without following one, so a link put in
        # its place after this line makes the open fail.
        real = os.path.realpath(self.path)
        if create:
            os.makedirs(os.path.dirname(real), exist_ok=True)
            try:
                os.mkdir(real, DIRECTORY_MODE)
            except FileExistsError:
                pass
            else:
                # mkdir's mode is masked by the umask, which may also be looser.
                os.chmod(real, DIRECTORY_MODE, follow_symlinks=False)
        try:
            self.fd = os.open(real, _OPEN_DIRECTORY_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeDirectory(self.path, "is not a directory") from None
            raise
        why = distrust(os.fstat(self.fd), os.geteuid())
        if why is not None:
            os.close(self.fd)
            raise UnsafeDirectory(self.path, why)

    def __enter__(self) -> PrivateDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def create(self, name: str) -> int:
        """A new file `name`, mode 0600, open for writing; FileExistsError if the name is taken in any way."""
        fd = os.open(name, _CREATE_FLAGS, FILE_MODE, dir_fd=self.fd)
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError:
            os.close(fd)
            raise
        return fd

    def create_set(self, stem: str, suffixes: tuple[str, ...]) -> tuple[str, list[int]]:
        """Create stem+suffix for every suffix at once (or stem-2+suffix ...); returns the stem used and open fds.

        All are created before anything is written, each with O_EXCL: a name
        someone planted (a dangling link included) moves the whole set to the
        next stem, and nobody can slip a link in while the first is written.
        """
        base = stem
        n = 2
        while True:
            fds: list[int] = []
            try:
                for suffix in suffixes:
                    fds.append(self.create(stem + suffix))
            except FileExistsError:
                for fd, suffix in zip(fds, suffixes):
                    os.close(fd)
                    self.unlink(stem + suffix)
                stem = f"{base}-{n}"
                n += 1
                continue
            return stem, fds

    def unlink(self, name: str, *, missing_ok: bool = True) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def same_file(self, name: str, fd: int) -> bool:
        """Whether `name` here is still the file open as `fd` (and not a link)."""
        try:
            named = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
