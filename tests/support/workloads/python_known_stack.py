"""A Python process that prints its own stack, then waits where it printed it, for a reader to compare.

The stack runs through a method (a qualified name), a generator (a frame
outside the thread's data stack) and a function; the innermost line both
prints traceback's view of the stack and sleeps, so the line a reader sees
waiting is the line printed. Prints one JSON line: [[name, file, line], ...],
outermost first, names qualified as a reader gives them.
"""

import json
import os
import sys
import time
import traceback


def wait_here() -> None:
    print(json.dumps([[f.name, os.path.basename(f.filename), f.lineno] for f in traceback.extract_stack()]), flush=True); time.sleep(120)  # noqa: E702


def producer():
    wait_here()
    yield 1


class Runner:
    def run(self) -> None:
        for _ in producer():
            pass


if __name__ == "__main__":
    sys.exit(Runner().run())
