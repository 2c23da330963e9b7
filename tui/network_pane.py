"""The network pane: a line per interface as `sar -n DEV,EDEV` reads it, then TCP as `sar -n TCP,ETCP` and `ss -s`.

With eBPF, the connections retransmitting most (tcpretrans) and the
processes connecting most with their connect latency (tcpconnlat) follow.
Rates are the net, tcp and tcpevents probes' views (probes.sources.network,
tcp and tcp_events name each figure's source and formula). MiB here is sar's MB: 1048576
bytes, so the numbers read as `sar -n DEV`'s rxkB/s / 1024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding

from probes.contract import ProbeSpec
from probes.sources.network import NETWORK, InterfaceView, NetworkView
from probes.sources.tcp import TCP, TcpView
from probes.sources.tcp_events import TCP_EVENTS, ConnectionRetransmitRate, ProcessConnectRate, TcpEventsView

from .format import MISSING, human_rate, latency_bucket, percent
from .text_lines import TextPane

WAITING = "waiting for the second sample..."
NAME_WIDTH = 12
# (label, width) of the numbers after the name
HEADER = (("RX MiB/s", 9), ("TX MiB/s", 9), ("RX pk/s", 8), ("TX pk/s", 8), ("ERR/s", 6), ("DROP/s", 7), ("UTIL", 6))
# States in the order `ss -s` and a person read them; any other the kernel
# reports follows.
STATE_ORDER = ("ESTAB", "LISTEN", "TIME-WAIT", "CLOSE-WAIT", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2")
# How many connections and processes the eBPF lines name: what 160 columns hold.
TOP_CONNECTIONS = 3
TOP_CONNECTORS = 3


def mib(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def interface_cells(i: InterfaceView) -> tuple[str, ...]:
    util = MISSING if i.ifutil_percent is None else f"{i.ifutil_percent:.1f}%"
    return (
        mib(i.rx_mib_per_s), mib(i.tx_mib_per_s), human_rate(i.rx_packets_per_s), human_rate(i.tx_packets_per_s),
        human_rate(_sum(i.rx_errors_per_s, i.tx_errors_per_s)), human_rate(_sum(i.rx_drops_per_s, i.tx_drops_per_s)),
        util,
    )


def shown_interfaces(view: NetworkView, show_all: bool) -> list[InterfaceView]:
    """Interfaces that passed a packet or have no rate yet (a new one); all of them when asked."""
    return [i for i in view.interfaces if show_all or not (i.idle or i.down)]


def tcp_rates(tcp: TcpView) -> str:
    """sar -n TCP,ETCP's figures, with its names where a person would check them."""
    return (
        f"TCP active/s {human_rate(tcp.active_opens_per_s)} passive/s {human_rate(tcp.passive_opens_per_s)}"
        f"  retrans/s {human_rate(tcp.retrans_segs_per_s)}{_share(tcp.retrans_percent)}"
        f"  estres/s {human_rate(tcp.estab_resets_per_s)} orsts/s {human_rate(tcp.out_rsts_per_s)}"
        f"  atmptf/s {human_rate(tcp.attempt_fails_per_s)}"
        f"  listen ovf/s {human_rate(tcp.listen_overflows_per_s)} drop/s {human_rate(tcp.listen_drops_per_s)}"
    )


def _share(retrans_percent: float | None) -> str:
    # None: nothing was sent, so there is no share to give
    return "" if retrans_percent is None else f" ({percent(retrans_percent)}%)"


def _count(value: int | None) -> str:
    return MISSING if value is None else str(value)


def tcp_sockets(tcp: TcpView) -> str:
    """ss -s's TCP line, then the sockets in each state (ss -tan's)."""
    s = tcp.sockets
    text = (
        f"sockets {_count(s.total)} (estab {_count(s.estab)}, closed {_count(s.closed)},"
        f" orphaned {_count(s.orphaned)}, timewait {_count(s.timewait)})"
    )
    if tcp.states is not None:
        names = [n for n in STATE_ORDER if tcp.states.get(n)] + sorted(
            n for n, c in tcp.states.items() if c and n not in STATE_ORDER)
        # read every few seconds (TcpProbe): a count a tick old or more says its age
        age = f" ({tcp.states_age_s:.0f}s ago)" if tcp.states_age_s >= 1.0 else ""
        text += "  " + " ".join(f"{n} {tcp.states[n]}" for n in names) + age
    return text


def tcp_summary(tcp: TcpView) -> str:
    return (
        f"tcp retrans/s {human_rate(tcp.retrans_segs_per_s)}{_share(tcp.retrans_percent)}"
        f" opens/s {human_rate(_sum(tcp.active_opens_per_s, tcp.passive_opens_per_s))}"
    )


def _per_s(n: float) -> str:
    # these events are rare: one every two seconds is 0.5/s, not "0"
    return f"{n:.1f}" if n < 9.95 else human_rate(n)


def _owner(pid: int | None, comm: str | None) -> str:
    # only a connect() the probe saw names the owner; a guess would mislead
    return MISSING if pid is None else f"{comm} {pid}"


def retransmit_line(connections: Sequence[ConnectionRetransmitRate]) -> str:
    """The connections retransmitting most, as tcpretrans prints them, with their count over the interval per second.

    Counted in skbs, as the tracepoint fires: sar's retrans/s above counts
    segments, more where a multi-segment skb is sent again whole.
    """
    return "retrans skb/s " + "   ".join(
        f"{c.endpoints()} {c.state} {_per_s(c.retransmits_per_s)} {_owner(c.pid, c.comm)}"
        for c in connections[:TOP_CONNECTIONS]
    )


def _connector(p: ProcessConnectRate) -> str:
    failed = f" failed {_per_s(p.connect_failed_per_s)}/s" if p.connect_failed_per_s else ""
    return (
        f"{_owner(p.pid, p.comm)} {_per_s(p.connects_per_s)}/s"
        f" p50 {latency_bucket(p.p50_latency_bucket)} p99 {latency_bucket(p.p99_latency_bucket)}{failed}"
    )


def connects_line(events: TcpEventsView) -> str:
    """connects/s by process with tcpconnlat's latency; accepted and closes from ESTABLISHED of the whole box."""
    connectors = [p for p in events.processes if p.connects_per_s][:TOP_CONNECTORS]
    accepted = sum(p.accepted_per_s for p in events.processes)
    closed = sum(p.closed_from_established_per_s for p in events.processes)
    text = f"connects/s {_per_s(events.connects_per_s)}"
    if connectors:
        text += ": " + ", ".join(_connector(p) for p in connectors)
    return text + f"  accepted/s {_per_s(accepted)}  closed from ESTAB/s {_per_s(closed)}"


class NetworkPane(TextPane):
    """Interfaces with traffic (all with `a`), TCP rates and socket states.

    On a short terminal it is one line: the busiest interface and TCP's
    retransmits, so the process table keeps its rows.
    """

    PROBE: ClassVar[ProbeSpec[Any, Any]] = NETWORK
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (TCP, TCP_EVENTS)
    # The app's: the pane never has focus, the process table keeps it.
    KEYS: ClassVar[list[Binding]] = [
        Binding("a", "all_interfaces", "All interfaces", show=False,
                tooltip="Network pane: idle and down interfaces too; again hides them"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"network-pane--label", "network-pane--warning", "network-pane--muted"}

    DEFAULT_CSS = """
    NetworkPane {
        height: auto;
        max-height: 14;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    NetworkPane.-absent { display: none; }
    NetworkPane > .network-pane--label { color: $primary; text-style: bold; }
    NetworkPane > .network-pane--warning { color: $warning; text-style: bold; }
    NetworkPane > .network-pane--muted { color: $foreground-muted; }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # idle and down interfaces too (a)
        self.show_all = False

    def on_mount(self) -> None:
        self.border_title = "Network"
        self.border_subtitle = "a: all interfaces"

    def show_view(self, view: NetworkView) -> None:
        self.remove_class("-absent")
        super().show_view(view)
        hidden = len(view.interfaces) - len(shown_interfaces(view, self.show_all))
        self.border_title = f"Network, {hidden} idle or down hidden" if hidden else "Network"
        self.border_subtitle = "a: idle too" if hidden else ("a: hide idle" if self.show_all else "")

    def show_absent(self, reason: str) -> None:
        # a recording made without the probe: nothing to say, no room taken
        self.add_class("-absent")

    def toggle_all(self) -> None:
        self.show_all = not self.show_all
        if isinstance(self.view, NetworkView):
            self.show_view(self.view)
        self.refresh(layout=True)

    def render(self) -> Text:
        s = {name: self.component_style(f"network-pane--{name}") for name in ("label", "warning", "muted")}
        if self.unavailable:
            return Text(self.unavailable_text())
        view: NetworkView | None = self.view
        if view is None:
            return Text(WAITING)
        if self.screen.has_class("-compact"):
            return self._summary(view, s)
        lines = [self._header(s)]
        for interface in shown_interfaces(view, self.show_all):
            lines.append(self._row(interface, s))
        if len(lines) == 1:
            lines.append(Text(f"no traffic on any of {len(view.interfaces)} interfaces (a shows them)", s["muted"]))
        tcp = self.joined.get(TCP)
        if tcp is not None:
            rates = Text(tcp_rates(tcp))
            if tcp.retrans_segs_per_s:
                rates.stylize(s["warning"], 0, len("TCP"))
            else:
                rates.stylize(s["label"], 0, len("TCP"))
            lines.append(rates)
            lines.append(Text(tcp_sockets(tcp)))
        elif TCP.name in self.joined_unavailable:
            lines.append(Text(f"tcp: {self.joined_unavailable[TCP.name]}", s["muted"]))
        lines.extend(self._events(s))
        return Text("\n").join(lines)

    def _events(self, s: dict[str, Style]) -> list[Text]:
        events = self.joined.get(TCP_EVENTS)
        if events is None:
            if TCP_EVENTS.name in self.joined_unavailable:
                why = self.joined_unavailable[TCP_EVENTS.name]
                return [Text(f"retransmits by connection, connect latency: {why}", s["muted"])]
            return []
        # Two lines at most: the screen's other panes need the rows.
        lines = []
        if events.connections:
            line = Text(retransmit_line(events.connections))
            line.stylize(s["warning"], 0, len("retrans skb/s"))
            lines.append(line)
        line = Text()
        if not events.connections:
            line.append("retrans skb/s 0  ", s["label"])
        line.append("connects/s", s["label"])
        line.append(connects_line(events).removeprefix("connects/s"))
        lost = sum(events.lost.values())
        if lost:
            line.append(f"  lost {lost} (maps full)", s["warning"])
        lines.append(line)
        return lines

    @staticmethod
    def _header(s: dict[str, Style]) -> Text:
        text = Text("IFACE".ljust(NAME_WIDTH), s["label"])
        for label, width in HEADER:
            text.append(" " + label.rjust(width), s["label"])
        return text

    @staticmethod
    def _row(interface: InterfaceView, s: dict[str, Style]) -> Text:
        name = interface.name if len(interface.name) <= NAME_WIDTH else interface.name[: NAME_WIDTH - 1] + "…"
        text = Text(name.ljust(NAME_WIDTH), s["muted"] if interface.down else Style())
        for cell, (_, width) in zip(interface_cells(interface), HEADER):
            text.append(" " + cell.rjust(width))
        errors = _sum(interface.rx_errors_per_s, interface.tx_errors_per_s)
        drops = _sum(interface.rx_drops_per_s, interface.tx_drops_per_s)
        if errors or drops:
            text.stylize(s["warning"], NAME_WIDTH + 1 + sum(w + 1 for _, w in HEADER[:4]))
        return text

    def _summary(self, view: NetworkView, s: dict[str, Style]) -> Text:
        rated = [i for i in view.interfaces if i.rx_bytes_per_s is not None and i.tx_bytes_per_s is not None]
        text = Text("net ", s["label"])
        if rated:
            busiest = max(rated, key=lambda i: (i.rx_bytes_per_s or 0.0) + (i.tx_bytes_per_s or 0.0))
            text.append(f"{busiest.name} rx {mib(busiest.rx_mib_per_s)} tx {mib(busiest.tx_mib_per_s)} MiB/s")
        else:
            text.append(MISSING)
        tcp = self.joined.get(TCP)
        if tcp is not None:
            text.append("  ")
            text.append(tcp_summary(tcp), s["warning"] if tcp.retrans_segs_per_s else Style())
        return text
