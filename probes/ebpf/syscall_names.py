"""Syscall numbers and errno values to names, for the running architecture.

The table comes from the `__NR_*` defines in headers on the box: the C
library's kernel headers (linux-libc-dev, kernel-headers) or the kernel build
tree bcc compiles against. Syscalls numbered from 424 on have one number on
every architecture, so those newer than the headers (the running kernel is
often newer than they are) come from a list kept here. Anything else is named
`syscall_N`.
"""

from __future__ import annotations

import errno
import os
import platform
import re
from collections.abc import Mapping
from functools import cache

from probes.host.procfs import read_text

# Newest headers first: each file is complete for its kernel version.
_HEADER_CANDIDATES: dict[str, tuple[str, ...]] = {
    "x86_64": (
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
        "/lib/modules/{release}/build/arch/x86/include/generated/uapi/asm/unistd_64.h",
    ),
    "aarch64": (
        # Kernels from 6.11 generate unistd_64.h; older ones use asm-generic's list.
        "/usr/include/aarch64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
        "/lib/modules/{release}/build/arch/arm64/include/generated/uapi/asm/unistd_64.h",
        "/usr/include/asm-generic/unistd.h",
        "/lib/modules/{release}/build/include/uapi/asm-generic/unistd.h",
    ),
}
# Architectures without their own table use asm-generic's (riscv64, loongarch64).
_GENERIC_CANDIDATES = (
    "/usr/include/asm-generic/unistd.h",
    "/lib/modules/{release}/build/include/uapi/asm-generic/unistd.h",
)

# Linux 5.1 onwards gives each new syscall the same number on all architectures.
UNIFIED_SYSCALLS: Mapping[int, str] = {
    424: "pidfd_send_signal", 425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register",
    428: "open_tree", 429: "move_mount", 430: "fsopen", 431: "fsconfig", 432: "fsmount", 433: "fspick",
    434: "pidfd_open", 435: "clone3", 436: "close_range", 437: "openat2", 438: "pidfd_getfd",
    439: "faccessat2", 440: "process_madvise", 441: "epoll_pwait2", 442: "mount_setattr",
    443: "quotactl_fd", 444: "landlock_create_ruleset", 445: "landlock_add_rule",
    446: "landlock_restrict_self", 447: "memfd_secret", 448: "process_mrelease", 449: "futex_waitv",
    450: "set_mempolicy_home_node", 451: "cachestat", 452: "fchmodat2", 453: "map_shadow_stack",
    454: "futex_wake", 455: "futex_wait", 456: "futex_requeue", 457: "statmount", 458: "listmount",
    459: "lsm_get_self_attr", 460: "lsm_set_self_attr", 461: "lsm_list_modules", 462: "mseal",
    463: "setxattrat", 464: "getxattrat", 465: "listxattrat", 466: "removexattrat",
    467: "open_tree_attr", 468: "file_getattr", 469: "file_setattr",
}

# Values the kernel uses internally that still show up at syscall exit:
# a syscall interrupted by a signal returns these before it is restarted or
# turned into EINTR (strace shows the same names).
KERNEL_ERRNOS: Mapping[int, str] = {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
    524: "ENOTSUPP",
}
# Where Python's table picks the alias the kernel sources do not use.
_ERRNO_PREFERRED: Mapping[int, str] = {errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EDEADLK: "EDEADLK"}

_DEFINE = re.compile(r"^#define\s+(__NR3264_\w+|__NR_\w+)\s+(\w+)", re.MULTILINE)
# Defines in the headers that are not syscalls; and sync_file_range2, which
# asm-generic defines as 84 under #ifdef before sync_file_range under #else:
# only csky wants it, and orac does not run there.
_NOT_SYSCALLS = {"syscalls", "arch_specific_syscall", "sync_file_range2"}


def parse_unistd(text: str) -> dict[int, str]:
    """Syscall number -> name from the `#define __NR_name N` lines of a unistd header.

    asm-generic's header defines some numbers through `__NR3264_*` aliases, and
    names some twice: 64-bit names first, then 32-bit ones under #else.
    The first name of a number wins, which is the 64-bit one.
    """
    values: dict[str, str] = {}
    order: list[str] = []
    for name, value in _DEFINE.findall(text):
        if name not in values:
            values[name] = value
            order.append(name)
    table: dict[int, str] = {}
    for name in order:
        if not name.startswith("__NR_"):
            continue
        syscall = name.removeprefix("__NR_")
        value = values[name]
        # Follow aliases such as __NR_fcntl -> __NR3264_fcntl -> 25.
        for _ in range(4):
            if value in values:
                value = values[value]
        if syscall in _NOT_SYSCALLS or not value.isdigit():
            continue
        table.setdefault(int(value), syscall)
    return table


@cache
def syscall_table(machine: str | None = None, release: str | None = None) -> Mapping[int, str]:
    """The syscall table of `machine` (default: this one) from the first header that has one."""
    machine = machine or platform.machine()
    release = release or os.uname().release
    table: dict[int, str] = {}
    for pattern in _HEADER_CANDIDATES.get(machine, _GENERIC_CANDIDATES):
        text = read_text(pattern.format(release=release))
        if text:
            table = parse_unistd(text)
            if table:
                break
    return {**UNIFIED_SYSCALLS, **table}


def syscall_name(nr: int) -> str:
    """The name of syscall `nr` on this machine, or `syscall_N` when no header knows it."""
    return syscall_table().get(nr) or f"syscall_{nr}"


def errno_name(err: int) -> str:
    """EBADF for 9, ERESTARTSYS for 512; `errno_N` for a value no table has."""
    return _ERRNO_PREFERRED.get(err) or errno.errorcode.get(err) or KERNEL_ERRNOS.get(err) or f"errno_{err}"
