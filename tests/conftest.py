from __future__ import annotations

import sys
from pathlib import Path

# Tests import the project's packages from the checkout, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
