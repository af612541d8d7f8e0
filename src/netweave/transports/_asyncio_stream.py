"""A :class:`StreamConnection` over any asyncio stream transport (TCP, Unix, simulated).

One object is both the asyncio ``Protocol`` and the connection, so a received
chunk costs one callback and a sent message one list append.

Rules of this file:

* Writes are coalesced: ``send`` appends to ``_pending``; one ``transport.write``
  takes everything pending when the loop runs the scheduled flush, when a
  ``receive`` is about to wait, when 64 KiB are pending, or on close.
* Reading pauses when more than ``read_high_water`` bytes wait unconsumed and
  resumes below a quarter of it.
* ``send`` checks one flag, ``_send_blocked``, before doing its work; every
  state that forbids sending (our close/abort/send_eof, a broken or lost
  connection) sets it, and ``_send_error`` builds the error on that slow path.
* ``abort`` on a TCP socket sets ``SO_LINGER`` to zero first, so the peer sees a
  reset (RST) rather than an orderly end of stream.
* ``OSError`` and asyncio's own exceptions become netweave errors here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast

from ..errors import (
    ClosedResourceError,
    ConnectionBroken,
    NetweaveError,
    UsageError,
    translate_os_error,
)
from ..observe import BytesReceived, BytesSent, ConnectionClosed, ConnectionOpened, Observer
from .base import DEFAULT_READ_HIGH_WATER, DEFAULT_WRITE_HIGH_WATER, StreamConnection

__all__ = ["AsyncioStreamConnection"]

_FLUSH_AT: Final = 64 * 1024
_CLOSE_TIMEOUT: Final = 10.0
#: How an address reads when the OS gives none (an unbound Unix client socket).
UNNAMED: Final = "<unnamed>"
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class AsyncioStreamConnection(asyncio.Protocol, StreamConnection):
    """Both the asyncio protocol and the netweave connection for one stream."""

    def __init__(
        self,
        *,
        scheme: str,
        role: str,
        observer: Observer | None = None,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        read_high_water: int = DEFAULT_READ_HIGH_WATER,
        close_timeout: float = _CLOSE_TIMEOUT,
        on_made: Callable[[AsyncioStreamConnection], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._scheme = scheme
        self._role = role
        self._observer = observer
        self._write_high_water = write_high_water
        self._read_high_water = read_high_water
        self._close_timeout = close_timeout
        self._on_made = on_made
        self._transport: asyncio.Transport | None = None
        self._local = ""
        self._remote = ""
        self._label = scheme
        # receive side
        self._rbuf: deque[bytes] = deque()
        self._rlen = 0
        self._reading_paused = False
        self._eof_received = False
        self._waiter: asyncio.Future[None] | None = None
        self._receiver: Callable[[bytes], None] | None = None
        self._receiver_ended = False
        self._paused_for_writes = False
        # send side
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._flush_scheduled = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._eof_sent = False
        self._send_blocked = False
        # lifetime
        self._closing = False
        self._aborted = False
        self._error: ConnectionBroken | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.Protocol callbacks ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        transport = cast("asyncio.Transport", transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=self._write_high_water)
        self._local = _format(transport.get_extra_info("sockname")) or UNNAMED
        self._remote = _format(transport.get_extra_info("peername")) or UNNAMED
        self._label = f"{self._scheme} {self._local}->{self._remote}"
        if self._observer is not None:
            self._observer(
                ConnectionOpened(self._label, self._scheme, self._local, self._remote, self._role)
            )
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        if self._observer is not None:
            self._observer(BytesReceived(self._label, len(data)))
        receiver = self._receiver
        if receiver is not None and not self._rbuf:
            receiver(data)
            return
        self._rbuf.append(data)
        self._rlen += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._rlen > self._read_high_water and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof_received = True
        self._wake_receiver()
        self._push_end()
        return True  # keep our sending side open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closing:
            reason = "local-abort" if self._aborted else "local-close"
        elif exc is not None:
            reason = "peer-reset"
        else:
            reason = "peer-eof"
        if exc is not None and not self._closing:
            error = translate_os_error(exc, during="io", target=self._label)
            self._error = (
                error
                if isinstance(error, ConnectionBroken)
                else ConnectionBroken(f"connection {self._label} broken: {exc}")
            )
        elif not self._closing and not self._eof_received:
            # The transport went away without an EOF we saw (e.g. closed by the OS).
            self._eof_received = True
        self._send_blocked = True
        self._pending.clear()
        self._pending_len = 0
        self._wake_receiver()
        self._wake_writers()
        if not self._lost.done():
            self._lost.set_result(None)
        self._push_end()
        if self._observer is not None:
            self._observer(ConnectionClosed(self._label, reason, None if exc is None else str(exc)))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._receiver is not None and not self._reading_paused and self._transport is not None:
            # Push delivery: stop reading until the peer takes our answers.
            self._paused_for_writes = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._paused_for_writes:
            self._paused_for_writes = False
            if self._transport is not None and not self._closing and not self._reading_paused:
                self._transport.resume_reading()
        self._wake_writers()

    # -- StreamConnection -------------------------------------------------------

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_blocked:
            raise self._send_error()
        if not data:
            return
        self._hold(data if type(data) is bytes else bytes(data))
        if self._write_paused:
            await self._drain()

    def send_nowait(self, data: bytes, *, more: bool = False) -> bool:
        if self._send_blocked or self._write_paused:
            return False
        if not more and not self._pending:
            # Nothing held and nothing follows: write at once (ping-pong's path).
            self._write(data)
        else:
            if data:
                self._hold(data)
            if not more:
                self._flush()
        return True

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> bool:
        if receiver is not None and self._waiter is not None:
            raise UsageError(f"{self._label}: a task is waiting in receive()")
        self._receiver = receiver
        if receiver is not None:
            self._loop.call_soon(self._push_buffered)
        elif self._paused_for_writes:
            self._paused_for_writes = False
            if self._transport is not None and not self._closing and not self._reading_paused:
                self._transport.resume_reading()
        return True

    async def receive(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise UsageError(f"max_bytes must be at least 1, got {max_bytes}")
        if self._receiver is not None:
            raise UsageError(f"{self._label}: receive() while a push receiver is set")
        while True:
            if self._closing:
                raise ClosedResourceError(f"{self._label}: receive after close on our side")
            if self._rbuf:
                if max_bytes is None and not self._reading_paused:
                    chunk = self._rbuf.popleft()  # self._take(None), inlined: every read
                    self._rlen -= len(chunk)
                    return chunk
                return self._take(max_bytes)
            if self._error is not None:
                raise self._error
            if self._eof_received:
                return b""
            if self._waiter is not None:
                raise UsageError(f"{self._label}: another task is already receiving")
            if self._pending:
                self._flush()
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    async def send_eof(self) -> None:
        if self._eof_sent or self._closing:
            return
        if self._error is not None:
            raise self._error
        self._flush()
        self._eof_sent = True
        self._send_blocked = True
        transport = self._transport
        if transport is not None and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError as exc:
                raise translate_os_error(exc, during="io", target=self._label) from exc

    async def close(self) -> None:
        if not self._closing:
            self._flush()
            self._closing = True
            self._send_blocked = True
            self._wake_receiver()
            self._wake_writers()
            if self._transport is not None:
                self._transport.close()
        if self._lost.done():
            return
        try:
            async with asyncio.timeout(self._close_timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            # The peer does not read what we flushed; give up on it.
            self.abort()

    def abort(self) -> None:
        if self._aborted:
            return
        self._aborted = True
        self._closing = True
        self._send_blocked = True
        self._pending.clear()
        self._pending_len = 0
        self._wake_receiver()
        self._wake_writers()
        transport = self._transport
        if transport is not None:
            if not self._lost.done():
                _reset_on_close(transport.get_extra_info("socket"))
            transport.abort()

    @property
    def local_address(self) -> str:
        return self._local

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def is_closing(self) -> bool:
        return self._closing or self._error is not None or self._lost.done()

    def extra(self, name: str, default: Any = None) -> Any:
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    # -- internals --------------------------------------------------------------

    def _send_error(self) -> NetweaveError:
        if self._closing:
            return ClosedResourceError(f"{self._label}: cannot send after close on our side")
        if self._eof_sent:
            return ClosedResourceError(f"{self._label}: cannot send after send_eof on our side")
        if self._error is not None:
            return self._error
        return ConnectionBroken(f"connection {self._label} was lost; nothing more can be sent")

    def _take(self, max_bytes: int | None) -> bytes:
        chunk = self._rbuf.popleft()
        if max_bytes is not None and len(chunk) > max_bytes:
            self._rbuf.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._rlen -= len(chunk)
        if self._reading_paused and self._rlen <= self._read_high_water // 4:
            self._reading_paused = False
            if self._transport is not None and not self._closing:
                self._transport.resume_reading()
        return chunk

    def _push_buffered(self) -> None:
        """Hand chunks buffered before the receiver was set to it, then the end if it came."""
        while self._receiver is not None and self._rbuf:
            self._receiver(self._take(None))
        if self._eof_received or self._lost.done():
            self._push_end()

    def _push_end(self) -> None:
        receiver = self._receiver
        if receiver is not None and not self._receiver_ended and not self._rbuf:
            self._receiver_ended = True
            receiver(b"")

    def _hold(self, chunk: bytes) -> None:
        """Keep ``chunk`` for the next flush (which is scheduled, or done now if 64 KiB wait)."""
        self._pending.append(chunk)
        self._pending_len += len(chunk)
        if self._pending_len >= _FLUSH_AT:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_len = 0
        self._write(data)

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if not data or transport is None or self._error is not None or transport.is_closing():
            return
        if self._observer is not None:
            self._observer(BytesSent(self._label, len(data)))
        transport.write(data)

    async def _drain(self) -> None:
        while self._write_paused and not self._closing and self._error is None:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._error is not None:
            raise self._error
        if self._closing:
            raise ClosedResourceError(f"{self._label}: closed while waiting to send")

    def _wake_receiver(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _reset_on_close(sock: Any) -> None:
    """Make closing ``sock`` send a TCP reset (no-op for other sockets, or none)."""
    if sock is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # the socket is already gone: abort closes it anyway
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def _format(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, bytes):
        return address.decode("utf-8", "replace")
    return "" if address is None else str(address)
