"""``mem://name`` — in-process stream connections; no sockets, no threads.

Names live in one namespace per running event loop, held by the
:class:`MemTransport` instance, so tests on different loops never collide
and nothing global exists before the first listener.

Options (each describes *this* end of a connection: the listener's URL its
accepted ends, the connecting URL the client end):

* ``chunks`` — comma list of sizes such as ``1,3,7``, cycled: each
  ``receive`` on this end returns at most the next size (exactly that many
  when enough data waits), so code can be tested against fragmentation;
* ``capacity`` — bytes this end holds unread before the peer's ``send``
  waits (default 256k): that is backpressure;
* ``backlog`` — connections a listener queues for ``accept`` (default 128);
  connecting to a listener with a full queue raises ``ConnectFailed``.

Rules of this file: everything happens synchronously inside method calls; a
``send`` puts its bytes straight into the peer's buffer, then waits while that
buffer holds more than the peer's capacity. ``close`` gives the peer its data
then end of stream; ``abort`` gives it its data then ``ConnectionBroken``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Any, ClassVar, Final, final
from urllib.parse import quote

from ..endpoints import Endpoint, Option, parse_size
from ..errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    ListenFailed,
    UsageError,
)
from ..observe import BytesReceived, BytesSent, ConnectionClosed, ConnectionOpened, Observer
from ._listener import parse_count
from .base import DEFAULT_READ_HIGH_WATER, Listener, StreamConnection, StreamTransport

__all__ = ["MEM_OPTIONS", "MemTransport", "MemoryStreamConnection", "parse_chunks"]

#: Default bound on unread bytes at each end of a memory connection.
DEFAULT_CAPACITY: Final = DEFAULT_READ_HIGH_WATER


def parse_chunks(text: str) -> tuple[int, ...]:
    """``"1,3,7"`` -> ``(1, 3, 7)``: receive sizes to cycle through, each at least 1."""
    sizes: list[int] = []
    for item in text.split(","):
        stripped = item.strip()
        if not stripped.isdigit() or int(stripped) < 1:
            raise ValueError(
                f"expected a comma list of sizes of at least 1, such as 1,3,7; got {text!r}"
            )
        sizes.append(int(stripped))
    return tuple(sizes)


def _parse_capacity(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise ValueError(f"capacity must be at least 1 byte, got {text!r}")
    return value


MEM_OPTIONS: Final[dict[str, Option[Any]]] = {
    "chunks": Option(parse_chunks, None, "cycle receive() sizes through this list (1,3,7)"),
    "capacity": Option(_parse_capacity, DEFAULT_CAPACITY, "unread bytes held before send waits"),
    "backlog": Option(parse_count, 128, "connections queued for accept() before refusing more"),
}


@final
class MemoryStreamConnection(StreamConnection):
    """One end of an in-memory byte stream; create both ends with :meth:`pair`.

    Behaves as :class:`~netweave.transports.StreamConnection` states, with a
    reset: after the peer's ``abort`` our ``receive`` returns what it had
    already sent and then raises ``ConnectionBroken``. After the peer's
    ``close`` our ``send`` raises ``ConnectionBroken`` (nobody will read it),
    while after its ``send_eof`` we can still send (half-close).
    """

    def __init__(
        self,
        *,
        local: str,
        remote: str,
        chunks: tuple[int, ...] | None = None,
        capacity: int = DEFAULT_CAPACITY,
        observer: Observer | None = None,
        role: str = "client",
    ) -> None:
        if capacity < 1:
            raise UsageError(f"capacity must be at least 1 byte, got {capacity}")
        if chunks is not None and (not chunks or min(chunks) < 1):
            raise UsageError(f"chunks must be a non-empty list of sizes >= 1, got {chunks!r}")
        self._loop = asyncio.get_running_loop()
        self._peer: MemoryStreamConnection = self
        self._local = local
        self._remote = remote
        self._label = f"mem {local}->{remote}"
        self._chunks = chunks
        self._chunk_index = 0
        self._capacity = capacity
        self._observer = observer
        self._role = role
        # what the peer sent us, not yet received
        self._buffer = bytearray()
        self._reader: asyncio.Future[None] | None = None
        # peer tasks waiting in send() for room in our buffer
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._peer_eof = False
        self._peer_closed = False
        self._peer_reset = False
        self._eof_sent = False
        self._closed = False

    @classmethod
    def pair(
        cls,
        *,
        chunks: tuple[int, ...] | None = None,
        capacity: int = DEFAULT_CAPACITY,
        names: tuple[str, str] = ("memory-a", "memory-b"),
        peer_chunks: tuple[int, ...] | None = None,
        peer_capacity: int | None = None,
        observer: Observer | None = None,
        peer_observer: Observer | None = None,
    ) -> tuple[MemoryStreamConnection, MemoryStreamConnection]:
        """Two connected ends, ``(a, b)``; call from a running event loop.

        ``chunks``/``capacity`` describe end ``a``, ``peer_chunks``/``peer_capacity``
        end ``b`` (the same as ``a`` when not given).
        """
        a = cls(
            local=names[0],
            remote=names[1],
            chunks=chunks,
            capacity=capacity,
            observer=observer,
            role="client",
        )
        b = cls(
            local=names[1],
            remote=names[0],
            chunks=chunks if peer_chunks is None else peer_chunks,
            capacity=capacity if peer_capacity is None else peer_capacity,
            observer=peer_observer,
            role="server",
        )
        a._peer, b._peer = b, a
        for end in (a, b):
            if end._observer is not None:
                end._observer(
                    ConnectionOpened(end._label, "mem", end._local, end._remote, end._role)
                )
        return a, b

    # -- StreamConnection -------------------------------------------------------

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self._check_can_send()
        if not data:
            return
        peer = self._peer
        peer._buffer += data
        peer._wake_reader()
        if self._observer is not None:
            self._observer(BytesSent(self._label, len(data)))
        while len(peer._buffer) > peer._capacity:
            room = self._loop.create_future()
            peer._room_waiters.append(room)
            await room
            if self._closed:
                raise ClosedResourceError(f"{self._label}: closed while waiting to send")
            self._check_peer()

    async def receive(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise UsageError(f"max_bytes must be at least 1, got {max_bytes}")
        while True:
            if self._closed:
                raise ClosedResourceError(f"{self._label}: receive after close on our side")
            if self._buffer:
                return self._take(max_bytes)
            if self._peer_reset:
                raise ConnectionBroken(f"connection {self._label} was reset by the peer")
            if self._peer_eof:
                return b""
            if self._reader is not None:
                raise UsageError(f"{self._label}: another task is already receiving")
            reader = self._loop.create_future()
            self._reader = reader
            try:
                await reader
            finally:
                if self._reader is reader:
                    self._reader = None

    async def send_eof(self) -> None:
        if self._eof_sent or self._closed:
            return
        self._eof_sent = True
        peer = self._peer
        peer._peer_eof = True
        peer._wake_reader()

    async def close(self) -> None:
        self._shut(reset=False)

    def abort(self) -> None:
        self._shut(reset=True)

    @property
    def local_address(self) -> str:
        return self._local

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def is_closing(self) -> bool:
        return self._closed or self._peer_reset

    def extra(self, name: str, default: Any = None) -> Any:
        if name == "capacity":
            return self._capacity
        if name == "chunks":
            return self._chunks
        return default

    # -- internals --------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._closed or self._eof_sent:
            what = "close" if self._closed else "send_eof"
            raise ClosedResourceError(f"{self._label}: cannot send after {what} on our side")
        self._check_peer()

    def _check_peer(self) -> None:
        if self._peer_reset:
            raise ConnectionBroken(f"connection {self._label} was reset by the peer")
        if self._peer_closed:
            raise ConnectionBroken(
                f"connection {self._label}: the peer closed it, nothing more can be delivered"
            )

    def _take(self, max_bytes: int | None) -> bytes:
        buffer = self._buffer
        size = len(buffer)
        if self._chunks is not None:
            size = min(size, self._chunks[self._chunk_index])
            self._chunk_index = (self._chunk_index + 1) % len(self._chunks)
        if max_bytes is not None:
            size = min(size, max_bytes)
        if size == len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:size])
            del buffer[:size]
        if len(buffer) <= self._capacity:
            self._wake_room_waiters()
        if self._observer is not None:
            self._observer(BytesReceived(self._label, len(data)))
        return data

    def _shut(self, *, reset: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._wake_reader()
        self._wake_room_waiters()  # the peer's senders: they now see we closed
        peer = self._peer
        if peer is not self:
            if reset:
                peer._peer_reset = True
            else:
                peer._peer_eof = True
                peer._peer_closed = True
            peer._wake_reader()
            peer._wake_room_waiters()  # our own senders: they now see we closed
        if self._observer is not None:
            reason = "local-abort" if reset else "local-close"
            self._observer(ConnectionClosed(self._label, reason))

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

    def _wake_room_waiters(self) -> None:
        waiters = self._room_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


@final
class _MemListener(Listener):
    """Accepts memory connections made to one name on one event loop."""

    def __init__(
        self,
        *,
        name: str,
        names: dict[str, _MemListener],
        endpoint: Endpoint,
        observer: Observer | None,
    ) -> None:
        self._name = name
        self._names = names
        self._chunks: tuple[int, ...] | None = endpoint.option("chunks")
        self._capacity: int = endpoint.option("capacity")
        self._backlog: int = endpoint.option("backlog")
        self._observer = observer
        self._queue: deque[MemoryStreamConnection] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._count = 0

    def connect(self, endpoint: Endpoint, observer: Observer | None) -> MemoryStreamConnection:
        if len(self._queue) >= self._backlog:
            raise ConnectFailed(
                f"cannot connect to {self.url}: {self._backlog} connections already wait "
                f"for accept() (raise the listener's backlog option, or accept faster)"
            )
        self._count += 1
        client, server = MemoryStreamConnection.pair(
            names=(f"{self._name}#{self._count}", self._name),
            chunks=endpoint.option("chunks"),
            capacity=endpoint.option("capacity"),
            peer_chunks=self._chunks,
            peer_capacity=self._capacity,
            observer=observer,
            peer_observer=self._observer,
        )
        self._queue.append(server)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return client

    async def accept(self) -> StreamConnection:
        while not self._queue:
            if self._closed:
                raise ClosedResourceError(f"listener {self.url} is closed")
            if self._waiter is not None:
                raise UsageError(f"listener {self.url}: another task is already accepting")
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
        if self._names.get(self._name) is self:
            del self._names[self._name]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        while self._queue:
            self._queue.popleft().abort()

    @property
    def url(self) -> str:
        return f"mem://{quote(self._name, safe='/')}"


@final
class MemTransport(StreamTransport):
    """In-process stream connections between a listener and connectors on one event loop."""

    scheme: ClassVar[str] = "mem"
    options = MEM_OPTIONS
    uses_host_port: ClassVar[bool] = False

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, _MemListener]
        ] = weakref.WeakKeyDictionary()

    def _names(self) -> dict[str, _MemListener]:
        loop = asyncio.get_running_loop()
        names = self._by_loop.get(loop)
        if names is None:
            names = self._by_loop[loop] = {}
        return names

    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> StreamConnection:
        listener = self._names().get(endpoint.path)
        if listener is None:
            raise ConnectFailed(
                f"cannot connect to mem://{endpoint.path}: nothing listens on that name "
                f"in this event loop (listen on it first)"
            )
        return listener.connect(endpoint, observer)

    async def listen(self, endpoint: Endpoint, *, observer: Observer | None = None) -> Listener:
        names = self._names()
        name = endpoint.path
        if name in names:
            raise ListenFailed(
                f"cannot listen on mem://{name}: the name is taken by another listener "
                f"in this event loop (pick another name or close that listener)"
            )
        listener = _MemListener(name=name, names=names, endpoint=endpoint, observer=observer)
        names[name] = listener
        return listener
