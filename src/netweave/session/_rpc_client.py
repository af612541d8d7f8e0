"""The RPC client: many concurrent calls multiplexed over one channel.

Rules of this file:

* Each call gets the next call id; its outcome arrives as a future (unary)
  or a bounded queue (streams). The reading loop only resolves futures and
  fills queues; it never waits on the application.
* A call's deadline is the current one (:func:`~netweave.resilience.current_deadline`)
  tightened by its ``timeout``; the time left travels in the request, and the
  call is cut locally when the deadline passes, whatever the server does.
* A call that ends early (deadline, cancellation, a stream closed before its
  end) tells the server with CANCEL, so its handler stops too.
* When the connection ends, every pending call fails with the reason.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, final

from ..errors import (
    ClosedResourceError,
    DeadlineExceeded,
    DecodeError,
    NetweaveError,
    Overloaded,
    RemoteError,
    UsageError,
)
from ..resilience import Deadline, current_deadline, effective_deadline
from ..stack import Stack
from ._events import CallFinished, InFlightChanged
from ._keepalive import Keepalive
from ._rpc_errors import remote_error
from ._rpc_peer import _QUEUE_LIMIT, RpcPeer
from ._rpc_wire import (
    VERSION,
    Cancel,
    Credit,
    End,
    ErrorFrame,
    Frame,
    GoAway,
    Hello,
    Item,
    Ping,
    Pong,
    Request,
    Response,
    encode_request,
    encode_request_head,
)

if TYPE_CHECKING:
    from ..observe import Observer
    from ..registry import Registry
    from ..stack import Channel

__all__ = ["RpcClient", "RpcStream"]

#: No in-flight limit (before the server's HELLO tells its own).
_UNLIMITED = 1 << 62
#: Encoded method names kept per client.
_HEAD_CACHE = 1024


def _codec(codec: Stack | str) -> Stack:
    stack = Stack.parse(codec) if isinstance(codec, str) else codec.fresh()
    if stack.lower_kind != "frame":
        raise UsageError(
            f"an RPC payload codec turns whole payloads into objects; {stack.spec!r} starts "
            "with a framing layer (use raw, json, msgpack...)"
        )
    return stack


def _one(codec: Stack, data: bytes) -> Any:
    values = codec.decode(data)
    if len(values) != 1:
        raise DecodeError(f"a payload decoded to {len(values)} values, not 1", layer="rpc")
    return values[0]


@final
class RpcClient(RpcPeer):
    """Calls methods on an RPC server over ``channel`` (a channel of bytes, e.g. ``lp4,raw``).

    ``codec`` (default ``raw``: bytes in, bytes out) encodes requests and decodes
    replies, e.g. ``"json"``. Calls wait for the server's HELLO, then keep at
    most ``max_in_flight`` (and never more than the server admits) in flight;
    the others wait their turn, first come first served, within their deadline.
    The client pings when it heard nothing for ``ping_interval`` seconds and
    gives the connection up (``PeerUnresponsive``) after ``idle_timeout``
    seconds of silence; ``None`` disables either.

    :meth:`call` raises what the server's handler raised, as a
    :class:`~netweave.errors.RemoteError` (``MethodNotFound``, ``Overloaded``
    when admission control refused the call, ``RemoteDeadlineExceeded``...),
    ``DeadlineExceeded`` when the deadline passed first, and the connection's
    error (``ConnectionBroken``, ``PeerUnresponsive``, ``ClosedResourceError``)
    when it ended. Create it inside a running event loop.
    """

    def __init__(
        self,
        channel: Channel[Any],
        *,
        codec: Stack | str = "raw",
        ping_interval: float | None = 10.0,
        idle_timeout: float | None = 30.0,
        stream_window: int = 16,
        max_in_flight: int | None = None,
        observer: Observer | None = None,
        name: str | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise UsageError(f"max_in_flight must be at least 1 or None, not {max_in_flight}")
        if stream_window < 1:
            raise UsageError(f"stream_window must be at least 1, not {stream_window}")
        loop = asyncio.get_running_loop()
        super().__init__(
            channel,
            keepalive=Keepalive(loop.time(), interval=ping_interval, timeout=idle_timeout),
            observer=observer,
            name=name if name is not None else f"rpc client {channel.remote_address}",
        )
        self._codec = _codec(codec)
        self._identity_codec = all(layer.identity for layer in self._codec.layers)
        self._stream_window = stream_window
        self._calls: dict[int, asyncio.Future[bytes]] = {}
        self._streams: dict[int, RpcStream] = {}
        self._methods: dict[int, str] = {}
        self._next_id = 1
        self._max_in_flight = max_in_flight
        self._busy = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._hello: asyncio.Future[None] = loop.create_future()
        self._hello_done = False
        self._slots = _UNLIMITED
        self._heads: dict[str, bytes] = {}
        self._goaway = False
        self._closing = False
        self.server_max_in_flight: int | None = None
        self.server_idle_timeout: float | None = None
        self.send_soon(Hello(VERSION, 0, int((idle_timeout or 0) * 1000)))
        self._reader = loop.create_task(self.read_loop())
        self.arm_keepalive()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        stack: Stack | str = "lp4,raw",
        timeout: float | None = None,
        registry: Registry | None = None,
        **options: Any,
    ) -> RpcClient:
        """Connect to ``url`` with :func:`netweave.connect` and start a client on it.

        ``options`` go to the constructor (``codec``, ``ping_interval``...).
        """
        from ..client import connect

        channel = await connect(
            url, stack, timeout=timeout, registry=registry, observer=options.get("observer")
        )
        return cls(channel, **options)

    # -- calls ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Calls and streams waiting for the server."""
        return len(self._calls) + len(self._streams)

    def _check_open(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self._closing:
            raise ClosedResourceError(f"{self.name}: the client is closed")
        if self._goaway:
            raise Overloaded(
                "the server is shutting down and takes no new calls on this connection; "
                "connect again (to another server) to continue",
                remote_type="GoAway",
            )

    def _new_id(self) -> int:
        call_id = self._next_id
        self._next_id += 1
        return call_id

    async def call(self, method: str, request: Any = b"", *, timeout: float | None = None) -> Any:
        """Call ``method`` with ``request`` and return its result (see the class docstring)."""
        if self.failure is not None or self._closing or self._goaway:
            self._check_open()
        loop = self._loop
        deadline = current_deadline() if timeout is None else effective_deadline(timeout)
        observer = self._observer
        start = loop.time() if deadline is not None or observer is not None else 0.0
        if deadline is not None and deadline.when <= start:
            raise DeadlineExceeded(f"call {method!r} not sent: its deadline had already passed")
        head = self._heads.get(method)
        if head is None:
            head = self._method_head(method)
        payload = request if self._identity_codec else self._codec.encode(request)
        call_id = self._next_id
        self._next_id = call_id + 1
        future: asyncio.Future[bytes] = loop.create_future()
        outcome = "ok"
        sent = False
        holding = False
        try:
            if deadline is None:
                if self._hello_done and self._busy < self._slots and not self._slot_waiters:
                    self._busy += 1
                else:
                    await self._acquire_slot()
                holding = True
                self._calls[call_id] = future
                self._methods[call_id] = method
                if observer is not None:
                    observer(InFlightChanged(self.name, self.in_flight, "client"))
                sent = True
                self.queue(encode_request(call_id, head, payload, None))
                if self._queued > _QUEUE_LIMIT:
                    await self.wait_flushed()
                data = await future
            else:
                async with asyncio.timeout_at(deadline.when):
                    if self._hello_done and self._busy < self._slots and not self._slot_waiters:
                        self._busy += 1
                    else:
                        await self._acquire_slot()
                    holding = True
                    self._register(call_id, future, method)
                    left = deadline.when - loop.time()
                    if left <= 0:
                        raise TimeoutError
                    sent = True
                    self.queue(
                        encode_request(call_id, head, payload, max(1, int(left * 1_000_000)))
                    )
                    if self._queued > _QUEUE_LIMIT:
                        await self.wait_flushed()
                    data = await future
            if self._identity_codec:
                return data
            return _one(self._codec, data)
        except RemoteError as exc:
            outcome = type(exc).__name__
            raise
        except TimeoutError:
            outcome = "DeadlineExceeded"
            self._abandon(call_id, future, sent)
            raise DeadlineExceeded(
                f"{self.name}: call {method!r} did not finish within its deadline "
                f"({loop.time() - start:.3f} s)" + ("; the server was told to stop" if sent else "")
            ) from None
        except BaseException as exc:
            outcome = type(exc).__name__
            self._abandon(call_id, future, sent)
            raise
        finally:
            if holding:
                if self._slot_waiters:
                    self._release_slot()
                else:
                    self._busy -= 1
            self._calls.pop(call_id, None)
            self._methods.pop(call_id, None)
            if observer is not None:
                observer(CallFinished(self.name, method, loop.time() - start, outcome, "client"))
                observer(InFlightChanged(self.name, self.in_flight, "client"))

    def _register(self, call_id: int, future: asyncio.Future[bytes], method: str) -> None:
        self._calls[call_id] = future
        self._methods[call_id] = method
        if self._observer is not None:
            self._observer(InFlightChanged(self.name, self.in_flight, "client"))

    def _method_head(self, method: str) -> bytes:
        head = encode_request_head(method)
        if len(self._heads) < _HEAD_CACHE:
            self._heads[method] = head
        return head

    def _abandon(self, call_id: int, future: asyncio.Future[bytes], sent: bool) -> None:
        # A future cancelled along with its waiting task never got an answer either.
        unanswered = future.cancelled() or not future.done()
        if sent and unanswered and self.failure is None:
            self.send_soon(Cancel(call_id))

    # -- respecting the server's in-flight limit -----------------------------------------

    def _learn_limit(self) -> None:
        limits = [n for n in (self._max_in_flight, self.server_max_in_flight) if n]
        self._slots = min(limits) if limits else _UNLIMITED

    async def _acquire_slot(self) -> None:
        """Wait for the server's HELLO (to learn its limit), then for a free slot."""
        if not self._hello.done():
            await asyncio.shield(self._hello)
        if self.failure is not None:
            raise self.failure
        if self._busy < self._slots and not self._slot_waiters:
            self._busy += 1
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_slot()  # a slot was handed over as we gave up: pass it on
            else:
                waiter.cancel()
            raise

    def _release_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next caller
                return
        self._busy -= 1

    def stream(
        self,
        method: str,
        request: Any = b"",
        *,
        timeout: float | None = None,
        window: int | None = None,
    ) -> RpcStream:
        """Call ``method``, which answers with a stream of items::

            async with client.stream("tail", b"log") as items:
                async for item in items:
                    ...

        At most ``window`` items (default ``stream_window``) are buffered; the
        server waits for credit beyond that. The deadline covers the whole
        stream. Leaving the block early cancels the call on the server.
        """
        size = self._stream_window if window is None else window
        if size < 1:
            raise UsageError(f"a stream window must be at least 1, not {size}")
        return RpcStream(self, method, request, timeout, size)

    # -- frames from the server -------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, Response):
            future = self._calls.get(frame.call_id)
            if future is not None and not future.done():
                future.set_result(frame.payload)
        elif isinstance(frame, ErrorFrame):
            method = self._methods.get(frame.call_id, "")
            error = remote_error(frame.code, frame.remote_type, frame.message, method)
            future = self._calls.get(frame.call_id)
            if future is not None and not future.done():
                future.set_exception(error)
            elif (stream := self._streams.get(frame.call_id)) is not None:
                stream.deliver_error(error)
        elif isinstance(frame, Item):
            stream = self._streams.get(frame.call_id)
            if stream is not None:
                stream.deliver(frame.payload)
        elif isinstance(frame, End):
            stream = self._streams.get(frame.call_id)
            if stream is not None:
                stream.deliver_end()
        elif isinstance(frame, Ping):
            self.send_soon(Pong(frame.token))
        elif isinstance(frame, Hello):
            if frame.version != VERSION:
                raise DecodeError(
                    f"the server speaks RPC version {frame.version}; this client speaks {VERSION}",
                    layer="rpc",
                )
            self.server_max_in_flight = frame.max_in_flight
            self.server_idle_timeout = frame.idle_timeout_ms / 1000 or None
            self._learn_limit()
            self._hello_done = True
            if not self._hello.done():
                self._hello.set_result(None)
        elif isinstance(frame, GoAway):
            self._goaway = True
        elif not isinstance(frame, Pong):
            raise DecodeError(f"a server does not send {type(frame).__name__} frames", layer="rpc")

    def on_terminated(self, error: NetweaveError) -> None:
        if not self._hello.done():
            self._hello.set_result(None)  # waiters wake and see the failure
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._slot_waiters.clear()
        for future in self._calls.values():
            if not future.done():
                future.set_exception(error)
        for stream in list(self._streams.values()):
            stream.deliver_error(error)

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection; pending calls fail with ``ClosedResourceError``. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self.terminate(ClosedResourceError(f"{self.name}: the client was closed"))
        try:
            await self._channel.close()
        finally:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def abort(self) -> None:
        """Close at once, from sync code too."""
        self._closing = True
        self.terminate(ClosedResourceError(f"{self.name}: the client was aborted"))
        self._channel.abort()
        self._reader.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _time_left_us(deadline: Deadline | None, now: float, method: str) -> int | None:
    if deadline is None:
        return None
    left = deadline.when - now
    if left <= 0:
        raise DeadlineExceeded(f"call {method!r} not sent: its deadline had already passed")
    return max(1, int(left * 1_000_000))


@final
class RpcStream:
    """The items of one streamed call; see :meth:`RpcClient.stream`."""

    def __init__(
        self, client: RpcClient, method: str, request: Any, timeout: float | None, window: int
    ) -> None:
        self._client = client
        self._method = method
        self._request = request
        self._timeout = timeout
        self._window = window
        self._items: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: NetweaveError | None = None
        self._ended = False
        self._started = False
        self._finished = False
        self._consumed = 0
        self._call_id = 0
        self._holds_slot = False
        self._deadline: Deadline | None = None

    async def _start(self) -> None:
        client = self._client
        client._check_open()
        now = client._loop.time()
        self._deadline = effective_deadline(self._timeout, now=now)
        _time_left_us(self._deadline, now, self._method)
        try:
            async with asyncio.timeout_at(None if self._deadline is None else self._deadline.when):
                await client._acquire_slot()
        except TimeoutError:
            raise DeadlineExceeded(
                f"{client.name}: stream {self._method!r} found no free slot before its deadline"
            ) from None
        self._holds_slot = True
        self._call_id = client._new_id()
        client._streams[self._call_id] = self
        client._methods[self._call_id] = self._method
        self._started = True
        timeout_us = _time_left_us(self._deadline, client._loop.time(), self._method)
        await client.send(
            Request(
                self._call_id,
                self._method,
                client._codec.encode(self._request),
                timeout_us,
                self._window,
            )
        )

    def deliver(self, payload: bytes) -> None:
        if len(self._items) >= self._window:
            self.deliver_error(
                DecodeError("the server sent stream items beyond its credit", layer="rpc")
            )
            return
        self._items.append(payload)
        self._wake()

    def deliver_end(self) -> None:
        self._ended = True
        self._wake()

    def deliver_error(self, error: NetweaveError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        if not self._started:
            await self._start()
        client = self._client
        while not self._items:
            if self._error is not None:
                self._finish()
                raise self._error
            if self._ended:
                self._finish()
                raise StopAsyncIteration
            self._waiter = client._loop.create_future()
            try:
                if self._deadline is None:
                    await self._waiter
                else:
                    async with asyncio.timeout_at(self._deadline.when):
                        await self._waiter
            except TimeoutError:
                self._cancel()
                raise DeadlineExceeded(
                    f"{client.name}: stream {self._method!r} did not finish within its deadline"
                ) from None
            except asyncio.CancelledError:
                self._cancel()
                raise
            finally:
                self._waiter = None
        payload = self._items.popleft()
        self._consumed += 1
        if self._consumed * 2 >= self._window and not self._ended:
            client.send_soon(Credit(self._call_id, self._consumed))
            self._consumed = 0
        return _one(client._codec, payload)

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._client._streams.pop(self._call_id, None)
            self._client._methods.pop(self._call_id, None)
            if self._holds_slot:
                self._holds_slot = False
                self._client._release_slot()

    async def aclose(self) -> None:
        """Stop the stream; if the server had not finished it, cancel it there."""
        self._cancel()

    def _cancel(self) -> None:
        if self._started and not self._finished and not self._ended and self._error is None:
            self._client.send_soon(Cancel(self._call_id))
        self._finish()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
