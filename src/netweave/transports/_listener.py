"""Transports built on asyncio stream servers (TCP, Unix, simulated TCP).

Two pieces shared by those transports:

* :class:`AsyncioListener` — the accept queue. asyncio accepts eagerly;
  accepted connections wait in a queue of at most ``backlog`` entries until
  :meth:`~AsyncioListener.accept` takes them. Beyond that, new connections are
  aborted (and counted in ``refused``) so memory stays bounded while nobody
  accepts.
* :class:`AsyncioStreamTransport` — ``connect`` and ``listen`` written once:
  the connect timeout, the translation of ``OSError``, the per-connection
  :class:`~._asyncio_stream.AsyncioStreamConnection`. A subclass says only how
  to open a connection and a server on its kind of address, and may configure
  each new connection (socket options) and clean up after its server.

Rules of this file: ``OSError`` is translated here (``ConnectFailed`` while
connecting, ``ListenFailed`` while binding); a connection whose configuration
fails is aborted, never handed out half set up.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, final

from ..endpoints import Endpoint, Option
from ..errors import (
    ClosedResourceError,
    ConnectFailed,
    UsageError,
    map_os_errors,
    translate_os_error,
)
from ..observe import Observer
from ._asyncio_stream import AsyncioStreamConnection
from .base import (
    DEFAULT_READ_HIGH_WATER,
    DEFAULT_WRITE_HIGH_WATER,
    Listener,
    StreamConnection,
    StreamTransport,
)

__all__ = ["STREAM_OPTIONS", "AsyncioListener", "AsyncioStreamTransport", "parse_count"]


def parse_count(text: str) -> int:
    """A whole number of at least 1 (``128``)."""
    stripped = text.strip()
    if not stripped.isdigit() or int(stripped) < 1:
        raise ValueError(f"expected a whole number of at least 1, got {text!r}")
    return int(stripped)


#: The options every asyncio stream transport accepts.
STREAM_OPTIONS: Final[Mapping[str, Option[Any]]] = {
    "connect_timeout": Option.seconds(10.0, "seconds to wait for a connection to be made"),
    "backlog": Option(parse_count, 128, "connections queued for accept() before refusing more"),
    "write_high_water": Option.size(DEFAULT_WRITE_HIGH_WATER, "send() waits above this"),
    "read_high_water": Option.size(DEFAULT_READ_HIGH_WATER, "stop reading above this"),
}

ConnectionFactory = Callable[[], AsyncioStreamConnection]


@final
class AsyncioListener(Listener):
    """Accept queue fed by :meth:`offer`, which the protocol factory's connections call.

    ``extra("sockets")`` gives the listening sockets where real ones exist.
    """

    def __init__(self, *, url: str, backlog: int) -> None:
        self._url = url
        self._backlog = backlog
        self._server: asyncio.AbstractServer | None = None
        self._on_close: Callable[[], None] | None = None
        self._queue: deque[StreamConnection] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        #: Connections aborted because ``backlog`` of them already waited for accept().
        self.refused = 0

    def attach(
        self,
        server: asyncio.AbstractServer,
        url: str,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """Bind this listener to the started asyncio server and its real URL.

        ``on_close`` runs once the server stopped listening (e.g. to unlink a socket file).
        """
        self._server = server
        self._url = url
        self._on_close = on_close

    def offer(self, connection: StreamConnection) -> None:
        """Called when a connection is made: queue it, or abort it if the queue is full."""
        if self._closed or len(self._queue) >= self._backlog:
            self.refused += 1
            connection.abort()
            return
        self._queue.append(connection)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def accept(self) -> StreamConnection:
        while not self._queue:
            if self._closed:
                raise ClosedResourceError(f"listener {self._url} is closed")
            if self._waiter is not None:
                raise UsageError(f"listener {self._url}: another task is already accepting")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        while self._queue:
            self._queue.popleft().abort()
        if self._server is not None:
            # Server.close() stops listening at once. Server.wait_closed() is not
            # awaited: since Python 3.12 it also waits for every accepted
            # connection, which stay open (they belong to the caller).
            self._server.close()
        if self._on_close is not None:
            self._on_close()
        # Let the loop finish releasing the listening sockets (uvloop closes
        # handles on its next iteration), so the address is free on return.
        await asyncio.sleep(0)

    @property
    def url(self) -> str:
        return self._url

    def extra(self, name: str, default: Any = None) -> Any:
        if name == "sockets" and self._server is not None:
            return tuple(getattr(self._server, "sockets", None) or ())
        return default


class AsyncioStreamTransport(StreamTransport):
    """``connect``/``listen`` for a scheme served by asyncio stream servers.

    Subclasses implement :meth:`_open` and :meth:`_serve` (one asyncio call
    each) and :meth:`_url_of`, and may override :meth:`_configure` (applied to
    every new connection, both sides), :meth:`_prepare_listen` and
    :meth:`_cleanup_for`. Their ``options`` must include :data:`STREAM_OPTIONS`.
    """

    @abstractmethod
    async def _open(
        self, factory: ConnectionFactory, endpoint: Endpoint
    ) -> tuple[asyncio.BaseTransport, AsyncioStreamConnection]:
        """Open one client connection (``loop.create_connection`` or the like)."""

    @abstractmethod
    async def _serve(
        self, factory: ConnectionFactory, endpoint: Endpoint
    ) -> asyncio.AbstractServer:
        """Start a server (``loop.create_server`` or the like)."""

    @abstractmethod
    def _url_of(self, server: asyncio.AbstractServer, endpoint: Endpoint) -> str:
        """The URL that reaches ``server`` (with the real port when 0 was asked)."""

    def _configure(self, connection: AsyncioStreamConnection, endpoint: Endpoint) -> None:
        """Apply per-connection settings; may raise ``OSError``."""

    async def _prepare_listen(self, endpoint: Endpoint) -> None:
        """Run before binding; raises ``ListenFailed`` when the address cannot be used."""

    def _cleanup_for(
        self, server: asyncio.AbstractServer, endpoint: Endpoint
    ) -> Callable[[], None] | None:
        """Run once bound: return what to do after the listener stopped listening."""
        return None

    def _factory(
        self,
        endpoint: Endpoint,
        observer: Observer | None,
        role: str,
        on_made: Callable[[AsyncioStreamConnection], None] | None = None,
    ) -> ConnectionFactory:
        write_high_water = endpoint.option("write_high_water")
        read_high_water = endpoint.option("read_high_water")
        scheme = self.scheme

        def factory() -> AsyncioStreamConnection:
            return AsyncioStreamConnection(
                scheme=scheme,
                role=role,
                observer=observer,
                write_high_water=write_high_water,
                read_high_water=read_high_water,
                on_made=on_made,
            )

        return factory

    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> StreamConnection:
        target = f"{self.scheme}://{endpoint.address}"  # no query: options are noise here
        timeout = endpoint.option("connect_timeout")
        factory = self._factory(endpoint, observer, "client")
        try:
            async with asyncio.timeout(timeout):
                with map_os_errors(during="connect", target=target):
                    _, connection = await self._open(factory, endpoint)
        except TimeoutError:
            raise ConnectFailed(
                f"connecting to {target} timed out after {timeout} s "
                f"(raise the connect_timeout option if the peer is slow to answer)"
            ) from None
        try:
            self._configure(connection, endpoint)
        except OSError as exc:
            connection.abort()
            raise translate_os_error(exc, during="connect", target=target) from exc
        return connection

    async def listen(self, endpoint: Endpoint, *, observer: Observer | None = None) -> Listener:
        target = f"{self.scheme}://{endpoint.address}"  # no query: options are noise here
        listener = AsyncioListener(url=target, backlog=endpoint.option("backlog"))

        def made(connection: AsyncioStreamConnection) -> None:
            try:
                self._configure(connection, endpoint)
            except OSError:
                connection.abort()  # the peer sees a reset; we never hand it out
                return
            listener.offer(connection)

        await self._prepare_listen(endpoint)
        with map_os_errors(during="listen", target=target):
            server = await self._serve(self._factory(endpoint, observer, "server", made), endpoint)
        listener.attach(
            server, self._url_of(server, endpoint), on_close=self._cleanup_for(server, endpoint)
        )
        return listener
