"""The transport contracts: where all I/O in netweave lives.

Four abstract classes, one per role:

* :class:`StreamConnection` — a reliable, ordered, bidirectional byte stream
  (TCP, Unix, TLS, a QUIC stream, an in-memory pipe, a simulated TCP link).
* :class:`Listener` — accepts incoming stream connections.
* :class:`DatagramEndpoint` — unreliable messages with preserved boundaries (UDP).
* :class:`StreamTransport` / :class:`DatagramTransport` — the plug-in factories,
  keyed by URL scheme, that open connections and listeners for an
  :class:`~netweave.endpoints.Endpoint`.

Rules of this file: behaviour is stated in the docstrings, and
:mod:`netweave.testing` checks every implementation against them. Errors are
netweave errors only (see :mod:`netweave.errors`); ``OSError`` never escapes a
transport.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

if TYPE_CHECKING:
    from ..endpoints import Endpoint, Option
    from ..observe import Observer

__all__ = [
    "Address",
    "DatagramEndpoint",
    "DatagramTransport",
    "Listener",
    "StreamConnection",
    "StreamTransport",
    "Transport",
]

#: A datagram peer address: ``(host, port)`` for IP transports, a name for memory ones.
Address = tuple[Any, ...] | str

#: Default high-water mark of a connection's write buffer, in bytes.
DEFAULT_WRITE_HIGH_WATER = 256 * 1024
#: Default bound on bytes received but not yet consumed by ``receive``.
DEFAULT_READ_HIGH_WATER = 256 * 1024


class StreamConnection(ABC):
    """A reliable, ordered, bidirectional byte stream.

    Ordering and boundaries: every byte passed to :meth:`send` arrives once, in
    order, unless the connection breaks; chunk boundaries are *not* preserved —
    one ``send`` may arrive as several ``receive`` results and several as one.

    End of stream: after the peer calls :meth:`send_eof` or :meth:`close`,
    :meth:`receive` returns any data still buffered and then ``b""``, and keeps
    returning ``b""`` on every later call. Our own side can still send after the
    peer's end of stream (half-close), until either side closes.

    Errors: ``ClosedResourceError`` when *our* side already closed or aborted the
    connection (or, for ``send``, called ``send_eof``); ``ConnectionBroken`` when
    the peer reset it or the link died. Nothing else escapes.

    Backpressure: ``send`` returns once the data is accepted; it awaits while
    the write buffer is above its high-water mark, so a slow reader slows the
    writer down instead of growing memory. Implementations may hold sent data
    briefly to coalesce small writes; held data is handed to the network before
    the event loop's next iteration ends, before ``receive`` waits, and on
    ``close``.

    Received data not yet consumed is bounded too: an implementation stops
    reading from the network (the peer's writes then block) once its receive
    buffer passes its high-water mark.
    """

    @abstractmethod
    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (may be empty, which sends nothing).

        Raises ``ClosedResourceError`` after our ``send_eof``/``close``/``abort``,
        ``ConnectionBroken`` if the peer reset the connection.
        """

    def send_nowait(self, data: bytes, *, more: bool = False) -> bool:
        """Queue ``data`` without waiting, if the transport can; the fast path of :meth:`send`.

        Returns ``True`` when the data was accepted (exactly as ``send`` would
        have), ``False`` when the caller must ``await send(data)`` instead — the
        write buffer is above its high-water mark, the connection is closed or
        broken (``send`` then raises), or the transport has no fast path (the
        default). ``more=True`` hints that the caller is about to send again (as
        ``MSG_MORE`` does), so the transport may hold the data to coalesce it with
        what follows; held data is still handed over before the loop's next
        iteration ends, before ``receive`` waits, and on ``close``.
        """
        return False

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> bool:
        """Switch to push delivery, if the transport can; the fast path of :meth:`receive`.

        While a receiver is set, every chunk that arrives is handed to
        ``receiver(chunk)`` from the transport's own callback, in order, instead
        of waiting for :meth:`receive` (which then raises ``UsageError``); chunks
        already buffered are handed over first, soon after the call.
        ``receiver(b"")`` is called once when no more data will arrive (end of
        stream, reset, or our own close). While the write buffer is above its
        high-water mark the transport stops reading, so a receiver that answers
        every chunk cannot make memory grow. ``None`` switches back to
        :meth:`receive`. Returns ``False`` when the transport has no push
        delivery (the default); the caller then reads with :meth:`receive`.
        """
        return False

    @abstractmethod
    async def receive(self, max_bytes: int | None = None) -> bytes:
        """Return the next chunk: at least one byte, at most ``max_bytes`` if given.

        Returns ``b""`` once the peer has ended its side of the stream and all
        data before the end was received. Raises ``ClosedResourceError`` if our
        side closed the connection, ``ConnectionBroken`` if it was reset. If the
        call is cancelled, no data is lost: it stays for the next call.
        Only one task may wait in ``receive`` at a time (a second one gets
        ``UsageError``); ``max_bytes`` below 1 raises ``UsageError`` too.
        """

    @abstractmethod
    async def send_eof(self) -> None:
        """Flush and end our sending side (TCP FIN); receiving continues. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Close gracefully: flush what was sent, then release the connection.

        Idempotent and safe to call concurrently; never raises for a peer that
        already went away. After it returns every resource is released; a
        ``receive`` waiting in another task gets ``ClosedResourceError``.
        """

    @abstractmethod
    def abort(self) -> None:
        """Close at once, discarding unsent data; the peer sees a reset where the
        transport has one. Idempotent, never raises, usable from a sync context."""

    @property
    @abstractmethod
    def local_address(self) -> str:
        """Our end, as text (``"127.0.0.1:40000"``, ``"[::1]:9000"``, a path, a name)."""

    @property
    @abstractmethod
    def remote_address(self) -> str:
        """The peer's end, as text in the same form as :attr:`local_address`."""

    @property
    @abstractmethod
    def is_closing(self) -> bool:
        """True once our side called ``close`` or ``abort`` or the connection broke."""

    def extra(self, name: str, default: Any = None) -> Any:
        """Transport-specific information (``"socket"``, ``"peercert"``, ...)."""
        return default

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Listener(ABC):
    """Accepts incoming stream connections on a bound address.

    Closing a listener stops accepting; connections already accepted are the
    caller's and stay open. Connections that arrived but were not accepted
    before ``close`` are aborted. ``async for conn in listener`` accepts until the
    listener is closed.
    """

    @abstractmethod
    async def accept(self) -> StreamConnection:
        """Wait for and return the next connection; ``ClosedResourceError`` once closed."""

    @abstractmethod
    async def close(self) -> None:
        """Stop listening and release the address. Idempotent."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL that reaches this listener, with the real port when 0 was asked."""

    def extra(self, name: str, default: Any = None) -> Any:
        """Transport-specific information (``"sockets"``: the listening sockets, ...)."""
        return default

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamConnection:
        from ..errors import ClosedResourceError

        try:
            return await self.accept()
        except ClosedResourceError:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class DatagramEndpoint(ABC):
    """Sends and receives whole datagrams; boundaries are preserved.

    Delivery is best effort: a datagram may be lost, duplicated or reordered by
    the network. A datagram larger than :attr:`max_datagram_size` is refused
    with ``UsageError`` before anything is sent. Received datagrams wait in a
    bounded queue; when it is full, new arrivals are dropped (as an OS does)
    and counted in :attr:`dropped`.

    A *connected* endpoint (from ``DatagramTransport.connect``) has a
    :attr:`remote` address, sends there when no address is given and receives
    only from there.
    """

    @abstractmethod
    async def send_to(self, data: bytes, address: Address | None = None) -> None:
        """Send one datagram to ``address`` (or to the connected peer when ``None``)."""

    @abstractmethod
    async def receive_from(self) -> tuple[bytes, Address]:
        """Wait for the next datagram; ``ClosedResourceError`` once closed.

        An endpoint that ends on its own (a server's per-peer endpoint after its
        idle timeout) raises ``EndOfStream``.

        On a connected endpoint, an ICMP error from the peer (port unreachable)
        raises ``ConnectionBroken``.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the endpoint; a waiting ``receive_from`` gets ``ClosedResourceError``.
        Idempotent."""

    @abstractmethod
    def abort(self) -> None:
        """Release the endpoint at once, from sync code too. Idempotent, never raises."""

    @property
    @abstractmethod
    def max_datagram_size(self) -> int:
        """The largest payload :meth:`send_to` accepts, in bytes."""

    @property
    @abstractmethod
    def local_address(self) -> Address:
        """Our bound address."""

    @property
    @abstractmethod
    def remote(self) -> Address | None:
        """The connected peer, or ``None`` for an unconnected endpoint."""

    @property
    @abstractmethod
    def url(self) -> str:
        """A URL that reaches this endpoint."""

    @property
    def dropped(self) -> int:
        """Datagrams dropped because the receive queue was full."""
        return 0

    def extra(self, name: str, default: Any = None) -> Any:
        """Transport-specific information (``"socket"``, ...)."""
        return default

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class StreamTransport(ABC):
    """Plug-in factory for a stream scheme (``tcp``, ``unix``, ``mem``...).

    ``options`` lists the query-string options the scheme accepts; the endpoint
    parser rejects any other. Register an instance under its scheme through the
    ``netweave.transports`` entry-point group.
    """

    kind: ClassVar[Literal["stream"]] = "stream"
    scheme: ClassVar[str]
    options: ClassVar[Mapping[str, Option[Any]]] = {}
    #: Whether URLs of this scheme carry ``host:port`` (else a path or a name).
    uses_host_port: ClassVar[bool] = True

    @abstractmethod
    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> StreamConnection:
        """Open a connection; ``ConnectFailed`` when it cannot be made
        (``connect_timeout`` elapsed, refused, unresolvable)."""

    @abstractmethod
    async def listen(self, endpoint: Endpoint, *, observer: Observer | None = None) -> Listener:
        """Start listening; ``ListenFailed`` when the address cannot be bound."""


class DatagramTransport(ABC):
    """Plug-in factory for a datagram scheme (``udp``...)."""

    kind: ClassVar[Literal["datagram"]] = "datagram"
    scheme: ClassVar[str]
    options: ClassVar[Mapping[str, Option[Any]]] = {}
    uses_host_port: ClassVar[bool] = True

    @abstractmethod
    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> DatagramEndpoint:
        """An endpoint connected to ``endpoint`` (sends there, receives only from there)."""

    @abstractmethod
    async def bind(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> DatagramEndpoint:
        """An unconnected endpoint bound to ``endpoint``'s address."""


Transport = StreamTransport | DatagramTransport
