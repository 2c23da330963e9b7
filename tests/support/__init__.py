"""What the tests share, none of it a test.

- harness: drive OracApp from fixed frames; PaneApp and mounted() to test one pane alone
- recordings: synthetic frames and recordings written to disk
- cli: the `orac` command line run as a user runs it
- synthetic, synthetic_offcpu, synthetic_threads: hand-made frames with known values
- ebpf: start a real eBPF probe, build a C workload; skip where eBPF cannot run, fail in CI
- loop_device: a loop device and filesystem of the test's own, and a direct-I/O workload
- netns: network namespaces with a veth pair for the real network tests
- fake_nvml: a fake pynvml for the GPU probe and pane
- workloads/: the programs the real tests run and measure (C sources built with gcc, Python scripts)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

# CI's switch (.ci/run, as root): the real kernel tests must run, so what
# would make them skip (no eBPF, no gcc, no root tools) fails them instead.
REQUIRE = os.environ.get("ORAC_REQUIRE_EBPF") == "1"


def cannot_run(message: str) -> NoReturn:
    """Skip with `message`, or fail with it where ORAC_REQUIRE_EBPF=1."""
    if REQUIRE:
        pytest.fail(f"{message} (ORAC_REQUIRE_EBPF=1 makes this a failure)")
    pytest.skip(message)


WORKLOADS = Path(__file__).parent / "workloads"
