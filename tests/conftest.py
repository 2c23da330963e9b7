from __future__ import annotations

import sys
from pathlib import Path

# Tests import the project's packages from the checkout, installed or not,
# and their shared helpers from tests/support/.
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS.parent))
sys.path.insert(0, str(TESTS))


import pytest  # noqa: E402 - after the paths it needs
from support.cgroups import v1_cpu_cgroup  # noqa: E402, F401 - a fixture for every test module
from support.recordings import synthetic_recording  # noqa: E402
from support.small_disk import small_disk  # noqa: E402, F401 - a fixture for every test module

from probes.store.reader import Recording  # noqa: E402
from probes.store.replay import ReplaySource  # noqa: E402
from tui.app import OracApp  # noqa: E402


@pytest.fixture
def replay_app(tmp_path):
    """The app replaying 30 s of the synthetic box, paused at the start."""
    recording = Recording(synthetic_recording(tmp_path / "s.orac"))
    app = OracApp(ReplaySource(recording, paused=True))
    yield app
    recording.close()
