"""Per-message handlers: a plain function called for each message as it is decoded.

A connection handler (``async def handler(channel)``) is a task per connection
that awaits each message. A *message handler* is the lighter form, in the
manner of asyncio's ``Protocol.data_received`` or Twisted's ``stringReceived``:

    def on_message(message, responder):
        responder.send(message)          # queue a reply; never blocks

    async with netweave.serve(url, "lp4,raw", netweave.per_message(on_message)): ...

Where the transport delivers by push (:meth:`StreamConnection.set_receiver`,
as TCP and Unix do), the handler runs inside the transport's receive callback:
no task wake-up per message, and the replies to everything one read decoded
leave in one write. Elsewhere (memory, TLS, QUIC, datagram peers, stacks whose
layers answer by themselves) the same handler is fed by a task reading the
channel, with the same rules:

* The handler is synchronous and must not block; for slow work, start a task
  and ``responder.send`` from it later.
* ``responder.send`` encodes at once (a message the stack cannot carry raises
  to its caller) and queues the bytes; replies leave in the order they were
  sent. While replies wait for the peer to read, the connection reads no
  further, so a request/response server stays within its buffers.
* A handler that raises ends its connection (the server logs the exception),
  as does a ``ProtocolError`` on a stream. On a datagram channel a datagram a
  layer rejects is skipped and the next one handled.
* ``responder.send`` after the connection ended raises ``ClosedResourceError``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, final

from .errors import (
    ClosedResourceError,
    ConnectionBroken,
    EndOfStream,
    ProtocolError,
)
from .observe import ConnectionClosed, MessageReceived, MessageSent
from .stack import Channel, DatagramChannel, StreamChannel

if TYPE_CHECKING:
    from .observe import Observer
    from .server import Handler

__all__ = ["MessageHandler", "Responder", "per_message"]


@final
class Responder:
    """How a message handler answers on its connection.

    ``send(message)`` queues ``message`` as a reply: encoded now (raising
    ``UsageError`` for a message the stack cannot carry), sent in order,
    without blocking.
    """

    __slots__ = ("_channel", "_replies", "send")

    def __init__(self, channel: Channel[Any], replies: _Replies) -> None:
        self._channel = channel
        self._replies = replies
        # The bound method itself: one call per reply, not two, on the hot path.
        self.send: Callable[[Any], None] = replies.post

    def close(self) -> None:
        """End the connection at once (replies not yet written are dropped)."""
        self._replies.stop()
        self._channel.abort()

    @property
    def remote_address(self) -> str:
        """The peer's address as text."""
        return self._channel.remote_address


#: A message handler: called with each decoded message and the connection's responder.
MessageHandler = Callable[[Any, Responder], None]


def per_message(on_message: MessageHandler) -> Handler:
    """A connection handler for :func:`netweave.serve` that calls ``on_message`` per message."""

    async def handler(channel: Channel[Any]) -> None:
        if isinstance(channel, StreamChannel) and not channel.stack.speaks:
            session = _PushSession(channel, on_message)
            if channel.connection.set_receiver(session.feed):
                await session.wait()
                return
        await _pull(channel, on_message)

    handler.__qualname__ = f"per_message({getattr(on_message, '__qualname__', on_message)!s})"
    return handler


@final
class _Replies:
    """One connection's replies: encoded when posted, written in order, never blocking.

    Replies posted during a handler call are gathered (between :meth:`begin` and
    :meth:`end`) and written together; the others are written at once when
    nothing waits before them. What the transport will not take now waits in an
    outbox that one flusher task drains.
    """

    __slots__ = (
        "_address",
        "_batch",
        "_encode",
        "_flusher",
        "_observer",
        "_outbox",
        "_write",
        "_write_now",
        "error",
        "stopped",
    )

    def __init__(
        self,
        address: str,
        encode: Callable[[Any], bytes],
        write_now: Callable[[bytes], bool],
        write: Callable[[bytes], Awaitable[None]],
        observer: Observer | None,
    ) -> None:
        self._address = address
        self._encode = encode
        self._write_now = write_now
        self._write = write
        self._observer = observer
        self._batch: list[bytes] | None = None
        self._outbox: deque[bytes] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self.stopped = False
        #: What ended the writing when the transport refused it (a broken connection).
        self.error: BaseException | None = None

    def post(self, message: Any) -> None:
        if self.stopped:
            raise ClosedResourceError(f"{self._address}: the connection has ended")
        data = self._encode(message)
        if self._observer is not None:
            self._observer(MessageSent(self._address, len(data)))
        if self._batch is not None:
            self._batch.append(data)
        else:
            self._send(data)

    def begin(self) -> None:
        self._batch = []

    def end(self) -> None:
        batch, self._batch = self._batch, None
        if batch and not self.stopped:
            self._send(batch[0] if len(batch) == 1 else b"".join(batch))

    def _send(self, data: bytes) -> None:
        if not self._outbox and self._write_now(data):
            return
        self._outbox.append(data)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox:
                await self._write(self._outbox[0])
                self._outbox.popleft()
        except (ConnectionBroken, ClosedResourceError) as exc:
            self.error = exc
            self.stopped = True
            self._outbox.clear()
        finally:
            self._flusher = None

    @property
    def waiting(self) -> bool:
        """Whether replies wait for the transport."""
        return self._flusher is not None

    async def drain(self) -> None:
        """Until every queued reply was handed to the transport (or the writing failed)."""
        while (flusher := self._flusher) is not None:
            await asyncio.shield(flusher)

    def stop(self) -> None:
        """Refuse further replies and drop the queued ones."""
        self.stopped = True
        self._outbox.clear()
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            self._flusher.cancel()


async def _pull(channel: Channel[Any], on_message: MessageHandler) -> None:
    """The pull form: this task reads the channel and feeds the handler."""
    replies = _pull_replies(channel)
    responder = Responder(channel, replies)
    datagrams = isinstance(channel, DatagramChannel)
    try:
        while True:
            try:
                message = await channel.receive()
            except EndOfStream:
                break
            except ProtocolError:
                if datagrams:
                    continue  # the channel stays usable: the next datagram may be fine
                raise
            replies.begin()
            try:
                on_message(message, responder)
            finally:
                replies.end()
            if replies.waiting:
                await replies.drain()
            if replies.error is not None:
                return
        await replies.drain()
    finally:
        replies.stop()


def _pull_replies(channel: Channel[Any]) -> _Replies:
    address = channel.remote_address
    if isinstance(channel, StreamChannel):
        conn = channel.connection
        encode = channel.stack.encode
        return _Replies(address, encode, conn.send_nowait, conn.send, channel.observer)
    if isinstance(channel, DatagramChannel):
        endpoint = channel.endpoint
        return _Replies(
            address,
            channel.encode,
            lambda data: False,
            lambda data: endpoint.send_to(data, None),
            channel.observer,
        )
    # Any other channel: its own send encodes (so it is checked there, not at post).
    return _Replies(address, lambda message: message, lambda data: False, channel.send, None)


@final
class _PushSession:
    """The push form: the transport calls :meth:`feed` with each chunk it receives."""

    def __init__(self, channel: StreamChannel[Any], on_message: MessageHandler) -> None:
        conn = self._conn = channel.connection
        self._stack = channel.stack
        self._on_message = on_message
        self._observer = channel.observer
        self._replies = _Replies(
            conn.remote_address, self._stack.encode, conn.send_nowait, conn.send, self._observer
        )
        self._responder = Responder(channel, self._replies)
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, chunk: bytes) -> None:
        if self._finished.done():
            return
        replies = self._replies
        try:
            try:
                messages = self._stack.decode(chunk) if chunk else self._stack.end_of_input()
            except ProtocolError as exc:
                if self._observer is not None:
                    self._observer(
                        ConnectionClosed(self._conn.remote_address, "protocol-error", str(exc))
                    )
                raise
            if self._observer is not None and messages:
                self._observer(MessageReceived(self._conn.remote_address, len(messages)))
            # replies.begin() and end(), inlined: this is every message's path.
            batch: list[bytes] = []
            replies._batch = batch
            try:
                on_message, responder = self._on_message, self._responder
                for message in messages:
                    on_message(message, responder)
            finally:
                replies._batch = None
            if batch and not replies.stopped:
                replies._send(batch[0] if len(batch) == 1 else b"".join(batch))
        except Exception as exc:
            self._conn.abort()
            self._finish(exc)
            return
        if not chunk or replies.error is not None:
            self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        self._conn.set_receiver(None)
        if error is not None:
            self._replies.stop()
        if not self._finished.done():
            if error is None or isinstance(error, ConnectionBroken | ClosedResourceError):
                self._finished.set_result(None)
            else:
                self._finished.set_exception(error)

    async def wait(self) -> None:
        """Until the connection ended and every queued reply was handed to it.

        Raises what ended it badly: the handler's exception or a ``ProtocolError``.
        """
        try:
            await self._finished
            await self._replies.drain()
        finally:
            self._conn.set_receiver(None)
            self._replies.stop()
