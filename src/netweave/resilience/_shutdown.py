"""Graceful shutdown: stop accepting, let in-flight requests finish within a
deadline, then close what is left.

Rules of this file: a *drainable* is anything that can stop admitting new work
and say when its work in flight is done (:class:`InFlight` is the ready-made
one; an RPC server is another). :func:`graceful_shutdown` is the order of
operations; it never waits past its deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, final

from ..errors import Overloaded, UsageError

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["Drainable", "InFlight", "graceful_shutdown"]


class Drainable(Protocol):
    """Work that can be drained: refuse new work, then report when the rest is done."""

    def start_draining(self) -> None:
        """Refuse new work from now on; work already admitted continues. Idempotent."""

    async def wait_drained(self) -> None:
        """Return once draining started and no admitted work is left."""


@final
class InFlight:
    """Counts requests in flight, bounded by ``limit``, and drains them.

    :meth:`try_enter` admits a request unless ``limit`` are already in flight
    or draining has started; :meth:`track` does the same as a context manager
    and raises :class:`~netweave.errors.Overloaded` when it refuses.
    """

    def __init__(self, *, limit: int | None = None, name: str = "requests") -> None:
        if limit is not None and limit < 1:
            raise UsageError(f"an in-flight limit must be >= 1 or None, not {limit}")
        self.limit = limit
        self.name = name
        self._count = 0
        self._draining = False
        self._idle: asyncio.Event | None = None
        self.refused = 0

    @property
    def count(self) -> int:
        """Requests admitted and not yet finished."""
        return self._count

    @property
    def draining(self) -> bool:
        """True once :meth:`start_draining` was called."""
        return self._draining

    def refusal(self) -> str | None:
        """Why a new request would be refused right now, or ``None`` if it would be admitted."""
        if self._draining:
            return f"{self.name}: shutting down; not admitting new requests"
        if self.limit is not None and self._count >= self.limit:
            return f"{self.name}: {self._count} requests already in flight (limit {self.limit})"
        return None

    def try_enter(self) -> bool:
        """Admit one request (``True``) or refuse it (``False``, counted in ``refused``)."""
        if self._draining or (self.limit is not None and self._count >= self.limit):
            self.refused += 1
            return False
        self._count += 1
        return True

    def leave(self) -> None:
        """One admitted request finished."""
        if self._count <= 0:
            raise UsageError(f"{self.name}: leave() without a matching enter")
        self._count -= 1
        if self._count == 0:
            self._wake()

    @contextmanager
    def track(self) -> Iterator[None]:
        """Admit the block as one request, or raise ``Overloaded`` if refused."""
        reason = self.refusal()
        if not self.try_enter():
            raise Overloaded(reason or "refused")
        try:
            yield
        finally:
            self.leave()

    def start_draining(self) -> None:
        """Refuse every new request from now on. Idempotent."""
        self._draining = True
        self._wake()

    async def wait_drained(self) -> None:
        """Return once draining has started and no request is in flight."""
        while not (self._draining and self._count == 0):
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    def _wake(self) -> None:
        if self._idle is not None:
            self._idle.set()


async def graceful_shutdown(
    server: Server, *, timeout: float, drain: Iterable[Drainable] = ()
) -> bool:
    """Shut ``server`` down gracefully within ``timeout`` seconds.

    1. Stop accepting new connections (open ones continue).
    2. Tell every drainable to refuse new work, and wait until each has none left.
    3. Close the server, giving connection handlers what is left of ``timeout``
       to finish on their own; then cancel them and abort their channels.

    Returns ``True`` if every drainable finished its work in time, ``False`` if
    the deadline cut work short.
    """
    if not timeout >= 0:
        raise UsageError(f"a shutdown timeout must be >= 0 seconds, not {timeout}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await server.stop_accepting()
    drains = list(drain)
    for item in drains:
        item.start_draining()
    finished = True
    if drains:
        try:
            async with asyncio.timeout_at(deadline):
                for item in drains:
                    await item.wait_drained()
        except TimeoutError:
            finished = False
    await server.close(grace=max(0.0, deadline - loop.time()))
    return finished
