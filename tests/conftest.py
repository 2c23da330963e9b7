from __future__ import annotations

import sys
from pathlib import Path

# Tests import the project's packages from the checkout, installed or not,
# and their shared helpers from tests/support/.
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS.parent))
sys.path.insert(0, str(TESTS))
