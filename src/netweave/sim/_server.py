"""A simulated listening TCP socket: the ``asyncio.AbstractServer`` of ``create_server``.

Rules of this file:

* The server listens on one or more bound addresses (one :class:`SimListener`
  each, in the host's listener table). It accepts from the moment it is
  created, or from ``start_serving()``/``serve_forever()`` when created with
  ``start_serving=False`` (until then SYNs get RST, as on a socket that is bound
  but not listening). A SYN to its address starts a handshake; at most
  ``backlog`` handshakes may be unfinished, later SYNs are dropped (the client
  retries), as a full SYN queue does. A finished handshake creates the protocol
  with the factory and calls ``connection_made``, with ``current_host`` set.
* ``close()`` stops listening at once: unfinished handshakes are reset, later
  SYNs are answered with RST; accepted connections stay open.
  ``wait_closed()`` follows the running Python: from 3.12.1 it also waits for
  the accepted connections to end, before that it returns once closed.
* ``sockets`` lists one socket-like object per bound address, whose
  ``getsockname()`` gives the address (the real port when 0 was asked).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, final

from ._context import current_host
from ._stream import SimStreamTransport
from ._tcp import TcpCore

if TYPE_CHECKING:
    from ._host import Host
    from ._network import Network
    from ._packet import Packet

__all__ = ["SimListener", "SimServer", "SimSocketName"]

_WAITS_FOR_CONNECTIONS: Final = sys.version_info >= (3, 12, 1)


@final
class SimSocketName:
    """What ``server.sockets`` holds: enough of a socket to ask where it is bound."""

    __slots__ = ("_address",)

    family: Final = socket.AF_INET
    type: Final = socket.SOCK_STREAM
    proto: Final = socket.IPPROTO_TCP

    def __init__(self, address: tuple[str, int]) -> None:
        self._address = address

    def getsockname(self) -> tuple[str, int]:
        """The bound ``(ip, port)``."""
        return self._address

    def fileno(self) -> int:
        """-1: a simulated socket has no file descriptor."""
        return -1

    def __repr__(self) -> str:
        return f"<SimSocketName laddr={self._address}>"


@final
class SimListener:
    """One bound address of a :class:`SimServer`, as the host's listener table holds it."""

    __slots__ = ("bound_ip", "port", "server")

    def __init__(self, server: SimServer, bound_ip: str, port: int) -> None:
        self.server = server
        self.bound_ip = bound_ip
        self.port = port

    def accept_syn(self, packet: Packet) -> None:
        """A SYN arrived for this address."""
        self.server.accept_syn(packet)

    def kill(self) -> None:
        """The host crashed."""
        self.server.kill()


@final
class SimServer(asyncio.AbstractServer):
    """A TCP listener on one or more addresses of a simulated host."""

    def __init__(
        self,
        network: Network,
        host: Host,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        addresses: list[tuple[str, int]],
        *,
        backlog: int,
        serving: bool,
    ) -> None:
        self._network = network
        self._loop = network.loop
        self._host = host
        self._factory = protocol_factory
        self.listeners = [SimListener(self, ip, port) for ip, port in addresses]
        self._backlog = max(1, backlog)
        self._closed = False
        self._serving = serving
        self._handshaking: dict[SimStreamTransport, None] = {}
        self._active: dict[SimStreamTransport, None] = {}
        self._waiters: list[asyncio.Future[None]] | None = []
        self._serving_forever_fut: asyncio.Future[None] | None = None
        #: SYNs dropped because ``backlog`` handshakes were already unfinished.
        self.syn_dropped = 0

    def __repr__(self) -> str:
        bound = ", ".join(f"{lsn.bound_ip}:{lsn.port}" for lsn in self.listeners)
        return f"<SimServer {self._host.name} {bound}>"

    # -- used by the listeners ----------------------------------------------------------

    def accept_syn(self, packet: Packet) -> None:
        """Start a handshake for ``packet`` (a SYN): RST if not serving, drop if backlog is full."""
        if not self._serving:
            self._network.refuse(packet, self._host)
            return
        if len(self._handshaking) >= self._backlog:
            self.syn_dropped += 1
            return
        network = self._network
        host = self._host
        core = TcpCore.server(
            host.name,
            packet,
            iss=host.isn(),
            mss=network.mss(host, packet.src_ip),
            settings=network.tcp_settings,
            now=self._loop.time_ns(),
        )
        transport = SimStreamTransport(network, host, core, server=self)
        self._handshaking[transport] = None
        transport.start()

    def kill(self) -> None:
        """The host crashed: stop without a word."""
        self._closed = True
        self._serving = False
        self._handshaking.clear()
        self._active.clear()

    # -- used by the transports -----------------------------------------------------------

    def connection_established(self, transport: SimStreamTransport) -> asyncio.BaseProtocol | None:
        """A handshake finished: make the protocol and attach it (None if the factory failed)."""
        self._handshaking.pop(transport, None)
        token = current_host.set(self._host.name)
        try:
            protocol = self._factory()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": "protocol factory failed", "exception": exc, "transport": transport}
            )
            return None
        finally:
            current_host.reset(token)
        self._active[transport] = None
        transport.attach(protocol)
        return protocol

    def handshake_failed(self, transport: SimStreamTransport) -> None:
        """A handshake ended without a connection."""
        self._handshaking.pop(transport, None)

    def connection_gone(self, transport: SimStreamTransport) -> None:
        """An accepted connection called ``connection_lost``."""
        self._active.pop(transport, None)
        if self._closed and not self._active:
            self._wakeup()

    # -- asyncio.AbstractServer -------------------------------------------------------------

    @property
    def sockets(self) -> tuple[SimSocketName, ...]:
        """The bound socket (empty once closed)."""
        if self._closed:
            return ()
        return tuple(SimSocketName((lsn.bound_ip, lsn.port)) for lsn in self.listeners)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._serving = True
        await asyncio.sleep(0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._serving = False
        for listener in self.listeners:
            self._network.unbind_listener(self._host, listener)
        handshaking = list(self._handshaking)
        self._handshaking.clear()
        for transport in handshaking:
            transport.abort()
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if not self._active:
            self._wakeup()

    def close_clients(self) -> None:
        """Close every accepted connection (Python 3.13's ``Server.close_clients``)."""
        for transport in list(self._active):
            transport.close()

    def abort_clients(self) -> None:
        """Abort every accepted connection (Python 3.13's ``Server.abort_clients``)."""
        for transport in list(self._active):
            transport.abort()

    async def wait_closed(self) -> None:
        if self._waiters is None or (self._closed and not _WAITS_FOR_CONNECTIONS):
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._serving = True
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
