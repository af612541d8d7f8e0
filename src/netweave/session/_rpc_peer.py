"""What the RPC client and the server's per-connection side share: ordered sending,
the frame-reading loop, and the keepalive timer.

Rules of this file:

* Frames leave in the order they were queued. Everything queued in one loop
  iteration is handed over at once: to a stream connection in one write when
  it takes it without waiting (``send_nowait``), else by one flushing task
  (``send_many`` where the channel has it). ``send`` waits while too much is
  queued (that is backpressure); ``send_soon`` never waits (answers from the
  reading loop, cancellations from a cancelled task).
* Only complete frames count as hearing from the peer (see ``_keepalive``);
  the keepalive timer is armed once and re-armed only when it fires, so a
  busy connection costs no timer churn.
* :meth:`RpcPeer.terminate` runs exactly once, whatever ends the connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import (
    ClosedResourceError,
    ConnectionBroken,
    DecodeError,
    EndOfStream,
    NetweaveError,
    PeerUnresponsive,
    ProtocolError,
)
from ..observe import MessageSent
from ..stack import StreamChannel
from ._events import PeerSilent
from ._keepalive import Keepalive, KeepaliveAction
from ._rpc_wire import Frame, Ping, decode_frame, encode_frame

if TYPE_CHECKING:
    from ..observe import Observer
    from ..stack import Channel

__all__ = ["RpcPeer"]

#: Bytes queued to send before ``send`` (and the reading loop) wait for them to leave.
_QUEUE_LIMIT = 256 * 1024
#: Rounds of ``wait_flushed`` (each lets one flush run) before it returns anyway.
_FLUSH_ROUNDS = 10_000


class RpcPeer:
    """One end of an RPC connection (subclassed by the client and the server side)."""

    def __init__(
        self,
        channel: Channel[Any],
        *,
        keepalive: Keepalive,
        observer: Observer | None,
        name: str,
    ) -> None:
        self._channel = channel
        self._loop = asyncio.get_running_loop()
        self._keepalive = keepalive
        self._observer = observer
        self.name = name
        self._outbox: list[bytes] = []
        self._queued = 0
        self._flush_scheduled = False
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ping_token = 0
        self.failure: NetweaveError | None = None

    # -- sending ---------------------------------------------------------------------

    async def send(self, frame: Frame) -> None:
        """Queue one frame to send, in order; waits while more than 256 KiB are
        queued (backpressure). Raises the connection's failure once it ended."""
        if self.failure is not None:
            raise self.failure
        self.send_soon(frame)
        if self._queued > _QUEUE_LIMIT:
            await self.wait_flushed()

    def send_soon(self, frame: Frame) -> None:
        """Queue one frame without waiting (dropped once the connection ended).

        Frames queued during one loop iteration leave together, in one write
        where the channel can (``send_many``), from one flushing task.
        """
        if self.failure is None:
            self.queue(encode_frame(frame))

    def queue(self, data: bytes) -> None:
        """:meth:`send_soon` for a frame already encoded."""
        self._outbox.append(data)
        self._queued += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        """Hand over everything queued in this loop iteration: straight to a stream
        connection that takes it without waiting, else through the flushing task."""
        self._flush_scheduled = False
        if self._flusher is not None or not self._outbox or self.failure is not None:
            return  # the flushing task is busy and takes the rest when done
        channel = self._channel
        if isinstance(channel, StreamChannel):
            frames = self._outbox
            encode = channel.stack.encode
            data = b"".join([encode(frame) for frame in frames])
            if channel.connection.send_nowait(data):
                self._outbox = []
                self._queued = 0
                observer = self._observer
                if observer is not None:
                    for frame in frames:
                        observer(MessageSent(channel.remote_address, len(frame)))
                return
        self._flusher = self._loop.create_task(self._flush())

    async def wait_flushed(self) -> None:
        """Wait until every queued frame was handed to the channel."""
        for _ in range(_FLUSH_ROUNDS):
            if self.failure is not None or not (self._outbox or self._flusher is not None):
                break
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
            else:
                await asyncio.sleep(0)  # the flush scheduled for this iteration runs
        if self.failure is not None:
            raise self.failure

    async def _flush(self) -> None:
        channel = self._channel
        send_many = getattr(channel, "send_many", None)
        try:
            while self._outbox:
                frames = self._outbox
                self._outbox = []
                if send_many is not None:
                    await send_many(frames)
                else:
                    for data in frames:
                        await channel.send(data)
                self._queued -= sum(map(len, frames))
        except NetweaveError as exc:
            self._outbox = []
            self._queued = 0
            self.terminate(exc)
        finally:
            self._flusher = None

    # -- receiving -------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Read and dispatch frames until the connection ends; then terminate."""
        try:
            error = await self._read()
        except BaseException:
            # Cancelled (the server is closing) or a bug in a subclass: end cleanly.
            self.terminate(ClosedResourceError(f"{self.name}: the connection was closed"))
            raise
        self.terminate(error)

    async def _read(self) -> NetweaveError:
        receive = self._channel.receive
        heard = self._keepalive.heard
        now = self._loop.time
        on_frame = self.on_frame
        try:
            while True:
                message = await receive()
                heard(now())
                if type(message) is not bytes:
                    if not isinstance(message, bytearray | memoryview):
                        raise DecodeError(
                            f"the channel delivered a {type(message).__name__}; RPC needs a "
                            "channel of bytes, such as 'lp4,raw'",
                            layer="rpc",
                        )
                    message = bytes(message)
                on_frame(decode_frame(message))
                if self._queued > _QUEUE_LIMIT:
                    await self.wait_flushed()
        except EndOfStream:
            return ConnectionBroken(f"{self.name}: the peer closed the connection")
        except (ClosedResourceError, ConnectionBroken) as exc:
            return self.failure or exc
        except ProtocolError as exc:
            self._channel.abort()
            return exc
        except NetweaveError as exc:  # e.g. SessionExpired from a resumable session
            self._channel.abort()
            return exc

    def on_frame(self, frame: Frame) -> None:
        """Handle one frame from the peer (subclasses)."""
        raise NotImplementedError

    def on_terminated(self, error: NetweaveError) -> None:
        """The connection ended with ``error`` (subclasses fail or cancel their calls)."""

    def terminate(self, error: NetweaveError) -> None:
        """End the connection's bookkeeping with ``error``; idempotent."""
        if self.failure is not None:
            return
        self.failure = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.on_terminated(error)

    # -- keepalive ---------------------------------------------------------------------

    def arm_keepalive(self) -> None:
        """(Re-)arm the keepalive timer at its next deadline."""
        if self.failure is not None:
            return
        when = self._keepalive.get_timer()
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_keepalive)

    def _on_keepalive(self) -> None:
        self._timer = None
        keepalive = self._keepalive
        stage = "handshake" if keepalive.in_handshake else "idle"
        action = keepalive.handle_timer(self._loop.time())
        if action is KeepaliveAction.CUT:
            limit = keepalive.handshake_timeout if stage == "handshake" else keepalive.timeout
            assert limit is not None
            if self._observer is not None:
                self._observer(PeerSilent(self.name, keepalive.silence, limit, stage))
            what = "finish its handshake" if stage == "handshake" else "send a complete frame"
            self._channel.abort()
            self.terminate(
                PeerUnresponsive(
                    f"{self.name}: the peer did not {what} for {keepalive.silence:.3f} s "
                    f"(limit {limit} s); the connection was cut"
                )
            )
            return
        if action is KeepaliveAction.PING:
            self._ping_token += 1
            self.send_soon(Ping(self._ping_token))
        self.arm_keepalive()
