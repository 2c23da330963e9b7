"""The network, TCP and CPU-quota panes on the main screen, fed hand-made frames with known rates.

Update the snapshots with `--snapshot-update` after an intended change.
"""

from __future__ import annotations

import dataclasses

from support.harness import make_app, press_after_drawn, until_drawn
from support.synthetic_net import net_frames

from tui.screenshot import capture


async def screen_text(size: tuple[int, int], *keys: str) -> str:
    frames = net_frames()
    app = make_app(frames)
    async with app.run_test(size=size) as pilot:
        await until_drawn(pilot, app, frames)
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        return capture(app)[1]


def line_with(text: str, needle: str) -> str:
    # below the header and the verdict strip, which name interfaces and cgroups too
    return next(line for line in text.splitlines()[2:] if needle in line)


async def test_interfaces_with_traffic_their_rates_and_tcp() -> None:
    text = await screen_text((160, 48))
    # 110 MiB/s in, 12 out, 1 KiB packets, 3 drops/s; sar's %ifutil of 10 Gb/s: 110 MiB * 8 / 10**10
    assert line_with(text, "eth0").split()[2:9] == ["110.00", "12.00", "112.6k", "12.3k", "0", "3", "9.2%"]
    assert "veth3f2a9c1" in text
    # idle lo and down docker0 step aside until asked for
    assert "docker0" not in text and "2 idle or down hidden" in text
    # 3000 retransmits of 97000 + 3000 segments sent
    tcp = line_with(text, "TCP active/s")
    assert "active/s 25 passive/s 140" in tcp and "retrans/s 3.0k (3.0%)" in tcp and "drop/s 4" in tcp
    sockets = line_with(text, "sockets")
    # ss -s: total = alloc + tw, closed = alloc - (inuse + inuse6 - tw)
    assert "sockets 298 (estab 212, closed 60, orphaned 3, timewait 57)" in sockets
    assert "ESTAB 212 LISTEN 14 TIME-WAIT 57 CLOSE-WAIT 2 SYN-SENT 1" in sockets


async def test_a_shows_idle_and_down_interfaces() -> None:
    text = await screen_text((160, 48), "a")
    assert "docker0" in text and line_with(text, " lo ").split()[2:4] == ["0.00", "0.00"]
    assert line_with(text, "docker0").split()[8] == "-"  # no speed known: no utilisation


async def test_quota_pane_and_throttled_cgroup_in_the_process_table() -> None:
    # below 56 rows the quota pane is one line
    text = await screen_text((200, 60))
    assert "CPU quotas (cgroup v1), 1 throttled" in text
    nginx = line_with(text, "/system.slice/docker-")
    assert nginx.split()[1:6] == ["0.20", "0.20", "100%", "80%", "90%"]
    assert line_with(text, "postgresql.service ").split()[1:6] == ["2.00", "0.25", "12%", "0%", "0%"]
    # nginx's row in the process table: its cgroup held at the quota
    assert "@quota docker-3f2" in line_with(text, "nginx: worker")
    assert "@quota" not in line_with(text, "postgres: checkpointer")


async def test_short_terminal_keeps_one_network_line() -> None:
    text = await screen_text((80, 24))
    assert "net eth0 rx 110.00 tx 12.00 MiB/s  tcp retrans/s 3.0k (3.0%) opens/s 165" in text
    assert "quotas 1 of 2 throttled: docker-3f2a9c1b8e7d 80% at its quota of 0.20 CPU" in text
    assert "IFACE" not in text and "THROTTLED" not in text


async def test_kernel_events_name_the_oom_kill() -> None:
    text = await screen_text((200, 60))
    assert "Kernel events, 1 OOM kill" in text
    assert "OOM kill nginx pid 1200 in /system.slice/nginx: Memory cgroup out of memory" in text
    assert "earlier e1000e: eth0 NIC Link is Up" in text
    short = await screen_text((80, 24))
    assert "OOM kill nginx pid 1200" in short and "e1000e" not in short


def test_main_screen_with_network(snap_compare) -> None:
    assert snap_compare(make_app(net_frames()), terminal_size=(160, 48), run_before=press_after_drawn())


def test_main_screen_with_network_at_80x24(snap_compare) -> None:
    assert snap_compare(make_app(net_frames()), terminal_size=(80, 24), run_before=press_after_drawn())


async def test_ebpf_lines_name_the_retransmitting_connections_and_the_connecting_processes() -> None:
    text = await screen_text((160, 48))
    # the second an accepted connection: its owner is not known, so not named
    assert ("retrans skb/s 10.1.0.5:51234 > 93.184.216.34:443 ESTAB 12 curl 2301"
            "   [2001:db8::5]:8080 > [2001:db8::77]:40112 ESTAB 3.0 -") in text
    connects = line_with(text, "connects/s")
    assert "connects/s 20: curl 2301 20/s p50 16-33us p99 2.1-4.2ms failed 1.0/s" in connects
    assert "accepted/s 140  closed from ESTAB/s 2.0" in connects
    short = await screen_text((80, 24))
    assert "retrans skb/s" not in short and "connects/s" not in short


async def test_without_ebpf_the_pane_says_what_the_tcp_events_need() -> None:
    frames = [
        dataclasses.replace(f, samples={k: v for k, v in f.samples.items() if k != "tcpevents"},
                            unavailable={**f.unavailable, "tcpevents": ("eBPF needs root, or CAP_BPF and CAP_PERFMON",
                                                                        "run `sudo orac`")})
        for f in net_frames()
    ]
    app = make_app(frames)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app, frames)
        text = capture(app)[1]
    assert ("retransmits by connection, connect latency: eBPF needs root, or CAP_BPF and CAP_PERFMON: run `sudo orac`"
            in text)
    assert "TCP active/s" in text


async def test_no_retransmits_is_one_line_and_losses_are_said() -> None:
    frames = []
    for f in net_frames():
        events = f.samples["tcpevents"]
        quiet = dataclasses.replace(events, retransmits=(), lost={**events.lost, "connection_map_full": 2})
        frames.append(dataclasses.replace(f, samples={**f.samples, "tcpevents": quiet}))
    app = make_app(frames)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app, frames)
        text = capture(app)[1]
    line = line_with(text, "connects/s")
    assert "retrans skb/s 0  connects/s 20: curl 2301" in line and line.rstrip(" │").endswith("lost 2 (maps full)")
