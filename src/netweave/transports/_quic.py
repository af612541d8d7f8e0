"""``quic://host:port`` — QUIC (RFC 9000) streams and datagrams over UDP, with aioquic.

``connect`` opens a QUIC connection and its first bidirectional stream, and
returns that stream (a :class:`~._quic_stream.QuicStream`), so
``netweave.connect("quic://...", "lp4,json")`` gives a channel. ``listen``
accepts connections and yields every stream their peers open, so
``netweave.serve`` works unchanged. More streams on one connection::

    stream = await transport.connect(endpoint)
    conn = stream.extra("quic_connection")
    second = await conn.open_stream()
    await conn.datagrams.send_to(b"unreliable")

Options: the certificate ones of ``tls://`` — ``ca``, ``verify`` (on by
default), ``server_hostname``, ``alpn`` (default ``netweave``), and
``cert``/``key`` to listen — plus ``connect_timeout``, ``idle_timeout``,
``max_datagram_frame_size``, ``congestion_control`` (``reno`` or ``cubic``),
``write_high_water``, ``read_high_water`` (each stream's receive window),
``backlog``, ``max_connections`` and ``datagram_queue``. See ``docs/quic.md``.

Everything goes through ``loop.create_datagram_endpoint``, ``loop.time`` and
``loop.call_at``, so the same code runs on the simulator's loop over
simulated UDP. aioquic (the ``quic`` extra) is imported on first use.

Rules of this file: ``OSError`` and aioquic's failures become netweave errors
(``ConnectFailed`` while connecting, ``ListenFailed`` while binding); a
connection that failed to connect is closed before the error is raised.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, final

from ..endpoints import Endpoint, Option, format_host_port
from ..errors import (
    ClosedResourceError,
    ConnectFailed,
    MissingDependency,
    NetweaveError,
    UsageError,
    map_os_errors,
)
from ._quic_connection import QuicConnection, QuicSocket
from ._quic_options import QUIC_OPTIONS, QuicSettings, tls_options
from ._quic_stream import QuicDatagrams, QuicStream
from .base import Listener, StreamConnection, StreamTransport

if TYPE_CHECKING:
    from aioquic.quic.configuration import QuicConfiguration

    from ..observe import Observer

__all__ = [
    "QuicConnection",
    "QuicDatagrams",
    "QuicListener",
    "QuicStream",
    "QuicTransport",
    "load_engine",
]


def load_engine() -> ModuleType:
    """The aioquic-backed engine module; ``MissingDependency`` naming the extra without it."""
    try:
        from . import _quic_engine
    except ImportError as exc:  # aioquic, or one of its own dependencies, is missing
        raise MissingDependency("the quic:// transport", "aioquic", "quic") from exc
    return _quic_engine


@final
class QuicListener(Listener):
    """Accepts QUIC connections on one UDP socket and hands out every stream their
    peers open, in arrival order.

    At most ``max_connections`` connections are served at once (further
    handshakes are ignored and counted in :attr:`refused_connections`) and at
    most ``backlog`` streams wait for :meth:`accept` (further ones are reset and
    counted in :attr:`refused_streams`). Closing the listener stops both; the
    streams already accepted stay open, so the UDP port stays bound until the
    last connection ended (each closes once its accepted streams are closed).
    """

    def __init__(
        self,
        socket: QuicSocket,
        *,
        engine: ModuleType,
        configuration: QuicConfiguration,
        settings: QuicSettings,
        url: str,
        observer: Observer | None,
    ) -> None:
        self._socket = socket
        self._engines = engine
        self._parse_header = engine.parse_header
        self._configuration = configuration
        self._cid_length = configuration.connection_id_length
        self._settings = settings
        self._url = url
        self._observer = observer
        self._by_cid: dict[bytes, QuicConnection] = {}
        self._connections: dict[QuicConnection, None] = {}  # ordered: deterministic closing
        self._queue: deque[QuicStream] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        #: Handshakes ignored because ``max_connections`` connections were served.
        self.refused_connections = 0
        #: Streams reset because ``backlog`` streams already waited for accept().
        self.refused_streams = 0
        socket.receiver = self

    @property
    def connections(self) -> int:
        """Connections currently served."""
        return len(self._connections)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data and not data[0] & 0x80:
            # A short header (an established connection's): the connection ID is next.
            known = self._by_cid.get(data[1 : 1 + self._cid_length])
            if known is not None:
                known.datagram_received(data, addr)
            return
        header = self._parse_header(data, self._cid_length)
        if header is None:
            return
        connection = self._by_cid.get(header.destination_cid)
        if connection is None:
            connection = self._new_connection(data, addr, header)
            if connection is None:
                return
        connection.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        """An unconnected socket cannot tell which peer an ICMP error is about: ignored."""

    def socket_lost(self, exc: Exception | None) -> None:
        """The UDP socket went away: every connection ends, and accepting stops."""
        self._closed = True
        for connection in list(self._connections):
            connection.socket_lost(exc)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _new_connection(self, data: bytes, addr: Any, header: Any) -> QuicConnection | None:
        engines = self._engines
        if self._closed:
            return None
        reply = engines.version_negotiation(header, self._configuration)
        if reply is not None:
            self._socket.send(reply, addr)
            return None
        if not header.initial or len(data) < engines.MIN_DATAGRAM:
            return None
        if len(self._connections) >= self._settings.max_connections:
            self.refused_connections += 1
            return None
        engine = engines.QuicEngine(
            self._configuration,
            window=self._settings.stream_window,
            original_destination_connection_id=header.destination_cid,
        )
        connection = QuicConnection(
            engine,
            self._socket,
            peer=addr,
            server=True,
            settings=self._settings,
            observer=self._observer,
            on_stream=self._offer,
            on_connection_id=self._connection_id,
            on_end=self._forget,
        )
        self._connections[connection] = None
        self._by_cid[header.destination_cid] = connection
        self._by_cid[engine.host_cid] = connection
        return connection

    def _offer(self, stream: QuicStream) -> None:
        if self._closed or len(self._queue) >= self._settings.backlog:
            self.refused_streams += 1
            stream.abort()
            return
        self._queue.append(stream)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _connection_id(self, connection: QuicConnection, cid: bytes, issued: bool) -> None:
        if issued:
            self._by_cid[cid] = connection
        elif self._by_cid.get(cid) is connection:
            del self._by_cid[cid]

    def _forget(self, connection: QuicConnection) -> None:
        self._connections.pop(connection, None)
        for cid in [cid for cid, owner in self._by_cid.items() if owner is connection]:
            del self._by_cid[cid]
        if self._queue:
            self._queue = deque(s for s in self._queue if s.connection is not connection)
        if self._closed and not self._connections:
            self._socket.close()

    async def accept(self) -> StreamConnection:
        while True:
            while self._queue:
                stream = self._queue.popleft()
                if not stream.is_closing:
                    stream.connection._hold(stream)
                    return stream
                stream.abort()  # the peer reset it (or the connection ended) while it waited
            if self._closed:
                raise ClosedResourceError(f"listener {self._url} is closed")
            if self._waiter is not None:
                raise UsageError(f"listener {self._url}: another task is already accepting")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            while self._queue:
                self._queue.popleft().abort()
            for connection in list(self._connections):
                connection.listener_closed()
            if not self._connections:
                self._socket.close()
        if self._socket.closing:
            await self._socket.wait_closed()

    @property
    def url(self) -> str:
        return self._url

    def extra(self, name: str, default: Any = None) -> Any:
        if name == "sockets":
            transport = self._socket.transport
            sock = None if transport is None else transport.get_extra_info("socket")
            return () if sock is None else (sock,)
        return default


@final
class QuicTransport(StreamTransport):
    """``quic://host:port``: QUIC streams over UDP (see the module docstring).

    ``connect`` raises ``UsageError`` for a bad option (before any I/O) and
    ``ConnectFailed`` when the connection cannot be made: refused (ICMP),
    no answer within ``connect_timeout``, or a failed handshake (its cause a
    :class:`~netweave.errors.TlsError` saying why, such as an untrusted
    certificate). ``listen`` raises ``UsageError`` without ``cert``, and
    ``ListenFailed`` when the address cannot be bound.
    """

    scheme: ClassVar[str] = "quic"
    options: ClassVar[Mapping[str, Option[Any]]] = QUIC_OPTIONS

    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> StreamConnection:
        connection = await self._open(endpoint, observer, auto_close=True)
        try:
            return await connection.open_stream()
        except BaseException:
            connection.abort()
            raise

    async def open_connection(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> QuicConnection:
        """Connect and return the :class:`QuicConnection` without opening a stream.

        Unlike one from :meth:`connect`, it stays open until :meth:`QuicConnection.close`.
        """
        return await self._open(endpoint, observer, auto_close=False)

    async def _open(
        self, endpoint: Endpoint, observer: Observer | None, *, auto_close: bool
    ) -> QuicConnection:
        engines = load_engine()
        settings = QuicSettings.from_endpoint(endpoint)
        target = f"quic://{endpoint.address}"
        configuration = engines.client_configuration(
            options={**tls_options(endpoint), **_quic_only(endpoint)},
            server_name=endpoint.option("server_hostname") or endpoint.host,
            window=settings.stream_window,
            idle_timeout=settings.idle_timeout,
        )
        if endpoint.port == 0:
            raise ConnectFailed(
                f"cannot connect to {target}: port 0 is not a destination "
                f"(0 means 'any free port' only when listening)"
            )
        loop = asyncio.get_running_loop()
        timeout = settings.connect_timeout
        socket: QuicSocket | None = None
        connection: QuicConnection | None = None
        try:
            async with asyncio.timeout(timeout):
                with map_os_errors(during="connect", target=target):
                    _, socket = await loop.create_datagram_endpoint(
                        QuicSocket, remote_addr=(endpoint.host, endpoint.port)
                    )
                peer = socket.transport.get_extra_info("peername") if socket.transport else None
                connection = QuicConnection(
                    engines.QuicEngine(configuration, window=settings.stream_window),
                    socket,
                    peer=peer or (endpoint.host, endpoint.port),
                    server=False,
                    settings=settings,
                    observer=observer,
                    auto_close=auto_close,
                    target=target,
                )
                connection.start()
                await connection.wait_established()
        except TimeoutError:
            await _discard(connection, socket)
            raise ConnectFailed(
                f"connecting to {target} timed out after {timeout} s "
                f"(raise the connect_timeout option if the peer is slow to answer)"
            ) from None
        except NetweaveError:
            await _discard(connection, socket)
            raise
        except BaseException:  # cancelled: release without waiting
            if connection is not None:
                connection.abort()
            elif socket is not None:
                socket.close()
            raise
        return connection

    async def listen(self, endpoint: Endpoint, *, observer: Observer | None = None) -> Listener:
        engines = load_engine()
        settings = QuicSettings.from_endpoint(endpoint)
        configuration = engines.server_configuration(
            options={**tls_options(endpoint), **_quic_only(endpoint)},
            window=settings.stream_window,
            idle_timeout=settings.idle_timeout,
        )
        target = f"quic://{endpoint.address}"
        loop = asyncio.get_running_loop()
        with map_os_errors(during="listen", target=target):
            _, socket = await loop.create_datagram_endpoint(
                QuicSocket, local_addr=(endpoint.host, endpoint.port)
            )
        port = socket.local[1] if isinstance(socket.local, tuple) else endpoint.port
        return QuicListener(
            socket,
            engine=engines,
            configuration=configuration,
            settings=settings,
            url=f"quic://{format_host_port(endpoint.host, port)}",
            observer=observer,
        )


def _quic_only(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "max_datagram_frame_size": endpoint.option("max_datagram_frame_size"),
        "congestion_control": endpoint.option("congestion_control"),
    }


async def _discard(connection: QuicConnection | None, socket: QuicSocket | None) -> None:
    """Release what a failed connect made: the connection and its UDP socket."""
    if connection is not None:
        connection.abort()
    if socket is not None:
        socket.close()
        await socket.wait_closed()
