"""Whether eBPF can run here (privileges, bcc, kernel headers, tracefs), and if not what to do, before anything is compiled."""

from __future__ import annotations

import glob
import importlib.resources
import importlib.util
import os
import sys

from probes.contract import ProbeUnavailable
from probes.ebpf.bpf import ENOTSUPP, BpfMap, map_info, parse_cpu_ranges, possible_cpus  # noqa: F401 - their home was here
from probes.host.procfs import read_text

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

TRACEFS_EVENTS_DIRS = ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events")

BCC_INSTALL = "sudo apt-get install python3-bpfcc (Debian/Ubuntu) or python3-bcc (Fedora)"
HEADERS_INSTALL = "sudo apt-get install linux-headers-$(uname -r)"

# Where distributions put bcc's Python module for the system python3.
SYSTEM_BCC_GLOBS = (
    "/usr/lib/python3/dist-packages/bcc/__init__.py",
    "/usr/lib/python3*/site-packages/bcc/__init__.py",
    "/usr/lib64/python3*/site-packages/bcc/__init__.py",
)



def effective_capabilities(status_text: str | None = None) -> int:
    """The CapEff bit mask of this process, from /proc/self/status."""
    if status_text is None:
        status_text = read_text("/proc/self/status") or ""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_bpf_privileges(euid: int, cap_eff: int) -> bool:
    """Root, CAP_SYS_ADMIN (kernels before 5.8 know nothing finer), or CAP_BPF with CAP_PERFMON."""
    def has(cap: int) -> bool:
        return bool(cap_eff >> cap & 1)

    return euid == 0 or has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))


def kernel_headers_dir(release: str) -> str | None:
    """Where bcc will find kernel headers for `release`, or None."""
    candidates = [os.environ.get("BCC_KERNEL_SOURCE", ""), f"/lib/modules/{release}/build"]
    for path in candidates:
        if path and os.path.isdir(os.path.join(path, "include")):
            return path
    # bcc unpacks these itself (CONFIG_IKHEADERS, after `modprobe kheaders`).
    if os.path.exists("/sys/kernel/kheaders.tar.xz"):
        return "/sys/kernel/kheaders.tar.xz"
    return None


def headers_release(headers_dir: str) -> str | None:
    """The kernel release the headers in `headers_dir` were made for, when they say."""
    text = read_text(os.path.join(headers_dir, "include/generated/utsrelease.h")) or ""
    _, _, rest = text.partition('UTS_RELEASE "')
    return rest.partition('"')[0] or None


def _check_bcc() -> None:
    # find_spec finds the module without importing it: only the loader child
    # imports bcc (whether libbcc.so loads is its to say, see load_program).
    # The child is started with the same interpreter and path, so it sees
    # what this process sees.
    try:
        found = importlib.util.find_spec("bcc") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return
    if any(glob.glob(pattern) for pattern in SYSTEM_BCC_GLOBS):
        raise ProbeUnavailable(
            f"bcc is installed for the system python3, but orac's Python ({sys.executable}) does not see it",
            "create orac's virtualenv with `python3 -m venv --system-site-packages`",
        )
    raise ProbeUnavailable("bcc's Python module is not installed", BCC_INSTALL)


def check_ebpf(*, tracefs: bool = True) -> None:
    """Raise ProbeUnavailable unless bcc programs can be compiled and attached here.

    Args:
        tracefs: whether the probe attaches through tracefs (classic
            tracepoints). Raw tracepoints and perf events are attached by
            name and do not need it.
    """
    _check_bcc()
    if not has_bpf_privileges(os.geteuid(), effective_capabilities()):
        raise ProbeUnavailable("eBPF needs root, or CAP_BPF and CAP_PERFMON", "run `sudo orac`")
    if tracefs and not any(os.path.isdir(d) for d in TRACEFS_EVENTS_DIRS):
        raise ProbeUnavailable("tracefs is not mounted", "sudo mount -t tracefs nodev /sys/kernel/tracing")
    release = os.uname().release
    if kernel_headers_dir(release) is None:
        raise ProbeUnavailable(
            f"no kernel headers for the running kernel {release} (/lib/modules/{release}/build is missing)",
            HEADERS_INSTALL,
        )
