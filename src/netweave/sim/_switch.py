"""The packet switch: how a packet gets from one simulated host to another.

Rules of this file:

* A packet sent by a host goes through the global rule chain, then its link's
  own chain, then the link's settings (:meth:`Link.plan`), and arrives by a
  loop timer at the destination host, which hands it to the socket that owns
  it: a TCP connection, a listener (for a SYN), a UDP socket. A segment nobody
  owns is answered with RST, a datagram to a closed port with ICMP port
  unreachable.
* Partitions are a flag per link direction, checked when a packet is sent. A
  packet remembers its destination's epoch and is lost if that host crashed
  while it was in flight.
* Callbacks run in a context of the switch's own (``current_host`` unset), so
  ``loop.cancel_host`` never cancels them.
* Every step is traced through ``observer`` when one is set; without one the
  cost is an attribute check.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ._events import (
    PacketCorrupted,
    PacketDelivered,
    PacketDropped,
    PacketDuplicated,
    PacketEvent,
    PacketReordered,
    PacketSent,
    StreamConnect,
)
from ._faults import RuleChain
from ._host import WILDCARD, Host, is_loopback
from ._link import CORRUPTED, DROP_QUEUE, DUPLICATED, REORDERED, Link, LinkConfig
from ._packet import (
    ACK,
    ICMP,
    IP_HEADER,
    PROTO_NAMES,
    SYN,
    TCP,
    TCP_HEADER,
    UDP,
    UDP_HEADER,
    Packet,
    flag_text,
)
from ._trace import TraceRecorder

if TYPE_CHECKING:
    from ..observe import Observer
    from ._datagram import SimDatagramTransport
    from ._loop import SimLoop
    from ._pcap import PcapWriter
    from ._seeds import SeedTree
    from ._server import SimListener

__all__ = ["PacketSwitch", "Tap"]

#: A packet tap (the pcap writer is one): called as ``tap(packet, time_ns, path_mtu)``
#: for each packet a host sends.
Tap = Callable[[Packet, int, int], None]


class PacketSwitch:
    """The hosts' address table, their links, and the path of every packet between them.

    :class:`~netweave.sim.Network` builds the world on top of it.
    """

    def __init__(
        self,
        *,
        loop: SimLoop,
        seeds: SeedTree,
        observer: Observer | None,
        default_link: LinkConfig,
    ) -> None:
        self.loop = loop
        self.seeds = seeds
        self._observer: Observer | None = None
        self._record: Callable[[type[PacketEvent], tuple[Any, ...]], None] | None = None
        self.observer = observer
        self._default_link = default_link
        #: Rules applied to every packet on every link, before the link's own.
        self.rules = RuleChain()
        self._hosts: dict[str, Host] = {}
        self._by_address: dict[str, Host] = {}
        self._taps: list[Tap] = []
        #: The context network callbacks run in (``current_host`` unset), so that
        #: ``loop.cancel_host`` never cancels them.
        self.context = contextvars.Context()

    @property
    def observer(self) -> Observer | None:
        """Who receives the trace events (``None``: nobody; tracing then costs nothing)."""
        return self._observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._observer = observer
        # A trace recorder alone takes packet events without their objects being built.
        self._record = observer.record if isinstance(observer, TraceRecorder) else None

    def _link(self, src: Host, dst: Host) -> Link:
        link = src.links.get(dst.name)
        if link is None:
            stream = self.seeds.stream(f"link:{src.name}->{dst.name}")
            link = Link(src.name, dst.name, self._default_link, stream, RuleChain())
            src.links[dst.name] = link
        return link

    # -- taps (pcap) ----------------------------------------------------------------------------

    def add_tap(self, tap: Tap) -> None:
        """Call ``tap(packet, time_ns, path_mtu)`` for every packet a host sends."""
        self._taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        """Stop calling ``tap`` (no error if it was not added)."""
        if tap in self._taps:
            self._taps.remove(tap)

    @contextmanager
    def capture(self, target: str | Path | BinaryIO) -> Iterator[PcapWriter]:
        """Write every packet sent inside the block to a pcap file (a path or a binary file)."""
        from ._pcap import PcapWriter

        writer = PcapWriter(target)
        self.add_tap(writer)
        try:
            yield writer
        finally:
            self.remove_tap(writer)
            writer.close()

    # -- the packet switch ----------------------------------------------------------------------

    def call_at_ns(
        self, when_ns: int, callback: Callable[..., object], *args: Any
    ) -> asyncio.TimerHandle:
        """Schedule a network callback (outside every host) at ``when_ns``."""
        return self.loop.call_at_ns(when_ns, callback, *args, context=self.context)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Schedule a network callback (outside every host) for this instant."""
        self.loop.call_soon(callback, *args, context=self.context)

    def route(self, src: Host, dst_ip: str) -> tuple[Host, Link] | None:
        """Where a packet from ``src`` to ``dst_ip`` goes: ``(destination host, link)``,
        or ``None`` when no host has that address. Found routes are remembered."""
        route = src.routes.get(dst_ip)
        if route is not None:
            return route
        if dst_ip == src.address or is_loopback(dst_ip):
            route = (src, src.loopback)
        else:
            dst = self._by_address.get(dst_ip)
            if dst is None:
                return None
            route = (dst, src.links.get(dst.name) or self._link(src, dst))
        src.routes[dst_ip] = route
        return route

    def send(self, packet: Packet, src: Host) -> None:
        """Put ``packet`` from ``src`` on the wire: rules, link faults, then a delivery timer."""
        now = self.loop._now  # the loop's clock (time_ns()), read directly: every packet
        ip_id = src.ip_id = (src.ip_id + 1) & 0xFFFF
        packet.ip_id = ip_id
        route = src.routes.get(packet.dst_ip) or self.route(src, packet.dst_ip)
        if route is None:
            self._unroutable(packet, now)
            return
        dst, link = route
        packet.dst_host = dst.name
        if self._taps:
            for tap in self._taps:
                tap(packet, now, link.mtu)
        if self._observer is not None:
            self._emit(PacketSent, packet, now, link.label)
        if link.blocked:
            link.stats.partitioned += 1
            self._dropped(packet, now, link.label, "partition")
            return
        clean = link.clean_ns
        if clean >= 0 and not self.rules.rules and not link.rules.rules:
            proto = packet.proto
            if proto == UDP:
                size = IP_HEADER + UDP_HEADER + len(packet.payload)
            elif proto == TCP:
                size = IP_HEADER + TCP_HEADER + len(packet.payload)
            else:
                size = packet.wire_size
            if size <= link.mtu:
                # What Link.plan decides for a clean link: in order, after the fixed delay.
                arrival = now + clean
                if arrival < link.last_arrival:  # noqa: PLR1730 (hot path: no call to max/min)
                    arrival = link.last_arrival
                link.last_arrival = arrival
                link.stats.sent += 1
                self.loop.call_at_ns(
                    arrival, self._deliver, packet, dst, dst.epoch, link, context=self.context
                )
                return
        self._send_faulty(packet, now, dst, link)

    def _unroutable(self, packet: Packet, now: int) -> None:
        if self._taps:
            for tap in self._taps:
                tap(packet, now, self._default_link.mtu)
        if self._observer is not None:
            self._emit(PacketSent, packet, now, "sim.network")
        self._dropped(packet, now, "sim.network", "no-route")

    def _send_faulty(self, packet: Packet, now: int, dst: Host, link: Link) -> None:
        """The rest of :meth:`send` for a link with faults or rules, or a packet over its MTU."""
        label = link.label
        extra = marks = 0
        rng = link.rng
        if self.rules.rules:
            extra, marks = self.rules.evaluate(packet, rng)
        if extra >= 0 and link.rules.rules:
            more, more_marks = link.rules.evaluate(packet, rng)
            extra = -1 if more < 0 else extra + more
            marks |= more_marks
        if extra < 0:
            link.stats.rule_dropped += 1
            self._dropped(packet, now, label, "rule")
            return
        size = packet.wire_size
        fragments = 1
        mtu = link.mtu
        if size > mtu:
            if packet.proto != UDP:
                self._dropped(packet, now, label, "mtu")
                return
            per = (mtu - IP_HEADER) // 8 * 8
            body = size - IP_HEADER
            fragments = -(-body // per)
            size = body + fragments * IP_HEADER
        arrival, flags, dup_arrival = link.plan(
            size, now, fragments=fragments, extra_ns=extra, force=marks
        )
        if arrival < 0:
            self._dropped(packet, now, label, "queue" if flags == DROP_QUEUE else "loss")
            return
        if flags:
            if flags & CORRUPTED:
                packet.damage(rng)
            if self._observer is not None:
                if flags & REORDERED:
                    self._emit(PacketReordered, packet, now, label)
                if flags & CORRUPTED:
                    self._emit(PacketCorrupted, packet, now, label)
                if flags & DUPLICATED:
                    self._emit(PacketDuplicated, packet, now, label)
        loop = self.loop
        context = self.context
        loop.call_at_ns(arrival, self._deliver, packet, dst, dst.epoch, link, context=context)
        if dup_arrival >= 0:
            twin = packet.copy()
            loop.call_at_ns(dup_arrival, self._deliver, twin, dst, dst.epoch, link, context=context)

    def _deliver(self, packet: Packet, dst: Host, epoch: int, link: Link) -> None:
        observer = self._observer
        if not dst.up or dst.epoch != epoch:
            if observer is not None:
                self._dropped(packet, self.loop._now, link.label, "host-down")
            return
        if packet.corrupted:
            if observer is not None:
                self._dropped(packet, self.loop._now, link.label, "checksum")
            return
        link.stats.delivered += 1
        if observer is not None:
            self._emit(PacketDelivered, packet, self.loop._now, link.label)
        proto = packet.proto
        if proto == TCP:
            conn = dst.tcp.get((packet.dst_port, packet.src_ip, packet.src_port))
            if conn is not None:
                conn.handle_packet(packet)
                return
            flags = packet.flags
            if flags & SYN and not flags & ACK:
                listener = dst.find_listener(packet.dst_ip, packet.dst_port)
                if listener is not None:
                    listener.accept_syn(packet)
                    return
            self.refuse(packet, dst)
        elif proto == UDP:
            socks = dst.udp.get(packet.dst_port)
            if socks:
                dst_ip = packet.dst_ip
                for sock in socks:
                    # sock.accepts(packet), inlined: this is every datagram's path.
                    bound = sock.bound_ip
                    if bound not in (WILDCARD, dst_ip):
                        continue
                    remote = sock.remote
                    if remote is None or (
                        remote[0] == packet.src_ip and remote[1] == packet.src_port
                    ):
                        sock.handle_datagram(packet)
                        return
            unreachable = Packet(ICMP, dst.name, packet.dst_ip, 0, packet.src_ip, 0, inner=packet)
            self.send(unreachable, dst)
        elif proto == ICMP and packet.inner is not None:
            inner = packet.inner
            for sock in dst.udp.get(inner.src_port, ()):
                sock.handle_unreachable(inner)

    def _dropped(self, packet: Packet, now: int, label: str, reason: str) -> None:
        if self._observer is not None:
            self._emit(PacketDropped, packet, now, label, reason)

    def _emit(
        self, kind: type[PacketEvent], packet: Packet, now: int, label: str, *extra: str
    ) -> None:
        """Report a packet event (an observer is set)."""
        tcp = packet.proto == TCP
        values: tuple[Any, ...] = (
            label,
            now,
            PROTO_NAMES.get(packet.proto) or str(packet.proto),
            packet.src_host,
            f"{packet.src_ip}:{packet.src_port}",
            packet.dst_host,
            f"{packet.dst_ip}:{packet.dst_port}",
            len(packet.payload),
            flag_text(packet.flags) if tcp else "",
            packet.seq if tcp else 0,
            *extra,
        )
        record = self._record
        if record is not None:
            record(kind, values)
        elif self._observer is not None:
            self._observer(kind(*values))

    # -- helpers for the transports ---------------------------------------------------------------

    def source_ip(self, host: Host, dst_ip: str) -> str:
        """The address ``host`` sends from to reach ``dst_ip``."""
        return "127.0.0.1" if is_loopback(dst_ip) else host.address

    def mss(self, host: Host, dst_ip: str) -> int:
        """The TCP maximum segment size between ``host`` and ``dst_ip`` (MTU of both ways - 40)."""
        if host.owns(dst_ip):
            mtu = host.loopback.mtu
        else:
            dst = self._by_address.get(dst_ip)
            if dst is None:
                mtu = self._default_link.mtu
            else:
                mtu = min(self._link(host, dst).mtu, self._link(dst, host).mtu)
        return mtu - 40

    def connect_event(
        self, host: Host, local: tuple[str, int], remote: tuple[str, int], error: OSError | None
    ) -> None:
        """Trace the end of a connection attempt."""
        if self.observer is None:
            return
        if error is None:
            outcome = "connected"
        elif isinstance(error, ConnectionRefusedError):
            outcome = "refused"
        else:
            outcome = "timeout"
        self.observer(
            StreamConnect(
                "sim.network",
                self.loop.time_ns(),
                host.name,
                f"{local[0]}:{local[1]}",
                f"{remote[0]}:{remote[1]}",
                outcome,
            )
        )

    def unbind_udp(self, host: Host, sock: SimDatagramTransport) -> None:
        """Release a UDP socket's port."""
        bound = host.udp.get(sock.port)
        if bound and sock in bound:
            bound.remove(sock)
            if not bound:
                del host.udp[sock.port]

    def unbind_listener(self, host: Host, listener: SimListener) -> None:
        """Release a listener's port."""
        bound = host.listeners.get(listener.port)
        if bound and listener in bound:
            bound.remove(listener)
            if not bound:
                del host.listeners[listener.port]

    def refuse(self, packet: Packet, host: Host) -> None:
        """Answer ``packet`` (arrived at ``host``) with the RST of a closed port."""
        reset = packet.reset_reply()
        if reset is not None:
            self.send(reset, host)
