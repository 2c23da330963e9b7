"""A Python thread that waits in socket recv: known off-CPU time, known Python line.

    python_recv_wait.py

Thread "waiter" loops in wait_for_data(), blocked in recv() on a socket pair
almost all the time (about 1 s off CPU per second); the main thread sends it
a byte every 20 ms, so that the blocks that end in a 1 s interval add up to
it within 2 %. Prints "ready" once both run, and exits when its stdin closes
or it is killed.
"""

import socket
import sys
import threading
import time


def wait_for_data(sock: socket.socket) -> None:
    while True:
        if not sock.recv(16):
            return


def main() -> None:
    theirs, ours = socket.socketpair()
    threading.Thread(target=wait_for_data, args=(theirs,), name="waiter", daemon=True).start()
    threading.Thread(target=lambda: (sys.stdin.read(), ours.close()), name="stdin", daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(0.02)
        try:
            ours.send(b"x")
        except OSError:
            return


if __name__ == "__main__":
    main()
