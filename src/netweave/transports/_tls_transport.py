"""``tls://host:port``: :class:`TlsTransport` (TCP plus the TLS layer) and :class:`TlsListener`.

Options (beside every ``tcp://`` option): ``ca`` (PEM file of CAs to trust; the
system's by default), ``cert``/``key`` (our certificate: required to listen,
enables mutual TLS when connecting), ``verify`` (default on; ``verify=0`` turns
certificate checks off), ``server_hostname`` (the name checked and sent as SNI;
the URL's host by default), ``alpn`` (comma-separated protocols, in preference
order) and ``handshake_timeout`` (seconds, default 10). A listener given ``ca``
requires client certificates issued by it (mutual TLS). The connection itself
is :class:`~netweave.transports.TlsConnection` (``_tls.py``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Final, final

from ..endpoints import Endpoint, Option
from ..errors import ClosedResourceError, ConnectFailed, NetweaveError, PeerUnresponsive, UsageError
from ..layers import tls_client_context, tls_server_context
from ..observe import ConnectionClosed, Observer
from ._tcp import TcpTransport
from ._tls import DEFAULT_HANDSHAKE_TIMEOUT, TlsConnection, start_tls
from .base import Listener, StreamConnection, StreamTransport

__all__ = ["TLS_OPTIONS", "TlsListener", "TlsTransport", "parse_alpn"]


@final
class TlsListener(Listener):
    """Accepts connections from ``inner`` and hands them out once their TLS handshake
    succeeded. Handshakes run concurrently (a slow client holds up nobody); at
    most ``backlog`` are in progress or waiting for :meth:`accept`. Failed and
    timed-out handshakes are counted in :attr:`failed_handshakes` and reported to
    the observer as ``ConnectionClosed(reason="tls-handshake-failed")``.
    """

    def __init__(
        self,
        inner: Listener,
        context: ssl.SSLContext,
        *,
        url: str,
        backlog: int,
        handshake_timeout: float | None,
        observer: Observer | None = None,
    ) -> None:
        self._inner = inner
        self._context = context
        self._url = url
        self._backlog = backlog
        self._handshake_timeout = handshake_timeout
        self._observer = observer
        self._ready: deque[TlsConnection] = deque()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Event = asyncio.Event()
        self._room.set()
        self._closed = False
        self._error: NetweaveError | None = None
        #: Handshakes that failed or timed out (those connections were closed).
        self.failed_handshakes = 0
        self._acceptor = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        while True:
            await self._room.wait()
            try:
                conn = await self._inner.accept()
            except NetweaveError as exc:
                if not isinstance(exc, ClosedResourceError):
                    self._error = exc
                self._wake()
                return
            task = asyncio.get_running_loop().create_task(self._handshake(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshake_done)
            self._update_room()

    async def _handshake(self, conn: StreamConnection) -> None:
        try:
            tls = await start_tls(
                conn,
                self._context,
                server_side=True,
                handshake_timeout=self._handshake_timeout,
            )
        except NetweaveError as exc:
            self.failed_handshakes += 1
            if self._observer is not None:
                self._observer(
                    ConnectionClosed(f"tls {conn.remote_address}", "tls-handshake-failed", str(exc))
                )
            return
        if self._closed:
            tls.abort()
            return
        self._ready.append(tls)
        self._wake()

    def _handshake_done(self, task: asyncio.Task[None]) -> None:
        self._handshakes.discard(task)
        self._update_room()

    def _update_room(self) -> None:
        if len(self._handshakes) + len(self._ready) < self._backlog:
            self._room.set()
        else:
            self._room.clear()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def accept(self) -> StreamConnection:
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self._closed or self._acceptor.done():
                raise ClosedResourceError(f"listener {self._url} is closed")
            if self._waiter is not None:
                raise UsageError(f"listener {self._url}: another task is already accepting")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        conn = self._ready.popleft()
        self._update_room()
        return conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._acceptor.cancel()
        for task in list(self._handshakes):
            task.cancel()
        pending = {self._acceptor, *self._handshakes}
        await asyncio.wait(pending)
        while self._ready:
            self._ready.popleft().abort()
        self._wake()
        await self._inner.close()

    @property
    def url(self) -> str:
        return self._url

    def extra(self, name: str, default: Any = None) -> Any:
        return self._inner.extra(name, default)


def parse_alpn(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError("expected protocol names separated by commas, such as h2,http/1.1")
    return names


def _parse_text(text: str) -> str:
    if not text:
        raise ValueError("expected a non-empty value")
    return text


TLS_OPTIONS: Final[dict[str, Option[Any]]] = {
    "ca": Option(_parse_text, None, "PEM file of CA certificates to trust (system CAs if absent)"),
    "cert": Option(_parse_text, None, "PEM file of our certificate chain (required to listen)"),
    "key": Option(_parse_text, None, "PEM file of our private key (if not in cert)"),
    "verify": Option.boolean(True, "verify the peer's certificate (verify=0 for tests only)"),
    "server_hostname": Option(_parse_text, None, "name to verify and send as SNI (URL host)"),
    "alpn": Option(parse_alpn, (), "ALPN protocols, comma-separated, in preference order"),
    "handshake_timeout": Option.seconds(
        DEFAULT_HANDSHAKE_TIMEOUT, "seconds the TLS handshake may take"
    ),
}


@final
class TlsTransport(StreamTransport):
    """``tls://host:port``: TCP plus the TLS layer (see the module docstring).

    ``client_context`` / ``server_context`` replace the contexts built from URL
    options (for certificates held in memory, or custom settings); register
    such an instance with ``Registry.register_transport(..., replace=True)``.

    ``connect`` raises ``ConnectFailed`` when the peer cannot be reached or the
    handshake times out, and :class:`~netweave.errors.TlsError` when the
    handshake fails (for example the server's certificate is not trusted).
    """

    scheme: ClassVar[str] = "tls"
    options: ClassVar[Mapping[str, Option[Any]]] = {**TcpTransport.options, **TLS_OPTIONS}

    def __init__(
        self,
        *,
        client_context: ssl.SSLContext | None = None,
        server_context: ssl.SSLContext | None = None,
    ) -> None:
        self._client_context = client_context
        self._server_context = server_context
        self._tcp = TcpTransport()

    def _client(self, endpoint: Endpoint) -> ssl.SSLContext:
        if self._client_context is not None:
            return self._client_context
        return tls_client_context(
            ca=endpoint.option("ca"),
            cert=endpoint.option("cert"),
            key=endpoint.option("key"),
            verify=endpoint.option("verify"),
            alpn=endpoint.option("alpn"),
        )

    def _server(self, endpoint: Endpoint) -> ssl.SSLContext:
        if self._server_context is not None:
            return self._server_context
        cert = endpoint.option("cert")
        if cert is None:
            raise UsageError(
                f"{endpoint.url}: a TLS listener needs its certificate: add "
                f"?cert=server.pem&key=server.key"
            )
        return tls_server_context(
            cert=cert,
            key=endpoint.option("key"),
            ca=endpoint.option("ca"),
            alpn=endpoint.option("alpn"),
        )

    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> StreamConnection:
        context = self._client(endpoint)
        # An IP address is checked against the certificate's IP entries; no SNI is sent.
        hostname = endpoint.option("server_hostname") or endpoint.host
        inner = await self._tcp.connect(endpoint, observer=observer)
        timeout = endpoint.option("handshake_timeout")
        try:
            return await start_tls(
                inner,
                context,
                server_side=False,
                server_hostname=hostname,
                handshake_timeout=timeout,
            )
        except PeerUnresponsive as exc:
            raise ConnectFailed(f"connecting to {endpoint.url}: {exc}") from None
        except UsageError:
            inner.abort()
            raise

    async def listen(self, endpoint: Endpoint, *, observer: Observer | None = None) -> Listener:
        context = self._server(endpoint)
        inner = await self._tcp.listen(endpoint, observer=observer)
        url = inner.url
        if url.startswith("tcp://"):
            url = "tls://" + url[len("tcp://") :]
        return TlsListener(
            inner,
            context,
            url=url,
            backlog=endpoint.option("backlog"),
            handshake_timeout=endpoint.option("handshake_timeout"),
            observer=observer,
        )
