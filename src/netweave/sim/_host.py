"""One simulated host: its name and address, its sockets, whether it is up.

Rules of this file: a host owns its port tables (TCP connections keyed by
``(local_port, remote_ip, remote_port)``, TCP listeners and UDP sockets keyed by
local port) and its own random stream (initial sequence numbers, the start of
its ephemeral port range). Its ``epoch`` counts crashes: a packet remembers the
epoch its destination had when it was sent, and is lost if the host crashed
since. Crashing empties every table without a word to the sockets' owners
(they are gone with the host); the counters (next port, IP id) survive, as
they would across a reboot in any way that matters here.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Final, Protocol, final

if TYPE_CHECKING:
    from random import Random

    from ._link import Link
    from ._packet import Packet

__all__ = ["Host", "Listening", "Socket"]

EPHEMERAL_LOW: Final = 32768
EPHEMERAL_HIGH: Final = 60999
WILDCARD: Final = "0.0.0.0"


class Socket(Protocol):
    """What a host table holds: something that can be killed when the host crashes."""

    def kill(self) -> None:
        """Vanish at once: no callbacks, no packets (the host crashed)."""


class Listening(Socket, Protocol):
    """A listening TCP socket (a bound address of a simulated server)."""

    bound_ip: str

    def accept_syn(self, packet: Packet) -> None:
        """Handle a SYN addressed to this listener."""


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` is in 127.0.0.0/8."""
    return ip.startswith("127.")


@final
class Host:
    """A named host with one IPv4 address (plus loopback).

    ``clock_skew`` (seconds) and ``clock_drift`` (fraction: 1e-4 = 100 ppm fast)
    shape :meth:`wall_clock_ns`, the host's reading of the virtual clock.
    """

    __slots__ = (
        "_next_port",
        "address",
        "clock_drift",
        "clock_skew",
        "epoch",
        "ip_id",
        "links",
        "listeners",
        "loopback",
        "name",
        "rng",
        "routes",
        "tcp",
        "tcp_ports",
        "udp",
        "up",
    )

    def __init__(
        self,
        name: str,
        address: str,
        *,
        rng: Random,
        loopback: Link,
        clock_skew: float = 0.0,
        clock_drift: float = 0.0,
    ) -> None:
        self.name = name
        self.address = address
        self.rng = rng
        self.loopback = loopback
        self.clock_skew = clock_skew
        self.clock_drift = clock_drift
        self.up = True
        self.epoch = 0
        self.ip_id = 0
        self.links: dict[str, Link] = {}
        #: Where packets to an address go: ``(destination host, link)``, filled in by the
        #: network as addresses are first used (hosts and links are never removed).
        self.routes: dict[str, tuple[Host, Link]] = {}
        self.tcp: dict[tuple[int, str, int], Any] = {}
        self.tcp_ports: dict[int, int] = {}
        self.listeners: dict[int, list[Listening]] = {}
        self.udp: dict[int, list[Any]] = {}
        self._next_port = EPHEMERAL_LOW + rng.randrange(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1)

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"<Host {self.name} {self.address} {state} epoch={self.epoch}>"

    def owns(self, ip: str) -> bool:
        """Whether packets to ``ip`` sent from this host stay on it (its address, loopback)."""
        return ip == self.address or is_loopback(ip)

    def bindable(self, ip: str) -> bool:
        """Whether a socket on this host may bind ``ip`` (its address, loopback, wildcard)."""
        return ip == WILDCARD or self.owns(ip)

    def wall_clock_ns(self, now_ns: int) -> int:
        """This host's clock reading at virtual time ``now_ns`` (skew plus drift)."""
        return now_ns + round(self.clock_skew * 1e9) + round(now_ns * self.clock_drift)

    def isn(self) -> int:
        """A fresh TCP initial sequence number."""
        return self.rng.getrandbits(32)

    # -- ports -------------------------------------------------------------------

    def tcp_port_in_use(self, port: int) -> bool:
        """Whether a listener or a connection uses local TCP ``port``."""
        return port in self.listeners or port in self.tcp_ports

    def add_tcp(self, key: tuple[int, str, int], conn: Any) -> None:
        """Register a connection under ``(local_port, remote_ip, remote_port)``."""
        self.tcp[key] = conn
        self.tcp_ports[key[0]] = self.tcp_ports.get(key[0], 0) + 1

    def remove_tcp(self, key: tuple[int, str, int], conn: Any) -> None:
        """Forget a connection (only if ``key`` still maps to ``conn``)."""
        if self.tcp.get(key) is not conn:
            return
        del self.tcp[key]
        left = self.tcp_ports[key[0]] - 1
        if left:
            self.tcp_ports[key[0]] = left
        else:
            del self.tcp_ports[key[0]]

    def ephemeral_port(self, in_use: Any) -> int:
        """The next free port of the ephemeral range (``in_use(port)`` says which are taken).

        Raises ``OSError(EADDRNOTAVAIL)`` when every port is taken.
        """
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = EPHEMERAL_LOW + (port + 1 - EPHEMERAL_LOW) % span
            if not in_use(port):
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port left on host " + self.name)

    def find_listener(self, ip: str, port: int) -> Listening | None:
        """The listener for a SYN to ``ip:port``: an exact address beats the wildcard."""
        bound = self.listeners.get(port)
        if not bound:
            return None
        wildcard = None
        for listener in bound:
            if listener.bound_ip == ip:
                return listener
            if listener.bound_ip == WILDCARD:
                wildcard = listener
        return wildcard

    # -- crash -------------------------------------------------------------------

    def crash(self) -> None:
        """Go down: every socket vanishes silently; the epoch moves on."""
        self.up = False
        self.epoch += 1
        sockets: list[Socket] = list(self.tcp.values())
        for bound in self.listeners.values():
            sockets.extend(bound)
        for udp in self.udp.values():
            sockets.extend(udp)
        self.tcp.clear()
        self.tcp_ports.clear()
        self.listeners.clear()
        self.udp.clear()
        for sock in sockets:
            sock.kill()

    def restart(self) -> None:
        """Come back up with empty tables."""
        self.up = True
