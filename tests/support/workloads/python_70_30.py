"""Two hot Python functions by design: hot_f does 7 units of work for each 3 of hot_g's.

The main thread is renamed, so a reader of threading's names can be checked.
Prints "ready" once running.
"""

import sys
import threading


def unit() -> int:
    s = 0
    for i in range(20000):
        s += i * i
    return s


def hot_f() -> None:
    for _ in range(7):
        unit()


def hot_g() -> None:
    for _ in range(3):
        unit()


def main() -> None:
    threading.current_thread().name = "crunch-main"
    print("ready", flush=True)
    while True:
        hot_f()
        hot_g()


if __name__ == "__main__":
    sys.exit(main())
