"""A :class:`Listener` over an asyncio server (TCP, Unix, simulated TCP).

asyncio accepts eagerly; accepted connections wait in a queue of at most
``backlog`` entries until :meth:`accept` takes them. Beyond that, new
connections are aborted (and counted in ``refused``) so memory stays bounded
while nobody accepts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import final

from ..errors import ClosedResourceError, UsageError
from .base import Listener, StreamConnection

__all__ = ["AsyncioListener"]


@final
class AsyncioListener(Listener):
    """Accept queue fed by :meth:`offer`, which the protocol factory's connections call."""

    def __init__(self, *, url: str, backlog: int) -> None:
        self._url = url
        self._backlog = backlog
        self._server: asyncio.AbstractServer | None = None
        self._queue: deque[StreamConnection] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.refused = 0

    def attach(self, server: asyncio.AbstractServer, url: str) -> None:
        """Bind this listener to the started asyncio server and its real URL."""
        self._server = server
        self._url = url

    def offer(self, connection: StreamConnection) -> None:
        """Called when a connection is made: queue it, or abort it if the queue is full."""
        if self._closed or len(self._queue) >= self._backlog:
            self.refused += 1
            connection.abort()
            return
        self._queue.append(connection)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def accept(self) -> StreamConnection:
        while not self._queue:
            if self._closed:
                raise ClosedResourceError(f"listener {self._url} is closed")
            if self._waiter is not None:
                raise UsageError(f"listener {self._url}: another task is already accepting")
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
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        while self._queue:
            self._queue.popleft().abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return self._url
