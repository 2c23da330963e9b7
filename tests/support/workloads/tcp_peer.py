"""One end of a test TCP transfer, run inside or outside a network namespace.

    tcp_peer.py listen ADDR          accept one connection (ADDR IPv4 or IPv6), read to EOF,
                                     print "ready PORT" first, the byte count last
    tcp_peer.py send ADDR PORT N [BYTES_PER_S]
                                     send exactly N bytes (paced when a rate
                                     is given), wait for the peer to close,
                                     print "sent N retrans R" where R is the
                                     socket's tcpi_total_retrans

Standard library only, so `ip netns exec` can run it with any python.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

CHUNK_BYTES = 64 * 1024
# struct tcp_info (include/uapi/linux/tcp.h): 8 single-byte fields, then
# u32s; tcpi_total_retrans is the 24th u32, at byte 100.
TCPI_TOTAL_RETRANS_OFFSET = 100


def listen(addr: str) -> None:
    server = socket.create_server((addr, 0), family=socket.AF_INET6 if ":" in addr else socket.AF_INET, backlog=1)
    print(f"ready {server.getsockname()[1]}", flush=True)
    conn, _ = server.accept()
    total = 0
    while data := conn.recv(1 << 20):
        total += len(data)
    conn.close()
    print(total, flush=True)


def send(addr: str, port: int, nbytes: int, rate: float | None) -> None:
    conn = socket.create_connection((addr, port))
    chunk = b"\0" * CHUNK_BYTES
    start = time.monotonic()
    sent = 0
    while sent < nbytes:
        n = min(CHUNK_BYTES, nbytes - sent)
        conn.sendall(chunk[:n])
        sent += n
        if rate:
            # deadlines from the start, so a late wake-up is caught up
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    conn.shutdown(socket.SHUT_WR)
    # EOF from the peer: everything sent was received and acknowledged
    while conn.recv(1 << 16):
        pass
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    (retrans,) = struct.unpack_from("I", info, TCPI_TOTAL_RETRANS_OFFSET)
    conn.close()
    print(f"sent {sent} retrans {retrans}", flush=True)


def main() -> None:
    mode, addr, *rest = sys.argv[1:]
    if mode == "listen":
        listen(addr)
    else:
        send(addr, int(rest[0]), int(rest[1]), float(rest[2]) if len(rest) > 2 else None)


if __name__ == "__main__":
    main()
