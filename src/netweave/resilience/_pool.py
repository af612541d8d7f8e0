"""A connection pool for one endpoint: bounded size, health check on checkout,
idle eviction, and waiting with a deadline when every connection is busy.

Rules of this file:

* ``size`` counts every connection the pool is responsible for: idle ones,
  checked-out ones, and *slots* reserved for connections being created. It
  never exceeds ``max_size``.
* What a released connection (or a freed slot) becomes is decided in one
  place, :meth:`Pool._hand_off`: the oldest live waiter gets it, else it goes
  idle (a slot is simply given up).
* A waiter that is cancelled or times out *after* it was handed something
  hands it straight on, so nothing leaks whatever the timing.
* Idle connections are reused newest first, so surplus ones age out; a timer
  on the loop evicts them after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, final

from ..errors import ClosedResourceError, PoolExhausted, RemoteError, UsageError
from ._deadline import Deadline, current_deadline
from ._events import PoolWaited

if TYPE_CHECKING:
    from types import TracebackType

    from ..observe import Observer
    from ..stack import Channel, Stack

__all__ = ["Pool", "Poolable"]

logger = logging.getLogger("netweave.resilience.pool")


class Poolable(Protocol):
    """What a pool needs from a connection: an async, idempotent ``close``."""

    async def close(self) -> None: ...


C = TypeVar("C", bound=Poolable)

#: A health check: ``True`` (or an awaitable of it) when the connection is usable.
HealthCheck = Callable[[C], Awaitable[bool]]


@final
class Pool(Generic[C]):
    """Connections to one endpoint, made by ``factory`` and reused.

    ``async with pool.checkout() as conn:`` borrows a connection and returns it
    afterwards; if the block raises (anything but a ``RemoteError``, which means
    the peer answered), the connection is closed instead of reused.
    :meth:`acquire` / :meth:`release` are the same in two calls.

    When all ``max_size`` connections are out, a checkout waits, first come first
    served, until one is returned or the deadline passes (``timeout`` seconds, or
    the current deadline if tighter): then ``PoolExhausted``. A cancelled or
    timed-out waiter never takes a connection with it. ``health_check`` runs on
    every idle connection before it is handed out; one that fails (returns
    false or raises) is closed and replaced. Idle connections are closed after
    ``idle_timeout`` seconds (``None``: kept until the pool closes).
    """

    def __init__(
        self,
        factory: Callable[[], Awaitable[C]],
        *,
        max_size: int = 10,
        health_check: HealthCheck[C] | None = None,
        idle_timeout: float | None = 60.0,
        close_timeout: float = 5.0,
        observer: Observer | None = None,
        name: str = "pool",
    ) -> None:
        if max_size < 1:
            raise UsageError(f"a pool needs max_size >= 1, not {max_size}")
        if idle_timeout is not None and not idle_timeout > 0:
            raise UsageError(f"idle_timeout must be positive or None, not {idle_timeout}")
        self._factory = factory
        self.max_size = max_size
        self._health_check = health_check
        self.idle_timeout = idle_timeout
        self._close_timeout = close_timeout
        self.observer = observer
        self.name = name
        self._idle: deque[tuple[C, float]] = deque()
        self._in_use: set[C] = set()
        self._size = 0
        self._waiters: deque[asyncio.Future[C | None]] = deque()
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False
        self.created = 0
        self.discarded = 0

    # -- introspection ------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections the pool holds: idle + checked out + being created."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections waiting idle in the pool."""
        return len(self._idle)

    @property
    def in_use(self) -> int:
        """Connections checked out right now."""
        return len(self._in_use)

    @property
    def waiting(self) -> int:
        """Checkouts waiting for a connection."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    # -- checkout -------------------------------------------------------------------

    @asynccontextmanager
    async def checkout(self, *, timeout: float | None = None) -> AsyncIterator[C]:
        """Borrow a connection for the ``async with`` block (see the class docstring)."""
        conn = await self.acquire(timeout=timeout)
        try:
            yield conn
        except RemoteError:
            self.release(conn)
            raise
        except BaseException:
            self.release(conn, discard=True)
            raise
        self.release(conn)

    async def acquire(self, *, timeout: float | None = None) -> C:
        """Take a connection (idle, or newly made); pair with :meth:`release`.

        Raises ``PoolExhausted`` when none frees up before the deadline,
        ``ClosedResourceError`` once the pool is closed, and whatever the factory
        raises when a new connection cannot be made.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = current_deadline()
        if timeout is not None:
            deadline = Deadline.after(timeout, now=loop.time()).tighter(deadline)
        while True:
            item = await self._take(loop, deadline)
            if item is None:
                return await self._create(deadline)
            if await self._healthy(item):
                self._in_use.add(item)
                return item
            # Unhealthy: close it and use its slot for a fresh connection.
            self.discarded += 1
            self._close_later(item)
            return await self._create(deadline)

    def release(self, conn: C, *, discard: bool = False) -> None:
        """Return a checked-out connection; ``discard=True`` closes it instead.

        Synchronous so it can run in any ``finally``. Raises ``UsageError`` for a
        connection that is not checked out from this pool.
        """
        if conn not in self._in_use:
            raise UsageError(f"{self.name}: {conn!r} is not checked out from this pool")
        self._in_use.discard(conn)
        if discard or self._closed:
            if discard:
                self.discarded += 1
            self._close_later(conn)
            self._hand_off(None)
        else:
            self._hand_off(conn)

    async def _take(self, loop: asyncio.AbstractEventLoop, deadline: Deadline | None) -> C | None:
        """An idle connection, or ``None`` meaning "a slot is yours: create one"."""
        if self._idle:
            conn, _ = self._idle.pop()
            return conn
        if self._size < self.max_size:
            self._size += 1
            return None
        waiter: asyncio.Future[C | None] = loop.create_future()
        self._waiters.append(waiter)
        started = loop.time()
        outcome = "acquired"
        try:
            if deadline is None:
                return await waiter
            async with asyncio.timeout_at(deadline.when):
                return await waiter
        except TimeoutError:
            outcome = "timeout"
            raise PoolExhausted(
                f"{self.name}: all {self.max_size} connections stayed busy for "
                f"{loop.time() - started:.3f} s, until the deadline; raise max_size or "
                "return connections sooner"
            ) from None
        except ClosedResourceError:
            outcome = "closed"
            raise
        except BaseException:
            outcome = "cancelled"
            raise
        finally:
            if outcome != "acquired":
                self._abandon(waiter)
            if self.observer is not None:
                self.observer(PoolWaited(self.name, loop.time() - started, outcome, self.waiting))

    def _abandon(self, waiter: asyncio.Future[C | None]) -> None:
        """A waiter gave up: if something was already handed to it, pass it on."""
        with suppress(ValueError):
            self._waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            self._hand_off(waiter.result())
        elif not waiter.done():
            waiter.cancel()

    async def _create(self, deadline: Deadline | None) -> C:
        """Make a connection in a slot this caller holds; the slot is freed on failure."""
        try:
            if deadline is None:
                conn = await self._factory()
            else:
                async with asyncio.timeout_at(deadline.when):
                    conn = await self._factory()
        except TimeoutError:
            self._hand_off(None)
            raise PoolExhausted(
                f"{self.name}: making a new connection did not finish before the deadline"
            ) from None
        except BaseException:
            self._hand_off(None)
            raise
        self.created += 1
        if self._closed:
            self._close_later(conn)
            self._hand_off(None)
            raise ClosedResourceError(f"{self.name}: the pool closed while connecting")
        self._in_use.add(conn)
        return conn

    async def _healthy(self, conn: C) -> bool:
        if self._health_check is None:
            return True
        try:
            return bool(await self._health_check(conn))
        except asyncio.CancelledError:
            self.discarded += 1
            self._close_later(conn)
            self._hand_off(None)
            raise
        except Exception:
            logger.debug("%s: health check raised; replacing the connection", self.name)
            return False

    # -- the one place a free connection or slot goes --------------------------------

    def _hand_off(self, item: C | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if item is None:
            self._size -= 1
        elif self._closed:
            self._size -= 1
            self._close_later(item)
        else:
            self._idle.append((item, asyncio.get_running_loop().time()))
            self._arm_reaper()

    # -- idle eviction ----------------------------------------------------------------

    def _arm_reaper(self) -> None:
        if self.idle_timeout is None or self._reaper is not None or not self._idle:
            return
        due = self._idle[0][1] + self.idle_timeout
        self._reaper = asyncio.get_running_loop().call_at(due, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        assert self.idle_timeout is not None
        now = asyncio.get_running_loop().time()
        while self._idle and self._idle[0][1] + self.idle_timeout <= now:
            conn, _ = self._idle.popleft()
            self._size -= 1
            self._close_later(conn)
        self._arm_reaper()

    # -- closing -----------------------------------------------------------------------

    def _close_later(self, conn: C) -> None:
        task = asyncio.get_running_loop().create_task(self._close_one(conn))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    async def _close_one(self, conn: C) -> None:
        try:
            async with asyncio.timeout(self._close_timeout):
                await conn.close()
        except Exception:  # a connection that fails to close is gone all the same
            abort = getattr(conn, "abort", None)
            if callable(abort):
                abort()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.name}: the pool is closed")

    async def close(self) -> None:
        """Close idle connections, fail waiters with ``ClosedResourceError``; connections
        still checked out are closed when released. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._reaper is not None:
                self._reaper.cancel()
                self._reaper = None
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(ClosedResourceError(f"{self.name}: the pool closed"))
            while self._idle:
                conn, _ = self._idle.popleft()
                self._size -= 1
                self._close_later(conn)
        while self._closing_tasks:
            await asyncio.wait(set(self._closing_tasks))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- a pool of channels -----------------------------------------------------------

    @staticmethod
    def connecting(
        url: str,
        stack: Stack | str,
        *,
        max_size: int = 10,
        idle_timeout: float | None = 60.0,
        health_check: HealthCheck[Channel[Any]] | None = None,
        observer: Observer | None = None,
    ) -> Pool[Channel[Any]]:
        """A pool of channels made with :func:`netweave.connect` to ``url``.

        Without an explicit ``health_check``, a stream channel whose connection
        is already closing is treated as unhealthy.
        """
        from ..client import connect

        async def factory() -> Channel[Any]:
            return await connect(url, stack, observer=observer)

        return Pool(
            factory,
            max_size=max_size,
            idle_timeout=idle_timeout,
            health_check=health_check if health_check is not None else _channel_alive,
            observer=observer,
            name=f"pool {url}",
        )

    def __repr__(self) -> str:
        return (
            f"Pool({self.name!r}, size={self._size}/{self.max_size}, idle={self.idle}, "
            f"in_use={self.in_use}, waiting={self.waiting})"
        )


async def _channel_alive(channel: Channel[Any]) -> bool:
    connection = getattr(channel, "connection", None)
    return not bool(getattr(connection, "is_closing", False))
