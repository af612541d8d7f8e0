"""One end of a resumable session: an ordered message stream that outlives connections.

Rules of this file:

* Each side numbers its messages 1, 2, 3...; a message stays in the bounded
  replay buffer until the peer acknowledges it; ``send`` waits while the
  buffer holds ``max_unacked`` messages (that is backpressure).
* The receiver delivers sequence number ``received + 1`` and drops anything at
  or below ``received`` (a replayed duplicate), so every message reaches the
  application exactly once and in order, across any number of reconnections.
  A gap on one connection (the transport is ordered) is a protocol error.
* One writer task per connection sends, in order: control frames first, then
  the replay buffer from its cursor. Attaching a connection sets the cursor
  just past what the peer says it received: that is the replay.
* Acknowledgements go out every ``ack_every`` messages, or ``ack_delay``
  seconds after the first unacknowledged one, and at once for a FIN.
* The end of stream is a FIN that takes a sequence number, so it is ordered
  and replayed like data. :meth:`close` waits until the peer acknowledged
  everything (the session fails if it cannot), then lingers up to
  ``close_timeout`` for the peer to end its own stream too.
* A lost connection is reported once to :meth:`connection_lost` (the client
  reconnects; the server starts its grace period). A failed session raises
  its error (such as ``SessionExpired``) from ``send`` and ``receive``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import (
    ClosedResourceError,
    ConnectionBroken,
    DecodeError,
    EndOfStream,
    NetweaveError,
    PeerUnresponsive,
    UsageError,
)
from ..stack import Channel, Stack
from ._keepalive import Keepalive, KeepaliveAction
from ._resume_wire import (
    Ack,
    Data,
    Fin,
    ResumeFrame,
    SessionPing,
    SessionPong,
    decode,
    encode,
)

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["SessionEnd"]


class SessionEnd(Channel[Any]):
    """The machinery both ends share; see the module docstring."""

    def __init__(
        self,
        *,
        codec: Stack | str,
        max_unacked: int,
        ack_every: int,
        ack_delay: float,
        ping_interval: float | None,
        idle_timeout: float | None,
        close_timeout: float,
        observer: Observer | None,
        name: str,
    ) -> None:
        stack = Stack.parse(codec) if isinstance(codec, str) else codec.fresh()
        if stack.lower_kind != "frame":
            raise UsageError(f"a session codec must start with a codec, not {stack.spec!r}")
        if max_unacked < 1 or ack_every < 1 or not ack_delay > 0:
            raise UsageError("max_unacked and ack_every must be >= 1 and ack_delay > 0")
        Keepalive(0.0, interval=ping_interval, timeout=idle_timeout)  # validates the pair
        self._stack = stack
        self._loop = asyncio.get_running_loop()
        self.max_unacked = max_unacked
        self._ack_every = ack_every
        self._ack_delay = ack_delay
        self._ping_interval = ping_interval
        self._idle_timeout = idle_timeout
        self._close_timeout = close_timeout
        self._observer = observer
        self.name = name
        # sending side
        self._next_seq = 1
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._cursor = 1  # next sequence number to put on the current connection
        self._fin_seq: int | None = None
        # receiving side
        self._received = 0
        self._inbox: deque[Any] = deque()
        self._inbox_limit = max_unacked
        self._peer_fin = False
        self._ack_pending = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        # the current connection
        self._conn: Channel[Any] | None = None
        self._control: deque[bytes] = deque()
        self._wake_writer = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._keepalive: Keepalive | None = None
        self._ka_timer: asyncio.TimerHandle | None = None
        self._ping_token = 0
        # life
        self._changed = asyncio.Event()
        self._error: NetweaveError | None = None
        self._closing = False
        self._released = False
        self.delivered = 0
        self.replayed = 0

    # -- Channel -------------------------------------------------------------------------

    @property
    def stack(self) -> Stack:
        return self._stack

    @property
    def remote_address(self) -> str:
        return "" if self._conn is None else self._conn.remote_address

    @property
    def connected(self) -> bool:
        """True while a connection is attached."""
        return self._conn is not None

    @property
    def unacked(self) -> int:
        """Messages sent and not yet acknowledged (the replay buffer)."""
        return len(self._unacked)

    async def send(self, message: Any) -> None:
        if self._closing:
            raise ClosedResourceError(f"{self.name}: send after close on our side")
        payload = self._stack.encode(message)
        while len(self._unacked) >= self.max_unacked:
            self._check()
            await self._wait()
        self._check()
        seq = self._next_seq
        self._next_seq += 1
        self._unacked.append((seq, encode(Data(seq, payload))))
        self._wake_writer.set()

    async def receive(self) -> Any:
        while True:
            if self._inbox:
                message = self._inbox.popleft()
                if len(self._inbox) == self._inbox_limit - 1:
                    self._notify()  # a reader paused on a full inbox may go on
                return message
            if self._peer_fin:
                raise EndOfStream(f"{self.name}: the peer ended the session")
            self._check()
            if self._released:
                raise ClosedResourceError(f"{self.name}: receive after close on our side")
            await self._wait()

    async def close(self) -> None:
        """End our stream, wait until the peer has everything, linger (up to
        ``close_timeout``) until it ended its own, then release. Idempotent."""
        if self._closing:
            return
        self._closing = True
        try:
            if self._error is None:
                seq = self._next_seq
                self._next_seq += 1
                self._fin_seq = seq
                self._unacked.append((seq, encode(Fin(seq))))
                self._wake_writer.set()
                # Everything we sent must be acknowledged first (across reconnections;
                # the session fails if that becomes impossible)...
                while self._error is None and self._unacked:
                    await self._wait()
                # ...then we linger for the peer's own end of stream.
                async with asyncio.timeout(self._close_timeout):
                    while self._error is None and not self._peer_fin:
                        await self._wait()
        except (TimeoutError, NetweaveError):
            pass  # the peer did not confirm in time or the session failed: release anyway
        finally:
            await self.release()

    def abort(self) -> None:
        self._closing = True
        self.fail(ClosedResourceError(f"{self.name}: the session was aborted"))

    # -- state changes -------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    async def _wait(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        event = self._changed
        self._changed = asyncio.Event()
        event.set()

    def fail(self, error: NetweaveError) -> None:
        """End the session with ``error`` (raised from ``send``/``receive`` from now on)."""
        if self._error is None:
            self._error = error
        self.detach(abort=True)
        self._notify()

    async def release(self) -> None:
        """Drop the connection (gracefully) and stop this end's tasks."""
        conn = self._conn
        self._released = True
        self.detach(abort=False)
        if conn is not None:
            try:
                await conn.close()
            except NetweaveError:
                conn.abort()
        self._notify()

    # -- connections -------------------------------------------------------------------------

    def attach(self, conn: Channel[Any], peer_received: int) -> int:
        """Use ``conn`` from now on; the peer already has everything up to ``peer_received``.
        Returns how many buffered messages will be sent again (the replay)."""
        self.detach(abort=True)
        self._acknowledged(peer_received)
        self._conn = conn
        self._cursor = max(peer_received + 1, self._unacked[0][0] if self._unacked else 1)
        replay = sum(1 for seq, _ in self._unacked if seq >= self._cursor)
        self.replayed += replay
        self._control.clear()
        self._control.append(encode(Ack(self._received)))  # the peer may have missed one
        self._keepalive = Keepalive(
            self._loop.time(), interval=self._ping_interval, timeout=self._idle_timeout
        )
        self._arm_keepalive()
        self._tasks = [
            self._loop.create_task(self._read(conn)),
            self._loop.create_task(self._write(conn)),
        ]
        self._wake_writer.set()
        self._notify()
        return replay

    def detach(self, *, abort: bool) -> None:
        """Forget the current connection (aborting it if ``abort``)."""
        conn = self._conn
        self._conn = None
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks = []
        for timer in (self._ka_timer, self._ack_timer):
            if timer is not None:
                timer.cancel()
        self._ka_timer = self._ack_timer = None
        if conn is not None and abort:
            conn.abort()

    def drop_connection(self) -> None:
        """Abort the current connection, as a network failure would (for tests and
        chaos drills): the session carries on as after any break."""
        conn = self._conn
        if conn is not None:
            self._lost(conn, ConnectionBroken(f"{self.name}: connection dropped on purpose"))

    def connection_lost(self, conn: Channel[Any], error: NetweaveError) -> None:
        """The attached connection ``conn`` ended with ``error`` (subclasses react)."""

    def _lost(self, conn: Channel[Any], error: NetweaveError) -> None:
        if self._conn is conn:
            self.detach(abort=True)
            self._notify()
            if self._error is None:
                self.connection_lost(conn, error)

    async def _write(self, conn: Channel[Any]) -> None:
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                while self._control:
                    await conn.send(self._control.popleft())
                # Sequence numbers in the buffer are consecutive, so the cursor's
                # entry is found by subtraction (acknowledgements may pop the left
                # end while a send waits, hence the re-computation).
                while self._conn is conn and self._unacked:
                    first = self._unacked[0][0]
                    index = self._cursor - first
                    if index < 0:
                        self._cursor = first
                        continue
                    if index >= len(self._unacked):
                        break
                    seq, frame = self._unacked[index]
                    await conn.send(frame)
                    self._cursor = seq + 1
                    if self._control:
                        while self._control:
                            await conn.send(self._control.popleft())
        except NetweaveError as exc:
            self._lost(conn, exc)

    async def _read(self, conn: Channel[Any]) -> None:
        keepalive = self._keepalive
        try:
            while True:
                while len(self._inbox) >= self._inbox_limit and self._conn is conn:
                    await self._wait()  # the application reads slowly: stop reading
                message = await conn.receive()
                if keepalive is not None:
                    keepalive.heard(self._loop.time())
                if not isinstance(message, bytes | bytearray | memoryview):
                    raise DecodeError(
                        "a session needs a channel of bytes (lp4,raw)", layer="resume"
                    )
                self.on_frame(decode(bytes(message)))
        except EndOfStream:
            self._lost(conn, ClosedResourceError(f"{self.name}: the peer closed the connection"))
        except NetweaveError as exc:
            self._lost(conn, exc)

    def on_frame(self, frame: ResumeFrame) -> None:
        """Handle one frame on an attached connection."""
        if isinstance(frame, Data):
            if frame.seq <= self._received:
                return  # a replayed duplicate
            if frame.seq != self._received + 1 or self._peer_fin:
                raise DecodeError(
                    f"message {frame.seq} arrived after {self._received}: a gap on an "
                    "ordered connection",
                    layer="resume",
                )
            self._received = frame.seq
            self._inbox.extend(self._stack.decode(frame.payload))
            self.delivered += 1
            self._ack_later()
            self._notify()
        elif isinstance(frame, Ack):
            if frame.received >= self._next_seq:
                raise DecodeError(
                    f"ACK for {frame.received}, never sent (last {self._next_seq - 1})",
                    layer="resume",
                )
            self._acknowledged(frame.received)
        elif isinstance(frame, Fin):
            if frame.seq <= self._received:
                return
            if frame.seq != self._received + 1:
                raise DecodeError("FIN after a gap", layer="resume")
            self._received = frame.seq
            self._peer_fin = True
            self._ack_now()
            self._notify()
        elif isinstance(frame, SessionPing):
            self._queue_control(encode(SessionPong(frame.token)))
        elif not isinstance(frame, SessionPong):
            raise DecodeError(
                f"unexpected {type(frame).__name__} frame mid-session", layer="resume"
            )

    def _acknowledged(self, received: int) -> None:
        unacked = self._unacked
        freed = False
        while unacked and unacked[0][0] <= received:
            unacked.popleft()
            freed = True
        if freed:
            self._notify()

    # -- acknowledgements, keepalive ----------------------------------------------------------

    def _queue_control(self, frame: bytes) -> None:
        self._control.append(frame)
        self._wake_writer.set()

    def _ack_later(self) -> None:
        self._ack_pending += 1
        if self._ack_pending >= self._ack_every:
            self._ack_now()
        elif self._ack_timer is None and self._conn is not None:
            self._ack_timer = self._loop.call_later(self._ack_delay, self._ack_now)

    def _ack_now(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._ack_pending = 0
        if self._conn is not None:
            self._queue_control(encode(Ack(self._received)))

    def _arm_keepalive(self) -> None:
        keepalive = self._keepalive
        when = None if keepalive is None else keepalive.get_timer()
        if when is not None:
            self._ka_timer = self._loop.call_at(when, self._on_keepalive)

    def _on_keepalive(self) -> None:
        self._ka_timer = None
        keepalive, conn = self._keepalive, self._conn
        if keepalive is None or conn is None:
            return
        now = self._loop.time()
        if len(self._inbox) >= self._inbox_limit:
            keepalive.heard(now)  # we stopped reading (a slow application): not the peer's fault
        action = keepalive.handle_timer(now)
        if action is KeepaliveAction.CUT:
            self._lost(
                conn,
                PeerUnresponsive(
                    f"{self.name}: nothing heard for {keepalive.silence:.3f} s "
                    f"(limit {keepalive.timeout} s)"
                ),
            )
            return
        if action is KeepaliveAction.PING:
            self._ping_token += 1
            self._queue_control(encode(SessionPing(self._ping_token)))
        self._arm_keepalive()
