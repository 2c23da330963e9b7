"""A test workload of known block I/O: O_DIRECT reads and writes, one command a line.

O_DIRECT skips the page cache, so every byte asked for becomes a block
request to the device at once, in the helper's own name: what the disks
probe and /proc/PID/io must then show. O_DIRECT needs a buffer aligned to
the device's logical block; an anonymous mmap is page-aligned.

Reads commands from stdin, answers each on stdout:
    write PATH MIB BLOCK_KIB        write MIB MiB from offset 0 -> "done BYTES"
    read PATH MIB BLOCK_KIB         read MIB MiB from offset 0 -> "done BYTES"
    mixed PATH MIB BLOCK_KIB SECONDS
        alternate a write and a read of one block, moving through the first
        MIB MiB of PATH, for SECONDS: "started" at once, then
        "done WRITTEN READ"
    timed read|write PATH COUNT BLOCK_KIB
        COUNT requests of one block from offset 0, one at a time, each timed
        around its syscall -> "done BYTES NS NS ..." (each request's time)
It says "ready PID" first and exits at the end of its input.
"""

from __future__ import annotations

import mmap
import os
import sys
import time

MIB = 1 << 20


def open_direct(path: str, write: bool) -> int:
    flags = os.O_DIRECT | os.O_CLOEXEC | (os.O_WRONLY | os.O_CREAT if write else os.O_RDONLY)
    return os.open(path, flags, 0o644)


def write(path: str, mib: int, block_kib: int) -> int:
    block = block_kib * 1024
    buf = mmap.mmap(-1, block)
    buf.write(b"\xa5" * block)
    fd = open_direct(path, True)
    try:
        done = 0
        while done < mib * MIB:
            done += os.pwrite(fd, buf, done)
        return done
    finally:
        os.close(fd)


def read(path: str, mib: int, block_kib: int) -> int:
    block = block_kib * 1024
    buf = mmap.mmap(-1, block)
    fd = open_direct(path, False)
    try:
        done = 0
        while done < mib * MIB:
            got = os.preadv(fd, [buf], done)
            if got == 0:
                break
            done += got
        return done
    finally:
        os.close(fd)


def mixed(path: str, mib: int, block_kib: int, seconds: float) -> tuple[int, int]:
    block = block_kib * 1024
    span = mib * MIB
    out = mmap.mmap(-1, block)
    out.write(b"\x5a" * block)
    into = mmap.mmap(-1, block)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
    written = read_bytes = offset = 0
    try:
        print("started", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            written += os.pwrite(fd, out, offset)
            read_bytes += os.preadv(fd, [into], (offset + span // 2) % span)
            offset = (offset + block) % span
        return written, read_bytes
    finally:
        os.close(fd)


def timed(op: str, path: str, count: int, block_kib: int) -> tuple[int, list[int]]:
    block = block_kib * 1024
    buf = mmap.mmap(-1, block)
    buf.write(b"\x3c" * block)
    fd = open_direct(path, op == "write")
    times: list[int] = []
    done = 0
    try:
        for i in range(count):
            start = time.perf_counter_ns()
            done += os.pwrite(fd, buf, i * block) if op == "write" else os.preadv(fd, [buf], i * block)
            times.append(time.perf_counter_ns() - start)
        return done, times
    finally:
        os.close(fd)


def main() -> None:
    print("ready", os.getpid(), flush=True)
    for line in sys.stdin:
        cmd, path, *args = line.split()
        if cmd == "write":
            print("done", write(path, int(args[0]), int(args[1])), flush=True)
        elif cmd == "read":
            print("done", read(path, int(args[0]), int(args[1])), flush=True)
        elif cmd == "mixed":
            written, got = mixed(path, int(args[0]), int(args[1]), float(args[2]))
            print("done", written, got, flush=True)
        elif cmd == "timed":
            op, path = path, args[0]
            done, times = timed(op, path, int(args[1]), int(args[2]))
            print("done", done, *times, flush=True)
        else:
            print("unknown", cmd, flush=True)


if __name__ == "__main__":
    main()
