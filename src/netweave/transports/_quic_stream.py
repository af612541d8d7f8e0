"""One QUIC stream as a :class:`StreamConnection`, and a connection's datagrams as a
:class:`DatagramEndpoint`.

Both are views of a :class:`~._quic_connection.QuicConnection`, which feeds
them what its engine reported and sends what they queue. Neither does I/O
nor parses anything.

Rules of this file:

* ``send`` queues on the engine and asks the connection for one transmit
  before the loop's next iteration ends; it waits while more than
  ``write_high_water`` bytes of the stream are unsent (the peer's flow control
  or the congestion window holds them back). A larger send is queued a step
  at a time, so the engine never holds more than that plus one step.
* ``receive`` hands out what arrived in order; the engine grants the peer new
  credit as bytes are *read*, so unread data never exceeds the stream window.
* ``send_eof`` is the FIN; ``close`` is FIN plus STOP_SENDING (when the peer
  has not finished) and waits until the peer acknowledged everything;
  ``abort`` is RESET_STREAM plus STOP_SENDING.
* A waiting task is woken with a plain result; it then reads the state. No
  future ever holds an exception (none can go unretrieved).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, final

from ..errors import ClosedResourceError, ConnectionBroken, NetweaveError, UsageError
from ..observe import BytesReceived, BytesSent, ConnectionClosed, ConnectionOpened
from ._quic_options import ABORT_CODE, CLOSE_CODE
from .base import Address, DatagramEndpoint, StreamConnection

if TYPE_CHECKING:
    from ._quic_connection import QuicConnection
    from ._quic_engine import AioQuicStream

__all__ = ["QuicDatagrams", "QuicStream"]


@final
class QuicStream(StreamConnection):
    """A bidirectional QUIC stream; behaves as :class:`StreamConnection` states.

    The peer sees a stream once it is opened (before any data); the bytes of
    different streams never wait for each other. ``send_eof`` sends the FIN;
    ``abort`` resets the stream (the peer's ``receive`` and ``send`` raise
    ``ConnectionBroken``), leaving the connection's other streams alone.
    ``extra`` knows ``"quic_connection"`` (the :class:`QuicConnection`),
    ``"stream_id"``, ``"alpn_protocol"``, and the UDP socket's ``"socket"``,
    ``"sockname"`` and ``"peername"``.
    """

    def __init__(self, connection: QuicConnection, stream_id: int, state: AioQuicStream) -> None:
        self._conn = connection
        self._engine = connection._engine
        self._loop = connection._loop
        self._id = stream_id
        self._state = state
        self._hwm = connection._settings.write_high_water
        self._step = max(self._hwm, 64 * 1024)
        self._observer = connection._observer
        self._label = f"{connection._label} stream {stream_id}"
        # receive side
        self._rbuf: deque[bytes] = deque()
        self._consumed = 0
        self._eof = False
        self._recv_error: NetweaveError | None = None
        self._waiter: asyncio.Future[None] | None = None
        # send side
        self._written = 0
        self._fin_sent = False
        self._send_error: NetweaveError | None = None
        self._send_blocked = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # lifetime
        self._closed = False
        self._aborted = False
        self._reported = False
        self._close_done: asyncio.Future[None] | None = None
        #: Handed to the application (opened, or accepted); set by the connection.
        self.held = False
        #: The connection no longer routes anything to this stream.
        self.released = False
        if self._observer is not None:
            self._observer(
                ConnectionOpened(
                    self._label,
                    "quic",
                    connection.local_address,
                    connection.remote_address,
                    "server" if connection._server else "client",
                )
            )

    @property
    def connection(self) -> QuicConnection:
        """The QUIC connection this stream belongs to."""
        return self._conn

    @property
    def stream_id(self) -> int:
        """The QUIC stream ID (0, 4, 8... opened by the client; 1, 5, 9... by the server)."""
        return self._id

    # -- StreamConnection -----------------------------------------------------------

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_blocked:
            raise self._send_failure()
        if not data:
            return
        if len(data) > self._step:
            await self._send_in_steps(memoryview(data))
            return
        chunk = data if type(data) is bytes else bytes(data)
        self._engine.send(self._id, chunk)
        self._written += len(chunk)
        if self._observer is not None:
            self._observer(BytesSent(self._label, len(chunk)))
        self._conn._transmit_soon()
        if self._written - self._state.sender.highest_offset > self._hwm:
            await self._drain()

    async def _send_in_steps(self, view: memoryview) -> None:
        # aioquic copies what it is given: hand a large send over a step at a time,
        # so at most write_high_water plus one step waits in its buffer.
        step = self._step
        for start in range(0, len(view), step):
            if self._send_blocked:
                raise self._send_failure()
            piece = bytes(view[start : start + step])
            self._engine.send(self._id, piece)
            self._written += len(piece)
            if self._observer is not None:
                self._observer(BytesSent(self._label, len(piece)))
            self._conn._transmit_soon()
            if self._written - self._state.sender.highest_offset > self._hwm:
                await self._drain()

    def send_nowait(self, data: bytes, *, more: bool = False) -> bool:
        if (
            self._send_blocked
            or len(data) > self._step
            or self._written - self._state.sender.highest_offset > self._hwm
        ):
            return False
        if data:
            self._engine.send(self._id, data)
            self._written += len(data)
            if self._observer is not None:
                self._observer(BytesSent(self._label, len(data)))
            self._conn._transmit_soon()
        return True

    async def receive(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise UsageError(f"max_bytes must be at least 1, got {max_bytes}")
        while True:
            if self._closed:
                raise self._closed_error("receive")
            if self._rbuf:
                return self._take(max_bytes)
            if self._recv_error is not None:
                raise self._recv_error
            if self._eof:
                return b""
            if self._waiter is not None:
                raise UsageError(f"{self._label}: another task is already receiving")
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    async def send_eof(self) -> None:
        if self._fin_sent or self._closed:
            return
        if self._send_error is not None:
            raise self._send_error
        self._fin_sent = True
        self._send_blocked = True
        self._engine.send(self._id, b"", fin=True)
        self._conn._transmit_soon()

    async def close(self) -> None:
        done = self._close_done
        if done is not None:
            await asyncio.shield(done)
            await self._conn._socket_released()
            return
        done = self._close_done = self._loop.create_future()
        try:
            await self._close()
        except BaseException:
            self.abort()
            raise
        finally:
            done.set_result(None)
        await self._conn._socket_released()

    async def _close(self) -> None:
        already_aborted = self._aborted
        self._shut(aborted=False)
        if already_aborted or self._conn._ended:
            self._conn._release(self)
            return
        if not self._fin_sent and self._send_error is None:
            self._fin_sent = True
            try:
                self._engine.send(self._id, b"", fin=True)
            except ConnectionBroken:  # aioquic already dropped the stream: nothing to flush
                self._send_error = ConnectionBroken(f"{self._label}: the stream was reset")
        if not self._eof and self._recv_error is None:
            self._engine.stop(self._id, CLOSE_CODE)
        self._conn._transmit_soon()
        if self._fin_sent and self._send_error is None:
            try:
                async with asyncio.timeout(self._conn._settings.close_timeout):
                    await self._conn._until_sent(self)
            except TimeoutError:
                # The peer does not acknowledge (or read) what we sent: give up on it.
                self.abort()
                return
        if self._conn._release(self):
            await self._conn.close()

    def abort(self) -> None:
        if self._aborted:
            return
        self._shut(aborted=True)
        if not self._conn._ended:
            if not self._state.sender.is_finished and self._send_error is None:
                self._engine.reset(self._id, ABORT_CODE)
            if not self._eof and self._recv_error is None:
                self._engine.stop(self._id, ABORT_CODE)
            self._conn._transmit_soon()
        if self._conn._release(self):
            self._conn.abort()

    @property
    def local_address(self) -> str:
        return self._conn.local_address

    @property
    def remote_address(self) -> str:
        return self._conn.remote_address

    @property
    def is_closing(self) -> bool:
        return self._closed or self._recv_error is not None or self._send_error is not None

    def extra(self, name: str, default: Any = None) -> Any:
        if name == "quic_connection":
            return self._conn
        if name == "stream_id":
            return self._id
        return self._conn.extra(name, default)

    # -- fed by the connection ------------------------------------------------------

    def _on_data(self, data: bytes, fin: bool) -> None:
        if self._closed:
            return
        if data:
            self._rbuf.append(data)
            if self._observer is not None:
                self._observer(BytesReceived(self._label, len(data)))
        if fin:
            self._eof = True
            self._report("peer-eof", None)
        self._wake_receiver()

    def _on_reset(self, code: int) -> None:
        if self._closed or self._eof:
            return
        self._recv_error = ConnectionBroken(
            f"{self._label}: the peer reset the stream (error code {code})"
        )
        self._send_blocked = True
        self._report("peer-reset", str(self._recv_error))
        self._wake_receiver()

    def _on_stop_sending(self, code: int) -> None:
        if self._closed or (self._fin_sent and self._state.sender.is_finished):
            return
        self._send_error = ConnectionBroken(
            f"{self._label}: the peer stopped reading the stream (error code {code})"
        )
        self._send_blocked = True
        self._wake_writers()

    def _on_connection_end(self, error: NetweaveError) -> None:
        """The connection ended (``error`` says why); what was received stays readable."""
        if not self._eof and self._recv_error is None:
            self._recv_error = error
        if self._send_error is None:
            self._send_error = error
        self._send_blocked = True
        ours = isinstance(error, ClosedResourceError)
        self._report("local-close" if ours else "peer-reset", None if ours else str(error))
        self._wake_receiver()
        self._wake_writers()

    def _unsent(self) -> int:
        return self._written - self._state.sender.highest_offset

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- internals -----------------------------------------------------------------

    def _take(self, max_bytes: int | None) -> bytes:
        chunk = self._rbuf.popleft()
        if max_bytes is not None and len(chunk) > max_bytes:
            self._rbuf.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._consumed += len(chunk)
        if self._engine.consume(self._state, self._consumed):
            self._conn._transmit_soon()
        return chunk

    async def _drain(self) -> None:
        conn = self._conn
        while not self._send_blocked and self._unsent() > self._hwm:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            conn._blocked[self] = None
            await waiter
        if self._closed:
            raise self._closed_error("send")
        if self._send_error is not None:
            raise self._send_error

    def _shut(self, *, aborted: bool) -> None:
        self._closed = True
        self._send_blocked = True
        if aborted:
            self._aborted = True
            self._rbuf.clear()
        self._report("local-abort" if aborted else "local-close", None)
        self._wake_receiver()
        self._wake_writers()

    def _wake_receiver(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _report(self, reason: str, error: str | None) -> None:
        if self._observer is not None and not self._reported:
            self._reported = True
            self._observer(ConnectionClosed(self._label, reason, error))

    def _send_failure(self) -> NetweaveError:
        if self._closed:
            return self._closed_error("send")
        if self._fin_sent:
            return ClosedResourceError(f"{self._label}: cannot send after send_eof on our side")
        if self._send_error is not None:
            return self._send_error
        return ConnectionBroken(f"{self._label}: the stream was reset; nothing more can be sent")

    def _closed_error(self, operation: str) -> ClosedResourceError:
        how = "abort" if self._aborted else "close"
        return ClosedResourceError(f"{self._label}: cannot {operation} after {how} on our side")

    def __repr__(self) -> str:
        return f"<QuicStream {self._label}>"


@final
class QuicDatagrams(DatagramEndpoint):
    """A QUIC connection's unreliable datagrams (RFC 9221), connected to its peer.

    Both ends are *connected*: :attr:`remote` is the peer, and ``send_to``
    takes no other address. Datagrams are congestion controlled but never
    retransmitted; :attr:`max_datagram_size` is what the peer accepts and one
    packet carries (0 when the peer turned datagrams off, and then ``send_to``
    raises ``UsageError``). While ``datagram_queue`` datagrams wait to be sent,
    further ones are dropped and counted in :attr:`send_dropped`. Closing the
    endpoint stops only the datagrams; the connection stays. After the
    connection ended, ``send_to``/``receive_from`` raise what ended it.
    """

    def __init__(self, connection: QuicConnection, *, queue: int) -> None:
        self._conn = connection
        self._engine = connection._engine
        self._limit = queue
        self._queue: deque[bytes] = deque()
        self._readable: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped = 0
        self._send_dropped = 0
        self._label = f"{connection._label} datagrams"

    async def send_to(self, data: bytes, address: Address | None = None) -> None:
        """Send one datagram to the peer; see the class docstring for the errors."""
        conn = self._conn
        if self._closed:
            raise ClosedResourceError(f"{self._label}: cannot send after close on our side")
        if conn._ended:
            raise conn._end_error()
        if address is not None and not _same(address, conn.peer):
            raise UsageError(
                f"{self._label} is connected to {conn.remote_address}; "
                f"it cannot send to {address!r}"
            )
        limit = self._engine.datagram_limit
        if not limit:
            raise UsageError(
                f"{self._label}: the peer does not accept QUIC datagrams "
                f"(its max_datagram_frame_size is 0, or ours is)"
            )
        if len(data) > limit:
            raise UsageError(
                f"{self._label}: datagram of {len(data)} bytes exceeds the maximum of {limit} "
                f"bytes (split it, or send it on a stream)"
            )
        if self._engine.datagrams_queued >= self._limit:
            self._send_dropped += 1
            return
        if conn._observer is not None:
            conn._observer(BytesSent(self._label, len(data)))
        self._engine.send_datagram(bytes(data))
        conn._transmit_soon()

    async def receive_from(self) -> tuple[bytes, Address]:
        """The next datagram and the peer's address. Several tasks may wait at once."""
        conn = self._conn
        while True:
            if self._closed:
                raise ClosedResourceError(f"{self._label}: receive after close on our side")
            if self._queue:
                return self._queue.popleft(), conn.peer
            if conn._ended:
                raise conn._end_error()
            readable = self._readable
            if readable is None:
                readable = self._readable = conn._loop.create_future()
            await asyncio.shield(readable)

    async def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        self._closed = True
        self._queue.clear()
        self._wake()

    @property
    def max_datagram_size(self) -> int:
        return self._engine.datagram_limit

    @property
    def local_address(self) -> Address:
        return self._conn.local

    @property
    def remote(self) -> Address | None:
        return self._conn.peer

    @property
    def url(self) -> str:
        return f"quic://{self._conn.local_address}"

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def send_dropped(self) -> int:
        """Datagrams ``send_to`` dropped because ``datagram_queue`` were still unsent."""
        return self._send_dropped

    def extra(self, name: str, default: Any = None) -> Any:
        if name == "quic_connection":
            return self._conn
        return self._conn.extra(name, default)

    def _on_datagram(self, data: bytes) -> None:
        if self._closed:
            return
        if self._conn._observer is not None:
            self._conn._observer(BytesReceived(self._label, len(data)))
        if len(self._queue) >= self._limit:
            self._dropped += 1
            return
        self._queue.append(data)
        self._wake()

    def _wake(self) -> None:
        readable = self._readable
        if readable is not None:
            self._readable = None
            if not readable.done():
                readable.set_result(None)


def _same(a: Address, b: Address | None) -> bool:
    if b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return tuple(a[:2]) == tuple(b[:2])
