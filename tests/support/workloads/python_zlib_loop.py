"""A Python function whose time goes to a C extension's hot loop: zlib.compress.

    python_zlib_loop.py

compress_forever() calls zlib.compress on 1 MiB at level 9 in a loop, so
nearly all the process's CPU time is zlib's own code (libz), called from
one Python function. Prints "ready" once it runs; runs until killed.
"""

import zlib

DATA = bytes(range(256)) * 4096


def compress_forever() -> None:
    while True:
        zlib.compress(DATA, 9)


if __name__ == "__main__":
    print("ready", flush=True)
    compress_forever()
