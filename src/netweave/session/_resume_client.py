"""The client end of a resumable session: reconnects with jittered backoff and resumes.

Rules of this file: a broken connection starts one reconnect task. Attempt
``n`` waits ``uniform(0, min(backoff_max, backoff_base * 2 ** (n - 1)))``
seconds (full jitter, from the injected ``rng``), connects, sends RESUME with
what it received, and attaches on WELCOME (the replay follows). EXPIRED from
the server, or no success within ``give_up_after`` seconds of the break
(default: the server's grace period, after which the server forgot the
session anyway), fails the session with ``SessionExpired``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, final

from ..errors import ConnectFailed, DecodeError, NetweaveError, SessionExpired, UsageError
from ._events import SessionResumed
from ._resume_session import SessionEnd
from ._resume_wire import Expired, Open, Resume, ResumeFrame, Welcome, decode, encode

if TYPE_CHECKING:
    from random import Random

    from ..observe import Observer
    from ..registry import Registry
    from ..stack import Channel, Stack

__all__ = ["ResumingClient"]


@final
class ResumingClient(SessionEnd):
    """A message channel to a :class:`~netweave.session.SessionServer` that survives
    broken connections: every message sent arrives exactly once and in order on
    the other side, across reconnections, until the session is closed or
    expires (``SessionExpired`` from ``send``/``receive``).

    Create it with :meth:`connect`. ``stack`` is the connection's stack (a
    channel of bytes, default ``lp4,raw``); ``codec`` encodes the messages
    (default ``raw``). ``rng`` draws the reconnect backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        rng: Random,
        stack: Stack | str = "lp4,raw",
        codec: Stack | str = "raw",
        registry: Registry | None = None,
        connect_timeout: float = 5.0,
        handshake_timeout: float = 5.0,
        backoff_base: float = 0.05,
        backoff_max: float = 2.0,
        give_up_after: float | None = None,
        max_unacked: int = 1024,
        ack_every: int = 32,
        ack_delay: float = 0.05,
        ping_interval: float | None = 5.0,
        idle_timeout: float | None = 15.0,
        close_timeout: float = 10.0,
        observer: Observer | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            codec=codec,
            max_unacked=max_unacked,
            ack_every=ack_every,
            ack_delay=ack_delay,
            ping_interval=ping_interval,
            idle_timeout=idle_timeout,
            close_timeout=close_timeout,
            observer=observer,
            name=name if name is not None else f"session {url}",
        )
        if not (backoff_base > 0 and backoff_max >= backoff_base):
            raise UsageError("reconnect backoff needs 0 < backoff_base <= backoff_max")
        self.url = url
        self._rng = rng
        self._conn_stack = stack
        self._registry = registry
        self._connect_timeout = connect_timeout
        self._handshake_timeout = handshake_timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._give_up_after = give_up_after
        self.session_id = b""
        self.grace: float | None = None
        self.reconnects = 0
        self._reconnecting: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, **options: Any) -> ResumingClient:
        """Open a new session at ``url`` (``options`` as for the constructor; ``rng``
        is required). Raises ``ConnectFailed`` if the server cannot be reached or
        does not answer the handshake in time (wrap it in a
        :class:`~netweave.resilience.RetryPolicy` to retry the first connection)."""
        client = cls(url, **options)
        conn = await client._dial()
        try:
            await conn.send(encode(Open()))
            frame = await client._first_frame(conn)
        except BaseException:
            conn.abort()
            raise
        if not isinstance(frame, Welcome):
            conn.abort()
            raise DecodeError(
                f"the server answered OPEN with {type(frame).__name__}", layer="resume"
            )
        client.session_id = frame.session_id
        client.grace = frame.grace_ms / 1000
        client.attach(conn, frame.received)
        return client

    async def _dial(self) -> Channel[Any]:
        from ..client import connect

        return await connect(
            self.url,
            self._conn_stack,
            timeout=self._connect_timeout,
            registry=self._registry,
            observer=self._observer,
        )

    async def _first_frame(self, conn: Channel[Any]) -> ResumeFrame:
        try:
            async with asyncio.timeout(self._handshake_timeout):
                message = await conn.receive()
        except TimeoutError:
            raise ConnectFailed(
                f"{self.name}: the server did not answer the session handshake within "
                f"{self._handshake_timeout} s"
            ) from None
        if not isinstance(message, bytes | bytearray | memoryview):
            raise DecodeError("a session needs a channel of bytes (lp4,raw)", layer="resume")
        return decode(bytes(message))

    # -- reconnecting --------------------------------------------------------------------

    def connection_lost(self, conn: Channel[Any], error: NetweaveError) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = self._loop.create_task(self._reconnect(error))

    async def _reconnect(self, cause: NetweaveError) -> None:
        loop = self._loop
        broke = loop.time()
        limit = self._give_up_after if self._give_up_after is not None else self.grace or 30.0
        attempt = 0
        while self._error is None:
            attempt += 1
            cap = min(self._backoff_max, self._backoff_base * 2 ** min(attempt - 1, 32))
            delay = self._rng.uniform(0.0, cap)
            if loop.time() + delay > broke + limit:
                self.fail(
                    SessionExpired(
                        f"{self.name}: could not reconnect within {limit} s of the break "
                        f"({attempt - 1} attempts; the break: {cause}); the server has "
                        "forgotten the session"
                    )
                )
                return
            await asyncio.sleep(delay)
            conn: Channel[Any] | None = None
            try:
                conn = await self._dial()
                await conn.send(encode(Resume(self.session_id, self._received)))
                frame = await self._first_frame(conn)
            except NetweaveError:
                if conn is not None:
                    conn.abort()
                continue
            if isinstance(frame, Expired):
                conn.abort()
                self.fail(
                    SessionExpired(
                        f"{self.name}: the server no longer holds the session (its grace "
                        f"period passed while we were away); messages in flight may be lost"
                    )
                )
                return
            if not isinstance(frame, Welcome) or frame.session_id != self.session_id:
                conn.abort()
                continue
            self.reconnects += 1
            replayed = self.attach(conn, frame.received)
            if self._observer is not None:
                self._observer(
                    SessionResumed(
                        self.name, self.session_id.hex(), attempt, replayed, loop.time() - broke
                    )
                )
            return

    async def release(self) -> None:
        task = self._reconnecting
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().release()
