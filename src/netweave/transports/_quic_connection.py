"""The runtime adapter of ``quic://``: a UDP socket, a timer, and one engine per connection.

:class:`QuicSocket` is the asyncio datagram protocol of one UDP socket (a
client's, or a listener's shared by its connections). :class:`QuicConnection`
drives one :class:`~._quic_engine.QuicEngine`: it feeds it datagrams and timer
expiries with ``now = loop.time()``, sends what it produces, arms the one timer
it asks for with ``loop.call_at``, and routes its events to the streams and the
datagram endpoint (:mod:`._quic_stream`). So it runs on any asyncio loop,
the simulator's included.

Rules of this file:

* After every input (datagram, timer, a stream's send) the engine's output is
  sent and its timer re-armed (aioquic's ``transmit``); sends are coalesced:
  one transmit per loop iteration however many streams wrote.
* The connection ends exactly once (``_end``): every stream and the datagram
  endpoint learn why, the timer is cancelled, and the client's socket is
  closed (a listener closes its own once its last connection ended).
* A connection the client opened closes itself when its last stream is closed;
  a listener's connections do so once the listener is closed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, final

from ..endpoints import format_host_port
from ..errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    NetweaveError,
    UsageError,
    translate_os_error,
)
from ._quic_options import ABORT_CODE, CLOSE_CODE
from ._quic_stream import QuicDatagrams, QuicStream
from .base import Address

if TYPE_CHECKING:
    from ..observe import Observer
    from ._quic_engine import QuicEngine
    from ._quic_options import QuicSettings

__all__ = ["DatagramReceiver", "QuicConnection", "QuicSocket"]

#: Application codes of our CONNECTION_CLOSE: a clean close, and an abort.
_NO_ERROR: Final = CLOSE_CODE
_ABORTED: Final = ABORT_CODE
_SOCKET_CLOSE_TIMEOUT: Final = 10.0


class DatagramReceiver(Protocol):
    """What a socket hands its datagrams to (a connection, or a listener)."""

    def datagram_received(self, data: bytes, addr: Any) -> None: ...
    def error_received(self, exc: Exception) -> None: ...
    def socket_lost(self, exc: Exception | None) -> None: ...


class _Nobody:
    """The receiver of a socket nobody listens on yet: drops everything."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass

    def error_received(self, exc: Exception) -> None:
        pass

    def socket_lost(self, exc: Exception | None) -> None:
        pass


@final
class QuicSocket(asyncio.DatagramProtocol):
    """One UDP socket: hands datagrams to :attr:`receiver`, sends, closes."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.receiver: DatagramReceiver = _Nobody()
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Any = ("", 0)
        self._lost: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not always a DatagramTransport subclass (CPython 3.11's selector one is not).
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local = transport.get_extra_info("sockname") or ("", 0)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receiver.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.receiver.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self.receiver.socket_lost(exc)

    def send(self, data: bytes, addr: Any) -> None:
        """Send one datagram (``addr`` ``None`` on a connected socket); never raises."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, addr)  # asyncio reports OS errors to error_received

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is released (``close`` first), at most 10 s."""
        if self._lost.done():
            return
        try:
            async with asyncio.timeout(_SOCKET_CLOSE_TIMEOUT):
                await asyncio.shield(self._lost)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


@final
class QuicConnection:
    """One QUIC connection: bidirectional streams and unreliable datagrams.

    Reach it from any of its streams with ``stream.extra("quic_connection")``.
    :meth:`open_stream` opens another stream to the peer; :meth:`accept_stream`
    waits for one the peer opened (on a client; a listener's connections hand
    theirs to the listener's ``accept``); :attr:`datagrams` is the connection's
    :class:`QuicDatagrams` endpoint.

    :meth:`close` waits until what closed streams sent was acknowledged (at
    most ``close_timeout``), then closes the connection cleanly: streams still
    open get ``ClosedResourceError``, the peer's get ``ConnectionBroken``.
    :meth:`abort` closes at once. A connection that ended on its own (the peer
    closed it, the idle timeout passed, the network failed) makes every
    operation raise ``ConnectionBroken`` (``PeerUnresponsive`` for the idle
    timeout).
    """

    def __init__(
        self,
        engine: QuicEngine,
        socket: QuicSocket,
        *,
        peer: Any,
        server: bool,
        settings: QuicSettings,
        observer: Observer | None = None,
        on_stream: Callable[[QuicStream], None] | None = None,
        on_connection_id: Callable[[QuicConnection, bytes, bool], None] | None = None,
        on_end: Callable[[QuicConnection], None] | None = None,
        auto_close: bool = False,
        target: str | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._engine = engine
        self._socket = socket
        self._peer = peer
        self._server = server
        self._settings = settings
        self._observer = observer
        self._on_stream = on_stream
        self._on_connection_id = on_connection_id
        self._on_end = on_end
        self.local_address = _format(socket.local)
        self.remote_address = _format(peer)
        self._label = f"quic {self.local_address}->{self.remote_address}"
        self._target = target or f"quic://{self.remote_address}"
        self._streams: dict[int, QuicStream] = {}
        self._incoming: deque[QuicStream] = deque()
        self._accept_waiter: asyncio.Future[None] | None = None
        self._held = 0
        self._auto_close = auto_close
        # Ordered (a dict, not a set): who is woken first must not depend on memory addresses.
        self._blocked: dict[QuicStream, None] = {}
        self._sent_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_handle: asyncio.Handle | None = None
        self._established: asyncio.Future[None] = self._loop.create_future()
        self._ended = False
        self._error: NetweaveError | None = None
        self._closing_by_us = False
        self._close_done: asyncio.Future[None] | None = None
        self._datagrams = QuicDatagrams(self, queue=settings.datagram_queue)
        #: Streams the peer opened that were refused (``backlog`` already waiting).
        self.refused_streams = 0
        if not server:
            socket.receiver = self

    # -- public ------------------------------------------------------------------

    @property
    def peer(self) -> Address:
        """The peer's UDP address, as the socket reports it (``(host, port)``...)."""
        return cast(Address, self._peer)

    @property
    def local(self) -> Address:
        """Our UDP address, as the socket reports it."""
        return cast(Address, self._socket.local)

    @property
    def datagrams(self) -> QuicDatagrams:
        """The connection's unreliable datagrams (RFC 9221), as a connected endpoint."""
        return self._datagrams

    @property
    def alpn_protocol(self) -> str | None:
        """The ALPN protocol the handshake agreed on."""
        return self._engine.alpn_protocol

    @property
    def is_closing(self) -> bool:
        """True once our side started closing it, or it ended."""
        return self._ended or self._close_done is not None

    async def open_stream(self) -> QuicStream:
        """Open a new bidirectional stream; the peer can accept it at once.

        ``ClosedResourceError`` once our side closes the connection,
        ``ConnectionBroken`` after it ended otherwise.
        """
        self._check_open()
        stream_id = self._engine.open_stream()
        state = self._engine.stream(stream_id)
        if state is None or self._engine.termination is not None:
            self._transmit()
            raise self._end_error()
        stream = QuicStream(self, stream_id, state)
        self._streams[stream_id] = stream
        self._hold(stream)
        self._transmit_soon()
        return stream

    async def accept_stream(self) -> QuicStream:
        """Wait for the next stream the peer opened.

        ``UsageError`` on a listener's connection (its streams go to the listener)
        or while another task waits; otherwise as :meth:`open_stream`.
        """
        if self._on_stream is not None:
            raise UsageError(f"{self._label}: streams of a listener's connection go to accept()")
        while not self._incoming:
            self._check_open()
            if self._accept_waiter is not None:
                raise UsageError(f"{self._label}: another task is already accepting")
            waiter = self._accept_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._accept_waiter = None
        stream = self._incoming.popleft()
        self._hold(stream)
        return stream

    async def close(self) -> None:
        """Close cleanly (see the class docstring). Idempotent; never raises."""
        done = self._close_done
        if done is None:
            done = self._close_done = self._loop.create_future()
            try:
                if not self._ended:
                    await self._flush()
                self._shutdown(_NO_ERROR)
            finally:
                done.set_result(None)
        else:
            await asyncio.shield(done)
        await self._socket_released()

    def abort(self) -> None:
        """Close at once: the peer's streams break. Idempotent; never raises."""
        if self._close_done is None:
            self._close_done = self._loop.create_future()
            self._close_done.set_result(None)
        self._shutdown(_ABORTED)

    def extra(self, name: str, default: Any = None) -> Any:
        """``"alpn_protocol"``; the UDP socket's ``"socket"``, ``"sockname"``, ``"peername"``."""
        if name == "alpn_protocol":
            return self._engine.alpn_protocol
        if name == "peername":
            return self._peer
        transport = self._socket.transport
        if transport is None:
            return default
        return transport.get_extra_info(name, default)

    def __repr__(self) -> str:
        return f"<QuicConnection {self._label}>"

    # -- driving the engine ---------------------------------------------------------

    def start(self) -> None:
        """Begin a client's handshake."""
        self._engine.connect(self._peer, self._loop.time())
        self._after_input()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._ended:
            return
        # A client's socket is connected: every datagram comes from the peer.
        self._engine.receive(data, addr if self._server else self._peer, self._loop.time())
        self._after_input()

    def error_received(self, exc: Exception) -> None:
        if self._ended or self._engine.handshake_complete:
            return  # ICMP errors are not authenticated; QUIC's own timers decide later
        error = translate_os_error(exc, during="connect", target=self._target)
        if not isinstance(error, ConnectFailed):
            error = ConnectFailed(f"cannot connect to {self._target}: {exc}")
        self._end(error)

    def socket_lost(self, exc: Exception | None) -> None:
        """The UDP socket went away under us (our own close ends the connection first)."""
        if not self._ended:
            detail = f": {exc}" if exc is not None else ""
            self._end(ConnectionBroken(f"{self._label}: the UDP socket was closed{detail}"))

    async def wait_established(self) -> None:
        """Wait for the handshake; ``ConnectFailed`` (or what ended it) if it fails."""
        while not self._engine.handshake_complete:
            if self._ended:
                raise self._end_error()
            await self._established

    def _after_input(self) -> None:
        self._engine.process_events(self)
        self._transmit()

    def _transmit_soon(self) -> None:
        if self._transmit_handle is None and not self._ended:
            self._transmit_handle = self._loop.call_soon(self._scheduled_transmit)

    def _scheduled_transmit(self) -> None:
        self._transmit_handle = None
        self._transmit()

    def _transmit(self) -> None:
        handle = self._transmit_handle
        if handle is not None:  # sending now covers what was scheduled
            handle.cancel()
            self._transmit_handle = None
        if self._ended:
            return
        engine = self._engine
        send = self._socket.send
        if self._server:
            for data, addr in engine.datagrams_to_send(self._loop.time()):
                send(data, addr)
        else:
            for data, _ in engine.datagrams_to_send(self._loop.time()):
                send(data, None)
        if engine.termination is not None:
            self._end()
            return
        timer_at = engine.timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._on_timer)
        self._timer_at = timer_at
        if self._blocked:
            self._wake_blocked()
        if self._sent_waiters:
            self._wake_sent()

    def _on_timer(self) -> None:
        now = max(self._timer_at or 0.0, self._loop.time())
        self._timer = None
        self._timer_at = None
        self._engine.handle_timer(now)
        self._after_input()

    def _wake_blocked(self) -> None:
        hwm = self._settings.write_high_water
        for stream in [s for s in self._blocked if s._unsent() <= hwm]:
            del self._blocked[stream]
            stream._wake_writers()

    def _wake_sent(self) -> None:
        send_done = self._engine.send_done
        waiting: list[tuple[int, asyncio.Future[None]]] = []
        for stream_id, waiter in self._sent_waiters:
            if send_done(stream_id) or waiter.done():
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((stream_id, waiter))
        self._sent_waiters = waiting

    # -- EngineSink ---------------------------------------------------------------------

    def on_handshake(self) -> None:
        if not self._established.done():
            self._established.set_result(None)

    def on_new_stream(self, stream_id: int) -> None:
        state = self._engine.stream(stream_id)
        if state is None or self._ended:
            return
        stream = QuicStream(self, stream_id, state)
        self._streams[stream_id] = stream
        if self._on_stream is not None:
            self._on_stream(stream)  # the listener queues it, or refuses it
        elif len(self._incoming) >= self._settings.backlog or self._close_done is not None:
            self.refused_streams += 1
            stream.abort()
        else:
            self._incoming.append(stream)
            waiter = self._accept_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_stream_data(self, stream_id: int, data: bytes, fin: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream._on_data(data, fin)

    def on_stream_reset(self, stream_id: int, code: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream._on_reset(code)

    def on_stop_sending(self, stream_id: int, code: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream._on_stop_sending(code)
            self._blocked.pop(stream, None)

    def on_datagram(self, data: bytes) -> None:
        self._datagrams._on_datagram(data)

    def on_connection_id(self, cid: bytes, issued: bool) -> None:
        if self._on_connection_id is not None:
            self._on_connection_id(self, cid, issued)

    # -- used by streams and the listener --------------------------------------------

    def _hold(self, stream: QuicStream) -> None:
        stream.held = True
        self._held += 1

    def _release(self, stream: QuicStream) -> bool:
        """``stream`` is done; True when that leaves an auto-closing connection unused."""
        if stream.released:
            return False
        stream.released = True
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._blocked.pop(stream, None)
        self._engine.forget(stream.stream_id)
        if not stream.held:
            return False
        self._held -= 1
        return self._auto_close and self._held == 0 and not self._ended

    async def _until_sent(self, stream: QuicStream) -> None:
        """Wait until the peer acknowledged everything ``stream`` sent, or the end."""
        if self._ended or self._engine.send_done(stream.stream_id):
            return
        waiter = self._loop.create_future()
        self._sent_waiters.append((stream.stream_id, waiter))
        await waiter

    def listener_closed(self) -> None:
        """The listener stopped: close once no stream is in use (at once if none is)."""
        self._auto_close = True
        if self._held == 0:
            self._shutdown(_NO_ERROR)

    async def _socket_released(self) -> None:
        if self._ended and self._socket.closing:
            await self._socket.wait_closed()

    def _end_error(self) -> NetweaveError:
        if self._error is not None:
            return self._error
        return ClosedResourceError(f"{self._label}: our side closed the connection")

    # -- ending -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise self._end_error()
        if self._close_done is not None:
            raise ClosedResourceError(f"{self._label}: our side is closing the connection")

    async def _flush(self) -> None:
        waits = [
            self._until_sent(stream) for stream in list(self._streams.values()) if stream._fin_sent
        ]
        if not waits:
            return
        try:
            async with asyncio.timeout(self._settings.close_timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            pass  # the peer does not acknowledge: close anyway

    def _shutdown(self, code: int) -> None:
        if self._ended:
            return
        self._closing_by_us = True
        self._transmit()  # what streams queued (a RESET_STREAM...) goes before the close
        if not self._ended:
            self._engine.close(code=code)
            self._transmit()
        self._end()

    def _end(self, error: NetweaveError | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        end = self._engine.termination
        if error is None:
            if self._closing_by_us or end is None:
                error = ClosedResourceError(f"{self._label}: our side closed the connection")
            else:
                from ._quic_engine import termination_error

                error = termination_error(
                    end,
                    target=self._target,
                    during_connect=not self._engine.handshake_complete,
                    idle_timeout=self._settings.idle_timeout,
                )
        self._error = error if not isinstance(error, ClosedResourceError) else None
        for handle in (self._timer, self._transmit_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._transmit_handle = None
        for stream in list(self._streams.values()):
            stream._on_connection_end(error)
        self._streams.clear()
        self._blocked.clear()
        self._incoming.clear()
        for _, waiter in self._sent_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._sent_waiters.clear()
        if self._accept_waiter is not None and not self._accept_waiter.done():
            self._accept_waiter.set_result(None)
        if not self._established.done():
            self._established.set_result(None)
        self._datagrams._wake()
        if self._on_end is not None:
            self._on_end(self)
        if not self._server:
            self._socket.close()


def _format(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return format_host_port(str(address[0]), int(address[1]))
    return str(address or "")
