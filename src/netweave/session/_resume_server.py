"""The server end of resumable sessions: sessions outlive connections for a grace period.

Rules of this file:

* A connection opens with OPEN (a new session: a 128-bit id from the injected
  ``rng``, and a task running the application's handler with a
  :class:`ServerSession`) or RESUME (reattach: WELCOME tells the client what we
  received, then both sides replay). RESUME for an unknown session gets EXPIRED.
* A newer connection for a session replaces the one attached (the old one may
  be half-open: its peer is already gone).
* When the connection of a live session is lost, a grace timer starts; a
  RESUME before it fires reattaches, otherwise the session fails with
  ``SessionExpired`` (the handler sees it) and is forgotten.
* The connection handler (the task :func:`netweave.serve` gives each
  connection) lives as long as its connection is attached.
* At most ``max_sessions`` sessions exist; OPEN beyond that is refused by
  closing the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, final

from ..errors import NetweaveError, SessionExpired, UsageError
from ._events import SessionResumed
from ._resume_session import SessionEnd
from ._resume_wire import Expired, Open, Resume, Welcome, decode, encode

if TYPE_CHECKING:
    from random import Random

    from ..observe import Observer
    from ..registry import Registry
    from ..server import _Serving
    from ..stack import Channel, Stack

__all__ = ["ServerSession", "SessionServer"]

logger = logging.getLogger("netweave.session.resume")

#: The application's handler: runs once per session, across reconnections.
SessionHandler = Callable[["ServerSession"], Awaitable[None]]


@final
class ServerSession(SessionEnd):
    """The server's end of one session, handed to the application's handler.

    A message channel: ``send``, ``receive`` (``EndOfStream`` after the client
    closed), ``close``. ``SessionExpired`` when the client did not come back
    within the grace period.
    """

    def __init__(self, server: SessionServer, session_id: bytes) -> None:
        super().__init__(
            codec=server.codec,
            max_unacked=server.max_unacked,
            ack_every=server.ack_every,
            ack_delay=server.ack_delay,
            ping_interval=server.ping_interval,
            idle_timeout=server.idle_timeout,
            close_timeout=server.close_timeout,
            observer=server.observer,
            name=f"{server.name} session {session_id.hex()[:8]}",
        )
        self.session_id = session_id
        self._server = server
        self._grace_timer: asyncio.TimerHandle | None = None
        self._lost_at = 0.0

    @property
    def received(self) -> int:
        """The highest sequence number received in order."""
        return self._received

    def attach(self, conn: Channel[Any], peer_received: int) -> int:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        return super().attach(conn, peer_received)

    def connection_lost(self, conn: Channel[Any], error: NetweaveError) -> None:
        self._lost_at = self._loop.time()
        self._grace_timer = self._loop.call_later(self._server.grace, self._expire)

    def _expire(self) -> None:
        self._grace_timer = None
        self.fail(
            SessionExpired(
                f"{self.name}: the client did not reconnect within the grace period "
                f"({self._server.grace} s)"
            )
        )
        self._server.expired += 1
        self._server._forget(self)

    async def wait_detached(self, conn: Channel[Any]) -> None:
        """Return once ``conn`` is no longer this session's connection."""
        while self._conn is conn:
            await self._wait()

    async def release(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        await super().release()


@final
class SessionServer:
    """Serves resumable sessions: ``handler(session)`` runs once per session.

    Pass :meth:`handle` to :func:`netweave.serve` (or call :meth:`serve`). A
    session survives its connections for ``grace`` seconds; ``rng`` draws the
    session ids. Other knobs as for :class:`~netweave.session.ResumingClient`.
    """

    def __init__(
        self,
        handler: SessionHandler,
        *,
        rng: Random,
        grace: float = 30.0,
        codec: Stack | str = "raw",
        max_sessions: int = 10_000,
        handshake_timeout: float = 10.0,
        max_unacked: int = 1024,
        ack_every: int = 32,
        ack_delay: float = 0.05,
        ping_interval: float | None = 5.0,
        idle_timeout: float | None = 15.0,
        close_timeout: float = 10.0,
        observer: Observer | None = None,
        name: str = "session server",
    ) -> None:
        if not grace > 0 or max_sessions < 1:
            raise UsageError("a SessionServer needs grace > 0 and max_sessions >= 1")
        self._handler = handler
        self._rng = rng
        self.grace = grace
        self.codec = codec
        self.max_sessions = max_sessions
        self.handshake_timeout = handshake_timeout
        self.max_unacked = max_unacked
        self.ack_every = ack_every
        self.ack_delay = ack_delay
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self.observer = observer
        self.name = name
        self._sessions: dict[bytes, ServerSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.expired = 0
        self.resumed = 0

    @property
    def sessions(self) -> int:
        """Sessions alive now (attached or within their grace period)."""
        return len(self._sessions)

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

    async def handle(self, channel: Channel[Any]) -> None:
        """Serve one connection (the handler for :func:`netweave.serve`)."""
        try:
            async with asyncio.timeout(self.handshake_timeout):
                message = await channel.receive()
            if not isinstance(message, bytes | bytearray | memoryview):
                raise UsageError("a session needs a channel of bytes, such as 'lp4,raw'")
            frame = decode(bytes(message))
        except (NetweaveError, TimeoutError):
            return  # no valid opening in time: the server closes the connection
        loop = asyncio.get_running_loop()
        if isinstance(frame, Open):
            if len(self._sessions) >= self.max_sessions:
                logger.warning("%s: refusing a new session, %d exist", self.name, self.max_sessions)
                return
            session_id = self._rng.getrandbits(128).to_bytes(16, "big")
            session = ServerSession(self, session_id)
            self._sessions[session_id] = session
            await channel.send(encode(Welcome(session_id, 0, int(self.grace * 1000))))
            session.attach(channel, 0)
            task = loop.create_task(self._run(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(frame, Resume):
            found = self._sessions.get(frame.session_id)
            if found is None:
                await channel.send(encode(Expired(frame.session_id)))
                return
            session = found
            await channel.send(
                encode(Welcome(session.session_id, session.received, int(self.grace * 1000)))
            )
            downtime = loop.time() - session._lost_at if not session.connected else 0.0
            replayed = session.attach(channel, frame.received)
            self.resumed += 1
            if self.observer is not None:
                self.observer(
                    SessionResumed(session.name, session.session_id.hex(), 1, replayed, downtime)
                )
        else:
            return
        await session.wait_detached(channel)

    async def _run(self, session: ServerSession) -> None:
        try:
            await self._handler(session)
        except asyncio.CancelledError:
            session.abort()  # cancelled (the server is closing): end at once
            self._forget(session)
            raise
        except SessionExpired:
            pass  # counted when the grace period ran out
        except NetweaveError as exc:
            logger.info("%s ended: %s", session.name, exc)
        except Exception:
            logger.exception("the handler of %s failed", session.name)
            session.abort()
        try:
            await session.close()
        finally:
            self._forget(session)

    def _forget(self, session: ServerSession) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]

    async def close(self) -> None:
        """End every session now (their handlers are cancelled). Idempotent."""
        for session in list(self._sessions.values()):
            session.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sessions.clear()
