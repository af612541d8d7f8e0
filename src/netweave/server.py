"""``netweave.serve``: run a handler for every connection to an endpoint URL.

Stream schemes accept connections and run ``handler(channel)`` in one task per
connection. Datagram schemes demultiplex by source address: each new peer
gets its own :class:`~netweave.stack.DatagramChannel` and handler task, so the
same handler code serves TCP and UDP. A peer that stays silent for
``peer_idle_timeout`` seconds ends its channel (``async for`` stops); at most
``max_peers`` peers are served at once, datagrams from further ones are
dropped and counted.

Usage::

    async with netweave.serve("tcp://127.0.0.1:0", "lp4,json", handler) as server:
        print(server.url)
        await server.serve_forever()

``await netweave.serve(...)`` also works and returns the started server, which
is closed with ``await server.close()``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, final

from .client import check_stack_fits, resolve_stack
from .endpoints import Endpoint, parse_endpoint
from .errors import (
    ClosedResourceError,
    ConnectionBroken,
    EndOfStream,
    ProtocolError,
    UsageError,
)
from .stack import Channel, DatagramChannel, Stack, StreamChannel
from .transports.base import Address, DatagramEndpoint, Listener

if TYPE_CHECKING:
    from .observe import Observer
    from .registry import Registry
    from .transports.base import Transport

__all__ = ["Handler", "Server", "serve"]

logger = logging.getLogger("netweave.server")

#: Consecutive errors after which a server's datagram endpoint counts as dead.
_MAX_DISPATCH_FAILURES = 100

#: A connection handler: called with each new channel, runs until it is done with it.
Handler = Callable[[Channel[Any]], Awaitable[None]]


@final
class Server:
    """A running server. Create it with :func:`serve`."""

    def __init__(
        self,
        endpoint: Endpoint,
        transport: Transport,
        stack: Stack,
        handler: Handler,
        *,
        observer: Observer | None,
        max_peers: int,
        peer_idle_timeout: float,
        peer_queue: int,
    ) -> None:
        self._endpoint = endpoint
        self._transport = transport
        self._stack = stack
        self._handler = handler
        self._observer = observer
        self._max_peers = max_peers
        self._peer_idle_timeout = peer_idle_timeout
        self._peer_queue = peer_queue
        self._listener: Listener | None = None
        self._datagrams: DatagramEndpoint | None = None
        self._peers: dict[Address, _PeerEndpoint] = {}
        # Dicts, not sets: shutdown walks them in creation order, so a simulated
        # run closes connections in the same order in every process.
        self._channels: dict[Channel[Any], None] = {}
        self._tasks: dict[asyncio.Task[None], None] = {}
        self._main: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._closing = False
        self._accepting = True
        self._url = endpoint.url
        self.refused_peers = 0
        self.handler_errors = 0

    async def _start(self) -> None:
        if self._transport.kind == "stream":
            self._listener = await self._transport.listen(self._endpoint, observer=self._observer)
            self._url = self._listener.url
            self._main = asyncio.create_task(self._accept_loop(self._listener))
        else:
            self._datagrams = await self._transport.bind(self._endpoint, observer=self._observer)
            self._url = self._datagrams.url
            self._main = asyncio.create_task(self._dispatch_loop(self._datagrams))

    @property
    def url(self) -> str:
        """The URL clients use to reach this server (real port when 0 was asked)."""
        return self._url

    @property
    def connections(self) -> int:
        """Channels currently open (connections, or datagram peers)."""
        return len(self._channels)

    async def serve_forever(self) -> None:
        """Wait until the server is closed (by :meth:`close` or cancellation)."""
        await self._closed.wait()

    async def stop_accepting(self) -> None:
        """Stop taking new connections (and new datagram peers); channels already
        open keep running. The first step of a graceful shutdown. Idempotent."""
        self._accepting = False
        if self._listener is not None:
            if self._main is not None:
                self._main.cancel()
            await self._listener.close()

    async def close(self, *, grace: float = 0.0) -> None:
        """Stop accepting, give handlers ``grace`` seconds to finish, then cancel
        them and close their channels. Idempotent.

        A handler may call it too: its own task is neither cancelled nor waited
        for (its channel is aborted like every other)."""
        current = asyncio.current_task()
        if self._closing:
            if current not in self._tasks:
                await self._closed.wait()
            return
        self._closing = True

        def others() -> list[asyncio.Task[None]]:
            return [task for task in self._tasks if task is not current]

        try:
            if self._main is not None:
                self._main.cancel()
            if self._listener is not None:
                await self._listener.close()
            if others() and grace > 0:
                await asyncio.wait(others(), timeout=grace)
            for task in others():
                task.cancel()
            for channel in list(self._channels):
                channel.abort()
            if others():
                await asyncio.wait(others())
            if self._main is not None:
                await asyncio.wait({self._main})
            if self._datagrams is not None:
                await self._datagrams.close()
        finally:
            self._closed.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- stream side --------------------------------------------------------

    async def _accept_loop(self, listener: Listener) -> None:
        async for connection in listener:
            channel: Channel[Any] = StreamChannel(
                connection, self._stack.fresh(), observer=self._observer
            )
            self._spawn(channel)

    # -- datagram side ------------------------------------------------------

    async def _dispatch_loop(self, endpoint: DatagramEndpoint) -> None:
        failures = 0
        while True:
            try:
                data, address = await endpoint.receive_from()
            except ClosedResourceError:
                return
            except ConnectionBroken:
                # An ICMP error for some earlier reply: keep serving. An endpoint
                # that fails on every call is dead: stop instead of spinning.
                failures += 1
                if failures >= _MAX_DISPATCH_FAILURES:
                    logger.error("datagram endpoint %s keeps failing; not serving it", self._url)
                    return
                await asyncio.sleep(0)
                continue
            failures = 0
            peer = self._peers.get(address)
            if peer is None:
                if len(self._peers) >= self._max_peers or not self._accepting:
                    self.refused_peers += 1
                    continue
                peer = _PeerEndpoint(
                    endpoint,
                    address,
                    limit=self._peer_queue,
                    idle_timeout=self._peer_idle_timeout,
                    on_close=self._peers.pop,
                )
                self._peers[address] = peer
                self._spawn(DatagramChannel(peer, self._stack.fresh(), observer=self._observer))
            peer.deliver(data)

    # -- handlers -------------------------------------------------------------

    def _spawn(self, channel: Channel[Any]) -> None:
        self._channels[channel] = None
        task = asyncio.create_task(self._run(channel))
        self._tasks[task] = None
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _run(self, channel: Channel[Any]) -> None:
        try:
            result = self._handler(channel)
            if not inspect.isawaitable(result):
                raise UsageError(
                    f"the server handler {self._handler!r} must be an async function "
                    f"(it returned {type(result).__name__})"
                )
            await result
        except (EndOfStream, ConnectionBroken, ClosedResourceError):
            pass  # the connection ended; nothing to report
        except ProtocolError as exc:
            logger.info("closing %s: %s", channel.remote_address, exc)
        except Exception:
            self.handler_errors += 1
            logger.exception("handler failed for %s", channel.remote_address)
        finally:
            self._channels.pop(channel, None)
            if self._closing:
                channel.abort()
            else:
                try:
                    await channel.close()
                except asyncio.CancelledError:
                    channel.abort()
                    raise


@final
class _PeerEndpoint(DatagramEndpoint):
    """One peer's view of a shared datagram endpoint, fed by the server's dispatcher."""

    def __init__(
        self,
        shared: DatagramEndpoint,
        address: Address,
        *,
        limit: int,
        idle_timeout: float,
        on_close: Callable[[Address], object],
    ) -> None:
        self._shared = shared
        self._address = address
        self._limit = limit
        self._idle_timeout = idle_timeout
        self._on_close = on_close
        self._queue: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped = 0

    def deliver(self, data: bytes) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._limit:
            self._dropped += 1
            return
        self._queue.append(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send_to(self, data: bytes, address: Address | None = None) -> None:
        if self._closed:
            raise ClosedResourceError(f"peer channel {self._address!r} is closed")
        await self._shared.send_to(data, self._address if address is None else address)

    async def receive_from(self) -> tuple[bytes, Address]:
        while not self._queue:
            if self._closed:
                raise ClosedResourceError(f"peer channel {self._address!r} is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._idle_timeout):
                    await self._waiter
            except TimeoutError:
                self.abort()
                raise EndOfStream(
                    f"peer {self._address!r} idle for {self._idle_timeout} s"
                ) from None
            finally:
                self._waiter = None
        return self._queue.popleft(), self._address

    async def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._on_close(self._address)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def max_datagram_size(self) -> int:
        return self._shared.max_datagram_size

    @property
    def local_address(self) -> Address:
        return self._shared.local_address

    @property
    def remote(self) -> Address | None:
        return self._address

    @property
    def url(self) -> str:
        return self._shared.url

    @property
    def dropped(self) -> int:
        return self._dropped


@final
class _Serving:
    """What :func:`serve` returns: await it, or use it with ``async with``."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def _start(self) -> Server:
        await self._server._start()
        return self._server

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.close()


def serve(
    url: str,
    stack: Stack | str,
    handler: Handler,
    *,
    observer: Observer | None = None,
    registry: Registry | None = None,
    max_peers: int = 1024,
    peer_idle_timeout: float = 60.0,
    peer_queue: int = 256,
) -> _Serving:
    """Serve ``handler`` on ``url`` with ``stack`` (see the module docstring).

    Bad URLs and stack specs raise here, before anything listens;
    ``ListenFailed`` is raised when the server starts and cannot bind.
    """
    endpoint, transport = parse_endpoint(url, registry=registry)
    template = resolve_stack(stack, registry=registry, observer=observer)
    check_stack_fits(template, transport.kind, url)
    if max_peers < 1 or peer_queue < 1 or not peer_idle_timeout > 0:
        raise UsageError("max_peers and peer_queue must be >= 1 and peer_idle_timeout > 0")
    return _Serving(
        Server(
            endpoint,
            transport,
            template,
            handler,
            observer=observer,
            max_peers=max_peers,
            peer_idle_timeout=peer_idle_timeout,
            peer_queue=peer_queue,
        )
    )
