"""The simulated network: named hosts, their links, partitions, crashes, and the socket calls.

Rules of this file:

* :class:`Network` is the world's topology and its public face; the path a
  packet takes is the :class:`~netweave.sim._switch.PacketSwitch`'s.
* Randomness comes only from the seed tree: link ``a->b`` draws from stream
  ``link:a->b``, host ``h`` from ``host:h``; adding a host or a link changes
  no other stream.
* A crash empties the host's socket tables without a word to their owners;
  packets in flight to it are lost; after a restart its old peers' segments
  are answered with RST.
* Socket calls read the calling host from ``current_host`` and fail with
  ``OSError``\\ s shaped like the real ones (EADDRINUSE, EADDRNOTAVAIL,
  ``socket.gaierror``), so asyncio code sees what it would see on Linux.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, final

from ..errors import UsageError
from ._context import current_host
from ._events import Healed, HostCrashed, HostRestarted, Partitioned
from ._faults import RuleChain, RuleFn, RuleHandle
from ._host import Host
from ._link import Link, LinkConfig
from ._names import AddrInfo, getaddrinfo, getnameinfo, resolve
from ._sockets import listen, open_connection, open_datagram
from ._switch import PacketSwitch, Tap
from ._tcp import TcpSettings

if TYPE_CHECKING:
    from ..observe import Observer
    from ._loop import SimLoop
    from ._seeds import SeedTree

__all__ = ["Network", "Tap"]

_NS: Final = 1_000_000_000
_FIRST_ADDRESS: Final = int(ipaddress.IPv4Address("10.0.0.1"))
_LAST_ADDRESS: Final = int(ipaddress.IPv4Address("10.255.255.254"))


@final
class Network(PacketSwitch):
    """Named hosts joined by configurable, directional links.

    ``default_link`` applies to every pair not configured on its own;
    ``loopback`` to traffic a host sends itself (default: no delay, MTU 65535);
    ``tcp`` tunes simulated TCP. ``observer`` receives the trace events of
    :mod:`netweave.sim._events` (assign ``network.observer`` to change it).
    """

    def __init__(
        self,
        *,
        loop: SimLoop,
        seeds: SeedTree,
        observer: Observer | None = None,
        default_link: LinkConfig | None = None,
        loopback: LinkConfig | None = None,
        tcp: TcpSettings | None = None,
    ) -> None:
        super().__init__(
            loop=loop,
            seeds=seeds,
            observer=observer,
            default_link=default_link if default_link is not None else LinkConfig(),
        )
        self.tcp_settings = tcp if tcp is not None else TcpSettings()
        self._loopback = loopback if loopback is not None else LinkConfig(latency=0.0, mtu=65535)
        self._next_address = _FIRST_ADDRESS

    # -- topology ----------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        *,
        address: str | None = None,
        clock_skew: float = 0.0,
        clock_drift: float = 0.0,
    ) -> Host:
        """Add host ``name`` with ``address`` (next free 10.x.y.z when not given).

        ``clock_skew`` (seconds) and ``clock_drift`` (a fraction: 1e-4 runs 100 ppm
        fast) shape the host's clock (:meth:`wall_clock_ns`). ``UsageError`` for a
        duplicate name or address, an address that is not a unicast IPv4 address
        outside 127.0.0.0/8, or a clock setting that is not finite.
        """
        if not name or not isinstance(name, str):
            raise UsageError(f"a host name must be a non-empty string, got {name!r}")
        if name in self._hosts or name == "localhost":
            raise UsageError(f"host name {name!r} is already taken; pick another")
        if not (math.isfinite(clock_skew) and math.isfinite(clock_drift) and clock_drift > -1):
            raise UsageError(
                f"clock_skew must be finite seconds and clock_drift a finite fraction > -1 "
                f"(1e-4 = 100 ppm fast); got {clock_skew!r}, {clock_drift!r}"
            )
        if address is None:
            address = self._free_address()
        else:
            try:
                parsed = ipaddress.IPv4Address(address)
            except ValueError:
                raise UsageError(
                    f"host address must be IPv4, like 10.0.0.5; got {address!r}"
                ) from None
            if parsed.is_loopback or parsed.is_multicast or parsed.is_unspecified:
                raise UsageError(f"host address {address} must be a unicast, non-loopback address")
            address = str(parsed)
            if address in self._by_address:
                raise UsageError(
                    f"address {address} already belongs to {self._by_address[address].name}"
                )
        loopback = Link(
            name, name, self._loopback, self.seeds.stream(f"link:{name}->{name}"), RuleChain()
        )
        host = Host(
            name,
            address,
            rng=self.seeds.stream(f"host:{name}"),
            loopback=loopback,
            clock_skew=clock_skew,
            clock_drift=clock_drift,
        )
        self._hosts[name] = host
        self._by_address[address] = host
        return host

    def _free_address(self) -> str:
        while self._next_address <= _LAST_ADDRESS:
            candidate = str(ipaddress.IPv4Address(self._next_address))
            self._next_address += 1
            if candidate not in self._by_address and not candidate.endswith(".0"):
                return candidate
        raise UsageError("the 10.0.0.0/8 address pool is exhausted")

    def host(self, name: str) -> Host:
        """The host called ``name`` (``UsageError`` if there is none)."""
        host = self._hosts.get(name)
        if host is None:
            known = ", ".join(self._hosts) or "none yet"
            raise UsageError(f"no simulated host is called {name!r} (hosts: {known})")
        return host

    @property
    def hosts(self) -> list[str]:
        """Host names, in the order they were added."""
        return list(self._hosts)

    def link(self, src: str, dst: str) -> Link:
        """The link direction ``src -> dst`` (created with the default settings if new)."""
        source, target = self.host(src), self.host(dst)
        if source is target:
            return source.loopback
        return self._link(source, target)

    def configure_link(
        self,
        src: str,
        dst: str,
        config: LinkConfig | None = None,
        *,
        both: bool = True,
        **changes: Any,
    ) -> None:
        """Set the link ``src -> dst`` (and ``dst -> src`` unless ``both=False``).

        ``config`` replaces the settings; keyword ``changes`` (``latency=0.01``,
        ``loss=0.05``...) adjust the current ones. Takes effect for the next packet.
        """
        directions = [(src, dst), (dst, src)] if both else [(src, dst)]
        for a, b in directions:
            link = self.link(a, b)
            new = config if config is not None else link.config
            if changes:
                try:
                    new = replace(new, **changes)
                except TypeError as exc:
                    raise UsageError(f"unknown link setting: {exc}") from None
            link.config = new
            link.explicit = True

    @property
    def default_link(self) -> LinkConfig:
        """The settings of every link not configured on its own."""
        return self._default_link

    @default_link.setter
    def default_link(self, config: LinkConfig) -> None:
        self._default_link = config
        for host in self._hosts.values():
            for link in host.links.values():
                if not link.explicit:
                    link.config = config

    # -- faults ------------------------------------------------------------------------

    def faults(
        self, *rules: RuleFn, src: str | None = None, dst: str | None = None, both: bool = False
    ) -> RuleHandle:
        """Install ``rules`` for a scope: ``with network.faults(rule, src="a", dst="b"): ...``.

        Without ``src``/``dst`` the rules apply to every link; with both, to the
        link ``src -> dst`` (and back, with ``both=True``). The handle removes them.
        """
        if (src is None) != (dst is None):
            raise UsageError("give both src and dst for a link's rules, or neither for all links")
        if src is None or dst is None:
            return self.rules.install(*rules)
        entries = [(self.link(src, dst).rules, rules)]
        if both:
            entries.append((self.link(dst, src).rules, rules))
        for chain, _ in entries:
            chain.install(*rules)
        return RuleHandle(entries)

    def partition(
        self,
        a: str | Iterable[str],
        b: str | Iterable[str],
        *,
        one_way: bool = False,
        at: float | None = None,
        duration: float | None = None,
    ) -> None:
        """Cut every link between host group ``a`` and host group ``b``.

        ``one_way=True`` cuts only ``a -> b``. ``at`` (absolute simulated
        seconds) schedules the cut; ``duration`` heals it that long after.
        Packets on a cut link are dropped when sent.
        """
        pairs = self._pairs(a, b, one_way)
        start = self._when(at)
        self._at(start, self._set_blocked, pairs, True)
        if duration is not None:
            if not duration >= 0:
                raise UsageError(f"duration must be >= 0 seconds, got {duration!r}")
            self._at(start + round(duration * _NS), self._set_blocked, pairs, False)

    def heal(
        self,
        a: str | Iterable[str] | None = None,
        b: str | Iterable[str] | None = None,
        *,
        one_way: bool = False,
        at: float | None = None,
    ) -> None:
        """Lift the partition between ``a`` and ``b`` (every partition if both are omitted)."""
        when = self._when(at)
        if a is None and b is None:
            self._at(when, self._heal_all)
            return
        if a is None or b is None:
            raise UsageError("heal() takes both host groups, or neither to heal everything")
        self._at(when, self._set_blocked, self._pairs(a, b, one_way), False)

    def is_partitioned(self, src: str, dst: str) -> bool:
        """Whether packets from ``src`` to ``dst`` are cut off now."""
        return self.link(src, dst).blocked

    def _pairs(self, a: str | Iterable[str], b: str | Iterable[str], one_way: bool) -> list[Link]:
        group_a = [a] if isinstance(a, str) else list(a)
        group_b = [b] if isinstance(b, str) else list(b)
        links = []
        for x in group_a:
            for y in group_b:
                if x == y:
                    raise UsageError(f"host {x!r} is on both sides of the partition")
                links.append(self.link(x, y))
                if not one_way:
                    links.append(self.link(y, x))
        return links

    def _set_blocked(self, links: list[Link], blocked: bool) -> None:
        observer = self.observer
        now = self.loop.time_ns()
        for link in links:
            if link.blocked == blocked:
                continue
            link.blocked = blocked
            if observer is not None:
                kind = Partitioned if blocked else Healed
                observer(kind("sim.network", now, link.src, link.dst))

    def _heal_all(self) -> None:
        blocked = [
            link for host in self._hosts.values() for link in host.links.values() if link.blocked
        ]
        self._set_blocked(blocked, False)

    def _when(self, at: float | None) -> int:
        now = self.loop.time_ns()
        if at is None:
            return now
        when = round(at * _NS)
        if when < now:
            raise UsageError(f"at={at} s is in the past (simulated time is {now / _NS} s)")
        return when

    def _at(self, when: int, callback: Callable[..., None], *args: Any) -> None:
        if when <= self.loop.time_ns():
            callback(*args)
        else:
            self.call_at_ns(when, callback, *args)

    # -- crash and restart -----------------------------------------------------------------

    def crash_host(self, name: str) -> None:
        """Crash ``name``: its sockets vanish without a packet, packets to it are lost.

        Peers see silence; after :meth:`restart_host`, their segments for old
        connections are answered with RST.
        """
        host = self.host(name)
        if not host.up:
            return
        host.crash()
        if self.observer is not None:
            self.observer(HostCrashed("sim.network", self.loop.time_ns(), name))

    def restart_host(self, name: str) -> None:
        """Bring ``name`` back up, with no sockets (its main is the driver's to run again)."""
        host = self.host(name)
        if host.up:
            return
        host.restart()
        if self.observer is not None:
            self.observer(HostRestarted("sim.network", self.loop.time_ns(), name, host.epoch))

    def is_up(self, name: str) -> bool:
        """Whether host ``name`` is up."""
        return self.host(name).up

    def wall_clock_ns(self, host: str | None, now_ns: int) -> int:
        """Host ``host``'s clock reading at virtual time ``now_ns`` (skew and drift applied).

        Relative to the simulation's start; ``None`` (the driver) reads ``now_ns``.
        """
        if host is None:
            return now_ns
        return self.host(host).wall_clock_ns(now_ns)

    # -- names and sockets (NetworkBackend) -----------------------------------------------------

    def resolve(self, name: str) -> str:
        """The IPv4 address of a host name, ``localhost`` or an address literal.

        Raises ``socket.gaierror`` (EAI_NONAME) for an unknown name, as a resolver does.
        """
        if name in self._by_address:
            return name
        host = self._hosts.get(name)
        if host is not None:
            return host.address
        return resolve(self._hosts, name)

    def getaddrinfo(
        self,
        host: str | None,
        port: str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """Resolve against the simulated hosts (IPv4 only; never real DNS)."""
        return getaddrinfo(self._hosts, host, port, family, type, proto, flags)

    def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        """The host name (or the address, with NI_NUMERICHOST) and the port of ``sockaddr``."""
        return getnameinfo(self._by_address, sockaddr, flags)

    def _caller(self, what: str) -> Host:
        name = current_host.get()
        if name is None:
            raise UsageError(
                f"{what}() was called outside every simulated host; "
                "run it inside a host's main so the network knows where it comes from"
            )
        return self.host(name)

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        *,
        local_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Open a simulated TCP connection from the calling host to ``host:port``."""
        src = self._caller("create_connection")
        return await open_connection(self, src, protocol_factory, host, port, local_addr)

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None,
        port: int,
        *,
        backlog: int = 100,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        start_serving: bool = True,
    ) -> asyncio.AbstractServer:
        """Listen for simulated TCP connections on the calling host.

        ``reuse_address``/``reuse_port`` change nothing: simulated ports have no
        TIME_WAIT to reuse, and two servers may not share a port.
        """
        src = self._caller("create_server")
        return listen(self, src, protocol_factory, host, port, backlog, start_serving)

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        *,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
        """Open a simulated UDP socket on the calling host (connected if ``remote_addr``).

        Broadcast is not simulated: ``allow_broadcast`` changes nothing.
        """
        src = self._caller("create_datagram_endpoint")
        return open_datagram(self, src, protocol_factory, local_addr, remote_addr)
