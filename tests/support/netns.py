"""Network namespaces with a veth pair for the real network tests, removed even when a test fails.

Everything these make is named after the test process's pid, so two runs
cannot collide, and lives only in the test's own namespaces and on its
own veth pair: traffic goes to those addresses only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import cannot_run

# On the wire each packet the interface counts carries, besides payload,
# an Ethernet header (14), IPv4 (20) and TCP with the timestamp option (32).
# The veth passes GSO packets of up to 64 KiB whole, so the count of packets
# times this is the header bytes, exact for all but the SYN's longer options.
HEADER_BYTES = 14 + 20 + 32

PEER = Path(__file__).parent / "workloads" / "tcp_peer.py"


def require_root_and(*tools: str) -> None:
    """Skip unless root with each of `tools` on PATH (scripts/setup installs them); fail instead in CI."""
    if os.geteuid() != 0:
        cannot_run("needs root: makes network namespaces, veth pairs and nftables rules")
    packages = {"ip": "iproute2", "nft": "nftables", "sar": "sysstat", "ss": "iproute2"}
    for tool in tools:
        if shutil.which(tool) is None:
            cannot_run(f"{tool} is not installed (apt-get install {packages.get(tool, tool)})")


def run(*args: str, input_text: str | None = None, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, input=input_text, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def kill_all(*procs: subprocess.Popen[str] | None) -> None:
    """End the test's own helpers that are still running (a failed test's)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Namespace:
    name: str
    # a process living in the namespace: /proc/<pid>/net is the namespace's
    anchor_pid: int

    @property
    def proc(self) -> str:
        return f"/proc/{self.anchor_pid}"

    def exec(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return run("ip", "netns", "exec", self.name, *args, input_text=input_text, check=check)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def peer(self, *args: str) -> subprocess.Popen[str]:
        """tcp_peer.py run inside the namespace."""
        return self.popen(sys.executable, str(PEER), *args)

    def drop_share(self, table: str, port: int, percent: int) -> None:
        """nftables table `table`: drop `percent` % of the TCP packets reaching `port` in this namespace, at random."""
        self.exec("nft", "-f", "-", input_text=(
            f"table inet {table} {{\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    tcp dport {port} numgen random mod 100 < {percent} counter drop\n"
            "  }\n"
            "}\n"
        ))

    def remove_table(self, table: str) -> None:
        """Delete nftables table `table`; harmless when it was never added."""
        self.exec("nft", "delete", "table", "inet", table, check=False)


@contextmanager
def namespace(name: str) -> Iterator[Namespace]:
    """A new network namespace with lo up and IPv6 off (no router solicitations in the counts)."""
    run("ip", "netns", "add", name)
    anchor: subprocess.Popen[bytes] | None = None
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1")
        # `ip netns exec` execs the command in place, so this pid is sleep's
        anchor = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "600"])
        yield Namespace(name, anchor.pid)
    finally:
        if anchor is not None:
            anchor.kill()
            anchor.wait()
        # Deleting the namespace deletes the veth end in it, and with it the peer.
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@dataclass(frozen=True)
class VethToHost:
    ns: Namespace
    host_if: str
    ns_if: str
    host_addr: str
    ns_addr: str


@contextmanager
def veth_to_host(tag: str) -> Iterator[VethToHost]:
    """A namespace joined to this one by a veth pair with a /30 of 10.203.0.0/16 on it."""
    pid = os.getpid()
    host_if, ns_if = f"o{tag}{pid}h", f"o{tag}{pid}n"
    third = pid % 256
    host_addr, ns_addr = f"10.203.{third}.1", f"10.203.{third}.2"
    with ExitStack() as stack:
        ns = stack.enter_context(namespace(f"orac-{tag}-{pid}"))
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns.name)
        stack.callback(subprocess.run, ["ip", "link", "del", host_if], capture_output=True, check=False)
        Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1\n")
        run("ip", "addr", "add", f"{host_addr}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns.name, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        run("ip", "-n", ns.name, "link", "set", ns_if, "up")
        yield VethToHost(ns, host_if, ns_if, host_addr, ns_addr)


@dataclass(frozen=True)
class NamespacePair:
    """Two namespaces joined by a veth pair: a has 10.203.255.1, b 10.203.255.2."""

    a: Namespace
    b: Namespace
    a_if: str
    b_if: str
    a_addr: str = "10.203.255.1"
    b_addr: str = "10.203.255.2"


@contextmanager
def namespace_pair(tag: str) -> Iterator[NamespacePair]:
    """The addresses live only inside the two namespaces, so no run can clash with another's."""
    pid = os.getpid()
    with ExitStack() as stack:
        a = stack.enter_context(namespace(f"orac-{tag}a-{pid}"))
        b = stack.enter_context(namespace(f"orac-{tag}b-{pid}"))
        pair = NamespacePair(a, b, f"o{tag}{pid}a", f"o{tag}{pid}b")
        run("ip", "link", "add", pair.a_if, "netns", a.name, "type", "veth", "peer", "name", pair.b_if, "netns", b.name)
        for ns, ifname, addr in ((a, pair.a_if, pair.a_addr), (b, pair.b_if, pair.b_addr)):
            run("ip", "-n", ns.name, "addr", "add", f"{addr}/30", "dev", ifname)
            run("ip", "-n", ns.name, "link", "set", ifname, "up")
        yield pair


def wait_ready(listener: subprocess.Popen[str]) -> int:
    """The port a tcp_peer.py listener printed, once it listens."""
    assert listener.stdout is not None
    line = listener.stdout.readline()
    if not line.startswith("ready "):
        listener.kill()
        _, err = listener.communicate()
        raise AssertionError(f"listener did not start: {line!r} {err}")
    return int(line.split()[1])
