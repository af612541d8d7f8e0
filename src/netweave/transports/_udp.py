"""``udp://host:port`` — UDP datagrams over the running loop, IPv4 and IPv6.

``connect`` gives an endpoint connected to ``host:port`` (it sends there and
receives only from there); ``bind`` an unconnected one bound to ``host:port``
(port 0 picks a free port; :attr:`~UdpEndpoint.url` has the real one).

Options:

* ``queue`` — received datagrams held until ``receive_from`` takes them
  (default 1024); further arrivals are dropped and counted in ``dropped``.
* ``max_size`` — the largest datagram ``send_to`` accepts; default and upper
  bound are what one IP packet can carry: 65507 bytes over IPv4, 65527 over IPv6.

Rules of this file:

* ``send_to`` never waits. While asyncio's write buffer is above its high-water
  mark (the OS socket buffer is full), datagrams are dropped as an OS would
  and counted in ``send_dropped``, so memory stays bounded.
* On a connected endpoint, an ICMP error (port unreachable) is queued in order
  with the datagrams and raised once from ``receive_from`` as
  ``ConnectionBroken``; the endpoint stays usable. Unconnected endpoints
  ignore such errors (they cannot tell which peer they concern).
* ``OSError`` becomes a netweave error here, once.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any, ClassVar, Final, cast, final

from ..endpoints import Endpoint, Option, format_host_port, parse_size
from ..errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    NetweaveError,
    UsageError,
    map_os_errors,
    translate_os_error,
)
from ..observe import BytesReceived, BytesSent, ConnectionClosed, ConnectionOpened, Observer
from ._listener import parse_count
from .base import Address, DatagramEndpoint, DatagramTransport

__all__ = ["UDP_OPTIONS", "UdpEndpoint", "UdpTransport"]

#: The largest UDP payload of one IPv4 / IPv6 packet.
MAX_IPV4_DATAGRAM: Final = 65507
MAX_IPV6_DATAGRAM: Final = 65527
_CLOSE_TIMEOUT: Final = 10.0


def _parse_max_size(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise ValueError(f"max_size must be at least 1 byte, got {text!r}")
    return value


UDP_OPTIONS: Final[dict[str, Option[Any]]] = {
    "queue": Option(parse_count, 1024, "received datagrams held before new ones are dropped"),
    "max_size": Option(_parse_max_size, None, "largest datagram send_to accepts (bytes)"),
}


@final
class UdpEndpoint(asyncio.DatagramProtocol, DatagramEndpoint):
    """Both the asyncio datagram protocol and the netweave endpoint for one UDP socket."""

    def __init__(
        self,
        *,
        queue: int,
        max_size: int | None,
        connected: bool,
        observer: Observer | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = queue
        self._max_size_option = max_size
        self._max_size = max_size or MAX_IPV4_DATAGRAM
        self._connected = connected
        self._observer = observer
        self._transport: asyncio.DatagramTransport | None = None
        self._local: Address = ""
        self._remote: Address | None = None
        self._label = "udp"
        # each entry: (datagram, sender) or (error, None)
        self._queue: deque[tuple[bytes, Address] | tuple[ConnectionBroken, None]] = deque()
        self._readable: asyncio.Future[None] | None = None
        self._dropped = 0
        self._send_dropped = 0
        self._write_paused = False
        self._closed = False
        self._aborted = False
        self._error: ConnectionBroken | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.DatagramProtocol callbacks ------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not always a DatagramTransport subclass (CPython 3.11's selector one is not).
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._local = transport.get_extra_info("sockname") or ""
        if self._connected:
            self._remote = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        family = getattr(sock, "family", None)
        if family is None:  # no real socket (a simulated network): read the address
            family = socket.AF_INET6 if ":" in str(_host(self._local)) else socket.AF_INET
        family_max = MAX_IPV6_DATAGRAM if family == socket.AF_INET6 else MAX_IPV4_DATAGRAM
        self._max_size = min(self._max_size_option or family_max, family_max)
        local = _format(self._local)
        remote = "" if self._remote is None else _format(self._remote)
        self._label = f"udp {local}->{remote}" if remote else f"udp {local}"
        if self._observer is not None:
            role = "client" if self._connected else "server"
            self._observer(ConnectionOpened(self._label, "udp", local, remote, role))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        if self._observer is not None:
            self._observer(BytesReceived(self._label, len(data)))
        if len(self._queue) >= self._limit:
            self._dropped += 1
            return
        self._queue.append((data, addr if addr is not None else self._remote or ""))
        self._wake()

    def error_received(self, exc: Exception) -> None:
        if self._closed or not self._connected:
            return
        error = translate_os_error(exc, during="io", target=self._label)
        if not isinstance(error, ConnectionBroken):
            error = ConnectionBroken(f"{self._label}: {exc}")
        if len(self._queue) >= self._limit:
            self._dropped += 1
            return
        self._queue.append((error, None))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._closed:
            self._error = ConnectionBroken(f"{self._label} failed: {exc}")
        self._wake()
        if not self._lost.done():
            self._lost.set_result(None)
        if self._observer is not None:
            if self._closed:
                reason = "local-abort" if self._aborted else "local-close"
            else:
                reason = "peer-reset" if exc is not None else "peer-eof"
            self._observer(ConnectionClosed(self._label, reason, None if exc is None else str(exc)))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False

    # -- DatagramEndpoint --------------------------------------------------------

    async def send_to(self, data: bytes, address: Address | None = None) -> None:
        """Send one datagram; never waits (see the module docstring).

        ``UsageError`` for a datagram over :attr:`max_datagram_size`, for no
        address on an unconnected endpoint, or for an address other than the
        peer on a connected one; ``ClosedResourceError`` after ``close``.
        """
        if self._closed:
            raise ClosedResourceError(f"{self._label}: cannot send after close on our side")
        if self._error is not None:
            raise self._error
        if len(data) > self._max_size:
            raise UsageError(
                f"{self._label}: datagram of {len(data)} bytes exceeds the maximum of "
                f"{self._max_size} bytes (split it, or use a stream transport)"
            )
        target: Any = None
        if self._connected:
            if address is not None and not _same(address, self._remote):
                raise UsageError(
                    f"{self._label} is connected to {_format(self._remote)}; "
                    f"it cannot send to {_format(address)}"
                )
        elif address is None:
            raise UsageError(f"{self._label} is not connected: give send_to an address")
        else:
            target = address
        transport = self._transport
        assert transport is not None
        if self._write_paused:
            self._send_dropped += 1
            return
        if self._observer is not None:
            self._observer(BytesSent(self._label, len(data)))
        try:
            transport.sendto(data, target)
        except OSError as exc:
            raise translate_os_error(exc, during="io", target=self._label) from exc

    async def receive_from(self) -> tuple[bytes, Address]:
        """The next datagram and its sender; see the module docstring for errors.

        Several tasks may wait at once; each datagram goes to one of them.
        """
        while True:
            if self._closed:
                raise ClosedResourceError(f"{self._label}: receive after close on our side")
            if self._queue:
                item, sender = self._queue.popleft()
                if isinstance(item, NetweaveError):
                    raise item
                assert sender is not None
                return item, sender
            if self._error is not None:
                raise self._error
            readable = self._readable
            if readable is None:
                readable = self._readable = self._loop.create_future()
            await asyncio.shield(readable)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._wake()
            if self._transport is not None:
                self._transport.close()
        if self._lost.done():
            return
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self._aborted:
            return
        self._aborted = True
        self._closed = True
        self._queue.clear()
        self._wake()
        if self._transport is not None:
            self._transport.abort()

    @property
    def max_datagram_size(self) -> int:
        return self._max_size

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote(self) -> Address | None:
        return self._remote

    @property
    def url(self) -> str:
        return f"udp://{format_host_port(str(_host(self._local)), _port(self._local))}"

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def send_dropped(self) -> int:
        """Datagrams ``send_to`` dropped because the OS send buffer was full."""
        return self._send_dropped

    def extra(self, name: str, default: Any = None) -> Any:
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    # -- internals --------------------------------------------------------------

    def _wake(self) -> None:
        readable = self._readable
        if readable is not None:
            self._readable = None
            if not readable.done():
                readable.set_result(None)


@final
class UdpTransport(DatagramTransport):
    """UDP endpoints, connected (``connect``) or bound (``bind``)."""

    scheme: ClassVar[str] = "udp"
    options = UDP_OPTIONS

    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> DatagramEndpoint:
        target = f"udp://{endpoint.address}"
        if endpoint.port == 0:
            raise ConnectFailed(
                f"cannot connect to {target}: port 0 is not a destination "
                f"(0 means 'any free port' only when binding)"
            )
        with map_os_errors(during="connect", target=target):
            _, udp = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: self._endpoint(endpoint, observer, connected=True),
                remote_addr=(endpoint.host, endpoint.port),
            )
        return await self._checked(udp, endpoint, target)

    async def bind(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> DatagramEndpoint:
        target = f"udp://{endpoint.address}"
        with map_os_errors(during="listen", target=target):
            _, udp = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: self._endpoint(endpoint, observer, connected=False),
                local_addr=(endpoint.host, endpoint.port),
            )
        return await self._checked(udp, endpoint, target)

    @staticmethod
    def _endpoint(endpoint: Endpoint, observer: Observer | None, *, connected: bool) -> UdpEndpoint:
        return UdpEndpoint(
            queue=endpoint.option("queue"),
            max_size=endpoint.option("max_size"),
            connected=connected,
            observer=observer,
        )

    @staticmethod
    async def _checked(udp: UdpEndpoint, endpoint: Endpoint, target: str) -> UdpEndpoint:
        asked = endpoint.option("max_size")
        if asked is not None and asked > udp.max_datagram_size:
            udp.abort()
            raise UsageError(
                f"{target}: max_size={asked} is more than one datagram can carry here "
                f"({udp.max_datagram_size} bytes); lower it"
            )
        return udp


def _host(address: Address) -> Any:
    return address if isinstance(address, str) else address[0]


def _port(address: Address) -> int:
    return 0 if isinstance(address, str) else int(address[1])


def _same(a: Address, b: Address | None) -> bool:
    if b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return tuple(a[:2]) == tuple(b[:2])


def _format(address: Address | None) -> str:
    if address is None:
        return ""
    if isinstance(address, str):
        return address
    return format_host_port(str(address[0]), int(address[1]))
