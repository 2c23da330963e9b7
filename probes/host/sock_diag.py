"""TCP sockets per state from the kernel's sock_diag netlink interface, as `ss` reads them.

One dump request per address family (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY
with an inet_diag_req_v2 asking for every state and no extensions): the
kernel answers with one inet_diag_msg per socket, whose second byte is its
state (include/net/tcp_states.h, the numbers /proc/net/tcp's `st` column
shows). Both walk every bucket of the TCP hash tables, which are sized by
memory, not by sockets; the netlink dump does it once per family where the
/proc file's seq_file walks again at each read. Measured on the 2-CPU VM
(262,144 established buckets, one socket): 0.85 ms a family against 4.5 ms
for /proc/net/tcp or tcp6.

The answer is the network namespace of the calling process: the probe uses
it only for its own (the default proc root).
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_ALL_STATES = (1 << 13) - 2  # bit i: state i, TCP_ESTABLISHED (1) to TCP_NEW_SYN_RECV (12)
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then a zeroed inet_diag_sockid (48 bytes)
_REQUEST = struct.Struct("=BBBBI48x")
_ERRNO = struct.Struct("=i")
_RECV_BYTES = 1 << 16
# an inet_diag_msg's state: right after its family, behind the netlink header
_STATE_AT = _NLMSGHDR.size + 1


def tcp_state_counts() -> dict[int, int]:
    """Kernel TCP state number -> sockets in it, IPv4 and IPv6, in this process's network namespace.

    Raises OSError where the kernel has no sock_diag for TCP (a kernel
    without CONFIG_INET_TCP_DIAG, or a seccomp filter that refuses netlink).
    """
    counts: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as sock:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES)
            header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
            sock.sendto(header + request, (0, 0))
            _count_answers(sock, seq, counts)
    return counts


def _count_answers(sock: socket.socket, seq: int, counts: dict[int, int]) -> None:
    while True:
        data = sock.recv(_RECV_BYTES)
        at = 0
        while at + _NLMSGHDR.size <= len(data):
            length, kind, _, answer_seq, _ = _NLMSGHDR.unpack_from(data, at)
            if length < _NLMSGHDR.size:
                raise OSError(f"sock_diag: a message of {length} bytes")
            if answer_seq == seq:
                if kind == _NLMSG_DONE:
                    return
                if kind == _NLMSG_ERROR:
                    (error,) = _ERRNO.unpack_from(data, at + _NLMSGHDR.size)
                    raise OSError(-error, f"sock_diag: {os.strerror(-error)}")
                if kind == SOCK_DIAG_BY_FAMILY and length > _STATE_AT:
                    state = data[at + _STATE_AT]
                    counts[state] = counts.get(state, 0) + 1
            at += (length + 3) & ~3
