"""The RPC server: handlers by method name, deadlines enforced, admission control, draining.

Rules of this file:

* A connection must open with HELLO within ``handshake_timeout`` and then
  deliver a complete frame at least every ``idle_timeout`` (clients ping when
  idle); otherwise it is cut (``_keepalive``: a peer trickling bytes never
  completes a frame, so it is cut too).
* Each admitted request runs in its own task, inside its deadline (the time
  left that the caller sent): the handler can read it from its
  :class:`CallContext` (or :func:`~netweave.resilience.remaining_time`) and is
  cancelled when it passes.
* Admission: a request is refused with ``OVERLOADED`` (the caller gets
  :class:`~netweave.errors.Overloaded`) when ``max_in_flight`` calls already
  run on its connection, or once the server is draining.
* Exactly one final frame (RESPONSE, END or ERROR) answers each request,
  unless the caller cancelled it (then nothing is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from ..errors import (
    DeadlineExceeded,
    DecodeError,
    NetweaveError,
    RemoteError,
    UsageError,
)
from ..resilience import Deadline, InFlight
from ._events import CallFinished, InFlightChanged
from ._keepalive import Keepalive
from ._rpc_client import _codec, _one
from ._rpc_errors import (
    BAD_REQUEST,
    CANCELLED,
    DEADLINE_EXCEEDED,
    INTERNAL,
    METHOD_NOT_FOUND,
    OVERLOADED,
)
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
    encode_response,
)

if TYPE_CHECKING:
    from ..observe import Observer
    from ..registry import Registry
    from ..server import _Serving
    from ..stack import Channel, Stack

__all__ = ["CallContext", "RpcServer"]

logger = logging.getLogger("netweave.session.rpc")

#: A handler: ``async def h(request)`` or ``async def h(request, ctx)`` returning the
#: result, or an async generator function (same arguments) yielding stream items.
Handler = Callable[..., Awaitable[Any]] | Callable[..., AsyncIterator[Any]]


@final
@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows about the call it serves."""

    method: str
    call_id: int
    peer: str
    deadline: Deadline | None

    def remaining(self) -> float | None:
        """Seconds left before the caller's deadline, or ``None`` without one."""
        return None if self.deadline is None else self.deadline.remaining()


@dataclass(slots=True, eq=False)
class _Method:
    handler: Handler
    streaming: bool
    wants_context: bool


@dataclass(slots=True, eq=False)
class _Active:
    task: asyncio.Task[None] | None = None
    credit: int = 0
    credit_waiter: asyncio.Future[None] | None = None
    cancelled_by_peer: bool = False


@final
class RpcServer:
    """Serves registered handlers to RPC clients; see the module docstring.

    Register handlers with :meth:`add` or the :meth:`method` decorator, then
    pass :meth:`handle` to :func:`netweave.serve` (or call :meth:`serve`).
    ``codec`` must match the clients'. A handler's exception reaches the caller
    as a :class:`~netweave.errors.RemoteError` carrying its type name and (with
    ``expose_errors``) its message; raising ``RemoteError(msg, code=1000+)``
    chooses the code. The server is a drainable for
    :func:`~netweave.resilience.graceful_shutdown`.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler] | None = None,
        *,
        codec: Stack | str = "raw",
        max_in_flight: int = 64,
        ping_interval: float | None = 10.0,
        idle_timeout: float | None = 30.0,
        handshake_timeout: float | None = 10.0,
        expose_errors: bool = True,
        observer: Observer | None = None,
        name: str = "rpc server",
    ) -> None:
        if max_in_flight < 1:
            raise UsageError(f"max_in_flight must be at least 1, not {max_in_flight}")
        Keepalive(0.0, interval=ping_interval, timeout=idle_timeout)  # validates the pair
        self._codec_template = _codec(codec)
        self.max_in_flight = max_in_flight
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.expose_errors = expose_errors
        self.observer = observer
        self.name = name
        self._methods: dict[str, _Method] = {}
        self._connections: set[_ServerConnection] = set()
        self._tracker = InFlight(name=name)
        self._refused = 0
        for method, handler in (handlers or {}).items():
            self.add(method, handler)

    # -- registry ----------------------------------------------------------------------

    def add(self, method: str, handler: Handler) -> None:
        """Serve ``handler`` under ``method``; replaces an earlier one of that name."""
        if not method or len(method.encode()) > 255:
            raise UsageError(f"a method name must be 1 to 255 bytes of UTF-8, not {method!r}")
        streaming = inspect.isasyncgenfunction(handler)
        if not streaming and not inspect.iscoroutinefunction(handler):
            raise UsageError(
                f"handler for {method!r} must be an async function or async generator function"
            )
        params = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) not in (1, 2):
            raise UsageError(
                f"handler for {method!r} must take (request) or (request, ctx), "
                f"not {len(params)} positional parameters"
            )
        self._methods[method] = _Method(handler, streaming, len(params) == 2)

    def method(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: ``@server.method()`` registers under the function's name."""

        def register(handler: Handler) -> Handler:
            self.add(name or handler.__name__, handler)
            return handler

        return register

    @property
    def methods(self) -> list[str]:
        """The registered method names."""
        return sorted(self._methods)

    # -- serving -------------------------------------------------------------------------

    async def handle(self, channel: Channel[Any]) -> None:
        """Serve one connection until it ends (the handler for :func:`netweave.serve`)."""
        connection = _ServerConnection(self, channel)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    def serve(
        self,
        url: str,
        stack: Stack | str = "lp4,raw",
        *,
        registry: Registry | None = None,
        **options: Any,
    ) -> _Serving:
        """``netweave.serve(url, stack, self.handle, ...)``: await it or ``async with`` it."""
        from ..server import serve

        return serve(url, stack, self.handle, observer=self.observer, registry=registry, **options)

    @property
    def in_flight(self) -> int:
        """Calls running now, over all connections."""
        return self._tracker.count

    @property
    def connections(self) -> int:
        """Connections served now."""
        return len(self._connections)

    @property
    def refused(self) -> int:
        """Requests refused by admission control so far."""
        return self._refused

    def start_draining(self) -> None:
        """Refuse new calls (clients get GOAWAY, then ``Overloaded``); running calls
        finish, and each connection closes once its last call is done."""
        self._tracker.start_draining()
        for connection in list(self._connections):
            connection.drain()

    async def wait_drained(self) -> None:
        """Return once draining started and no call is running."""
        await self._tracker.wait_drained()


class _ServerConnection(RpcPeer):
    """The server's side of one connection."""

    def __init__(self, server: RpcServer, channel: Channel[Any]) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(
            channel,
            keepalive=Keepalive(
                loop.time(),
                interval=server.ping_interval,
                timeout=server.idle_timeout,
                handshake_timeout=server.handshake_timeout,
            ),
            observer=server.observer,
            name=f"{server.name} {channel.remote_address}",
        )
        self._server = server
        self._codec = server._codec_template.fresh()
        self._identity_codec = all(layer.identity for layer in self._codec.layers)
        self._active: dict[int, _Active] = {}
        self._greeted = False
        self._draining = False
        self._closing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.arm_keepalive()
        try:
            await self.read_loop()
        finally:
            tasks = [a.task for a in self._active.values() if a.task is not None]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # -- frames from the client -----------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        if not self._greeted:
            if not isinstance(frame, Hello):
                raise DecodeError(
                    f"the first frame must be HELLO, not {type(frame).__name__}", layer="rpc"
                )
            if frame.version != VERSION:
                self.send_soon(
                    ErrorFrame(0, INTERNAL, "VersionMismatch", f"this server speaks {VERSION}")
                )
                raise DecodeError(
                    f"the client speaks RPC version {frame.version}; this server speaks {VERSION}",
                    layer="rpc",
                )
            self._greeted = True
            self._keepalive.handshake_done(self._loop.time())
            server = self._server
            self.send_soon(
                Hello(VERSION, server.max_in_flight, int((server.idle_timeout or 0) * 1000))
            )
            if self._server._tracker.draining:
                self.drain()
            return
        if isinstance(frame, Request):
            self._admit(frame)
        elif isinstance(frame, Cancel):
            active = self._active.get(frame.call_id)
            if active is not None and active.task is not None:
                active.cancelled_by_peer = True
                active.task.cancel()
        elif isinstance(frame, Credit):
            active = self._active.get(frame.call_id)
            if active is not None:
                active.credit += frame.count
                waiter = active.credit_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        elif isinstance(frame, Ping):
            self.send_soon(Pong(frame.token))
        elif not isinstance(frame, Pong):
            raise DecodeError(f"a client does not send {type(frame).__name__} frames", layer="rpc")

    def _refuse(self, call_id: int, code: int, remote_type: str, message: str) -> None:
        if code == OVERLOADED:
            self._server._refused += 1
        self.send_soon(ErrorFrame(call_id, code, remote_type, message))

    def _admit(self, request: Request) -> None:
        server = self._server
        call_id = request.call_id
        active_calls = self._active
        method = server._methods.get(request.method)
        tracker = server._tracker
        if (
            method is None
            or call_id in active_calls
            or len(active_calls) >= server.max_in_flight
            or self._draining
            or tracker.draining
        ):
            self._refuse_request(request)
            return
        tracker.try_enter()  # cannot refuse: the tracker has no limit and is not draining
        active = _Active(credit=request.credit or 0)
        active_calls[call_id] = active
        active.task = self._loop.create_task(self._run(request, method, active))
        if self._observer is not None:
            self._observer(InFlightChanged(self.name, len(active_calls), "server"))

    def _refuse_request(self, request: Request) -> None:
        """Answer a request that is not admitted, saying why (a reused id is a protocol error)."""
        server = self._server
        call_id = request.call_id
        if call_id in self._active:
            raise DecodeError(
                f"call id {call_id} is already in use on this connection", layer="rpc"
            )
        if self._draining or server._tracker.draining:
            self._refuse(call_id, OVERLOADED, "Draining", "the server is shutting down")
        elif len(self._active) >= server.max_in_flight:
            self._refuse(
                call_id,
                OVERLOADED,
                "TooManyInFlight",
                f"{len(self._active)} calls already in flight on this connection "
                f"(limit {server.max_in_flight}); retry later or open another connection",
            )
        else:
            self._refuse(
                call_id,
                METHOD_NOT_FOUND,
                "MethodNotFound",
                f"no method {request.method!r} (this server has: "
                f"{', '.join(server.methods) or 'none'})",
            )

    # -- running one call ------------------------------------------------------------------

    async def _run(self, request: Request, method: _Method, active: _Active) -> None:
        loop = self._loop
        timed = request.timeout_us is not None or self._observer is not None
        start = loop.time() if timed else 0.0
        deadline = (
            None if request.timeout_us is None else Deadline(start + request.timeout_us / 1e6)
        )
        outcome = "ok"
        try:
            try:
                argument = (
                    request.payload if self._identity_codec else _one(self._codec, request.payload)
                )
            except DecodeError as exc:
                outcome = "BadRequest"
                await self.send(ErrorFrame(request.call_id, BAD_REQUEST, "DecodeError", exc.detail))
                return
            if method.wants_context:
                ctx = CallContext(
                    request.method, request.call_id, self._channel.remote_address, deadline
                )
                args: tuple[Any, ...] = (argument, ctx)
            else:
                args = (argument,)
            try:
                if deadline is None and not method.streaming:
                    # The common case, without the extra coroutine of _invoke.
                    result = await method.handler(*args)  # type: ignore[misc]
                    if not self._identity_codec:
                        result = self._codec.encode(result)
                    self.queue(encode_response(request.call_id, result))
                    if self._queued > _QUEUE_LIMIT:
                        await self.wait_flushed()
                elif deadline is None:
                    await self._invoke(request, method, args, active)
                else:
                    async with deadline:
                        await self._invoke(request, method, args, active)
            except DeadlineExceeded:
                outcome = "DeadlineExceeded"
                await self.send(
                    ErrorFrame(
                        request.call_id,
                        DEADLINE_EXCEEDED,
                        "DeadlineExceeded",
                        f"the handler was cancelled when the deadline passed "
                        f"({loop.time() - start:.3f} s)",
                    )
                )
            except RemoteError as exc:
                outcome = type(exc).__name__
                await self.send(
                    ErrorFrame(
                        request.call_id, exc.code, exc.remote_type or "RemoteError", exc.detail
                    )
                )
            except (asyncio.CancelledError, NetweaveError) as exc:
                if isinstance(exc, asyncio.CancelledError) and active.cancelled_by_peer:
                    outcome = "cancelled"
                    return
                outcome = type(exc).__name__
                if isinstance(exc, asyncio.CancelledError):
                    self.send_soon(
                        ErrorFrame(
                            request.call_id, CANCELLED, "Cancelled", "the server cancelled the call"
                        )
                    )
                    raise
                await self._send_failure(request, exc)
            except Exception as exc:
                outcome = type(exc).__name__
                logger.exception("handler for %r failed", request.method)
                await self._send_failure(request, exc)
        except NetweaveError as exc:  # the connection broke while answering
            outcome = type(exc).__name__
        finally:
            self._finished(request.call_id)
            if self._observer is not None:
                self._observer(
                    CallFinished(self.name, request.method, loop.time() - start, outcome, "server")
                )

    async def _send_failure(self, request: Request, exc: BaseException) -> None:
        message = str(exc) if self._server.expose_errors else "internal error"
        await self.send(ErrorFrame(request.call_id, INTERNAL, type(exc).__name__, message))

    async def _invoke(
        self, request: Request, method: _Method, args: tuple[Any, ...], active: _Active
    ) -> None:
        codec = self._codec
        call_id = request.call_id
        if not method.streaming:
            result = await method.handler(*args)  # type: ignore[misc]
            await self.send(Response(call_id, codec.encode(result)))
            return
        if request.credit is None:
            raise UsageError(f"{request.method!r} streams its answer; call it with stream()")
        items: AsyncIterator[Any] = method.handler(*args)  # type: ignore[assignment]
        async with aclosing(items):  # type: ignore[type-var]
            async for item in items:
                while active.credit <= 0:
                    active.credit_waiter = self._loop.create_future()
                    try:
                        await active.credit_waiter
                    finally:
                        active.credit_waiter = None
                active.credit -= 1
                await self.send(Item(call_id, codec.encode(item)))
        await self.send(End(call_id))

    def _finished(self, call_id: int) -> None:
        if self._active.pop(call_id, None) is not None:
            self._server._tracker.leave()
            if self._observer is not None:
                self._observer(InFlightChanged(self.name, len(self._active), "server"))
        if self._draining and not self._active:
            self._close_soon()

    # -- draining and ending -----------------------------------------------------------------

    def drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        if self._greeted:
            self.send_soon(GoAway())
        if not self._active:
            self._close_soon()

    def _close_soon(self) -> None:
        if self._closing is None and self.failure is None:
            self._closing = self._loop.create_task(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(NetweaveError):
            await self.wait_flushed()
        await self._channel.close()

    def on_terminated(self, error: NetweaveError) -> None:
        for active in self._active.values():
            if active.task is not None:
                active.task.cancel()
