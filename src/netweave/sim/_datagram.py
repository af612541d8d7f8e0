"""Simulated UDP as an ``asyncio.DatagramTransport``, connected or not.

Rules of this file:

* Datagrams go to the network as they are sent and meet every fault of the
  link (loss, duplication, reordering, corruption, partitions, rules); one
  above the path MTU travels as IP fragments and is lost if any fragment is.
* asyncio's semantics are kept: ``connection_made`` is called before
  ``create_datagram_endpoint`` returns; ``sendto`` checks its argument types,
  raises ``ValueError`` for a foreign address on a connected endpoint, reports
  send errors (``EMSGSIZE``, ``EDESTADDRREQ``, unresolvable names) through
  ``error_received``, and ignores sends after ``close()``; ``connection_lost``
  is called once, via ``call_soon``. Empty datagrams are dropped before
  sending on Python < 3.13, as asyncio's own transport does there.
* A connected endpoint receives only from its peer and learns of an ICMP port
  unreachable as ``error_received(ConnectionRefusedError)``, as Linux reports
  it; an unconnected one is not told.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast, final

from ._context import current_host
from ._host import WILDCARD
from ._packet import UDP, Packet

if TYPE_CHECKING:
    from ._host import Host
    from ._network import Network

__all__ = ["MAX_UDP_PAYLOAD", "SimDatagramTransport"]

#: The largest UDP payload over IPv4 (65535 - 20 - 8).
MAX_UDP_PAYLOAD: Final = 65507
_SENDS_EMPTY: Final = sys.version_info >= (3, 13)
_ROUTE_CACHE: Final = 256  # destinations whose resolution a socket remembers
_set_host = current_host.set
_reset_host = current_host.reset


@final
class SimDatagramTransport(asyncio.DatagramTransport):
    """A simulated UDP socket bound to ``local`` on ``host``, connected to ``remote`` if given."""

    def __init__(
        self,
        network: Network,
        host: Host,
        local: tuple[str, int],
        remote: tuple[str, int] | None,
    ) -> None:
        bound_ip, port = local
        sockname = local
        if remote is not None and bound_ip == WILDCARD:
            sockname = (network.source_ip(host, remote[0]), port)
        super().__init__({"sockname": sockname, "peername": remote, "socket": None})
        self._network = network
        self._loop = network.loop
        self._host = host
        self._host_name = host.name
        self.bound_ip = bound_ip
        self.port = port
        self.remote = remote
        self._protocol: asyncio.DatagramProtocol | None = None
        self._closing = False
        self._dead = False
        self._routes: dict[Any, tuple[str, str, int]] = {}

    def __repr__(self) -> str:
        peer = "" if self.remote is None else f"->{self.remote[0]}:{self.remote[1]}"
        return f"<SimDatagramTransport {self._host.name} {self.bound_ip}:{self.port}{peer}>"

    # -- used by the network ------------------------------------------------------------

    def accepts(self, packet: Packet) -> bool:
        """Whether a datagram to ``packet.dst_ip`` from its source is for this socket."""
        if self.bound_ip not in (WILDCARD, packet.dst_ip):
            return False
        remote = self.remote
        return remote is None or (remote[0] == packet.src_ip and remote[1] == packet.src_port)

    def handle_datagram(self, packet: Packet) -> None:
        """A datagram arrived for this socket."""
        protocol = self._protocol
        if self._closing or protocol is None:
            return
        # self._call(protocol.datagram_received, ...), inlined: every datagram's path.
        token = _set_host(self._host_name)
        try:
            protocol.datagram_received(packet.payload, (packet.src_ip, packet.src_port))
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._failed(exc, "datagram_received")
        finally:
            _reset_host(token)

    def handle_unreachable(self, inner: Packet) -> None:
        """An ICMP port unreachable answered ``inner``, a datagram this socket sent."""
        protocol = self._protocol
        remote = self.remote
        if self._closing or protocol is None or remote is None:
            return
        if (inner.dst_ip, inner.dst_port) != remote:
            return
        error = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        self._call(protocol.error_received, error)

    def kill(self) -> None:
        """The host crashed: vanish without a callback."""
        self._dead = True
        self._closing = True
        self._protocol = None

    # -- asyncio.BaseTransport ----------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None, "the endpoint has no protocol yet"
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = cast(asyncio.DatagramProtocol, protocol)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._network.unbind_udp(self._host, self)
        self._network.call_soon(self._call_lost)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0

    # -- asyncio.DatagramTransport --------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(
                    f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                )
            data = bytes(data)
        if not data and not _SENDS_EMPTY:
            return
        remote = self.remote
        if remote is not None and addr is not None and addr != remote:
            raise ValueError(f"Invalid address: must be None or {remote}")
        if self._closing:
            return
        if len(data) > MAX_UDP_PAYLOAD:
            self._error(OSError(errno.EMSGSIZE, "Message too long"))
            return
        if remote is not None:
            addr = remote
        route = self._routes.get(addr)
        if route is None:
            route = self._route(addr)
            if route is None:
                return
        src_ip, dst_ip, dst_port = route
        packet = Packet(UDP, self._host_name, src_ip, self.port, dst_ip, dst_port, data)
        self._network.send(packet, self._host)

    def _route(self, addr: Any) -> tuple[str, str, int] | None:
        """``(source ip, destination ip, port)`` for ``addr``, remembered for the next send;
        ``None`` after reporting an error to the protocol."""
        if addr is None:
            self._error(OSError(errno.EDESTADDRREQ, "Destination address required"))
            return None
        if not (isinstance(addr, tuple) and len(addr) >= 2 and isinstance(addr[1], int)):
            raise TypeError(f"addr must be a (host, port) tuple, not {addr!r}")
        if not 0 <= addr[1] <= 65535:
            raise OverflowError("sendto(): port must be 0-65535.")
        try:
            dst_ip = self._network.resolve(addr[0])
        except socket.gaierror as exc:
            self._error(exc)
            return None
        src_ip = self.bound_ip
        if src_ip == WILDCARD:
            src_ip = self._network.source_ip(self._host, dst_ip)
        route = (src_ip, dst_ip, addr[1])
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[addr] = route
        return route

    # -- internals -------------------------------------------------------------------------

    def _error(self, exc: OSError) -> None:
        protocol = self._protocol
        if protocol is not None:
            self._call(protocol.error_received, exc)

    def _call(self, method: Callable[..., Any], *args: Any) -> None:
        token = _set_host(self._host_name)
        try:
            method(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._failed(exc, method.__name__)
        finally:
            _reset_host(token)

    def _failed(self, exc: BaseException, name: str) -> None:
        self._loop.call_exception_handler(
            {
                "message": f"Fatal error: protocol.{name}() call failed.",
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )
        if not self._closing:
            self.close()

    def _call_lost(self) -> None:
        protocol = self._protocol
        if self._dead or protocol is None:
            return
        self._protocol = None
        token = current_host.set(self._host.name)
        try:
            protocol.connection_lost(None)
        finally:
            current_host.reset(token)
