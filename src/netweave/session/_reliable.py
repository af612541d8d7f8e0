"""``ReliableChannel``: the ARQ core run over a datagram endpoint or channel.

Rules of this file (an adapter: it moves bytes and arms the timer, nothing else):

* A reader task feeds every received datagram to the core; a writer task
  sends whatever the core has to send, once per loop iteration at most (so
  datagrams that arrive together are acknowledged together); one loop timer
  is kept at the core's ``get_timer()``.
* Every change of the core's state wakes the waiting ``send``/``receive``
  calls, which re-check it.
* A datagram that does not parse is dropped and counted (``malformed``), as a
  stray packet on a UDP port should be; a peer breaking the protocol, a dead
  peer, or a broken endpoint fails the channel: ``send``/``receive`` raise.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, final

from ..errors import (
    ClosedResourceError,
    ConnectionBroken,
    DecodeError,
    EndOfStream,
    NetweaveError,
    PeerUnresponsive,
    ProtocolError,
    UsageError,
)
from ..observe import ProtocolViolation
from ..stack import Channel, DatagramChannel, Stack
from ._arq import ArqConnection
from ._arq_config import ArqConfig

if TYPE_CHECKING:
    from ..observe import Observer
    from ..transports.base import DatagramEndpoint

__all__ = ["ReliableChannel"]


@final
class ReliableChannel(Channel[Any]):
    """A reliable, ordered message channel over an unreliable datagram path.

    ``lower`` is a *connected* :class:`~netweave.transports.DatagramEndpoint` or a
    :class:`~netweave.stack.DatagramChannel` of bytes (a server's per-peer channel
    from :func:`netweave.serve` works). Both ends must run a ``ReliableChannel``.
    ``stack`` (default ``raw``) encodes messages into bytes, e.g. ``"json"``.

    Guarantees: every message sent arrives exactly once and in order, or the
    channel fails (``receive``/``send`` raise ``PeerUnresponsive`` when the peer
    stopped acknowledging, ``ProtocolError`` when it broke the protocol,
    ``ConnectionBroken`` when the endpoint did). ``send`` waits while the send
    buffer is full. ``close`` sends the end of stream, waits until the peer
    acknowledged everything (however long that takes, unless the peer stops
    answering and the channel fails), then lingers up to ``close_timeout`` for
    the peer to end its own stream (as TCP's close handshake does); the peer's
    ``receive`` raises ``EndOfStream`` after the last message. ``abort``
    releases at once.
    Create it inside a running event loop; it starts its tasks at once.
    """

    def __init__(
        self,
        lower: DatagramEndpoint | DatagramChannel[Any],
        *,
        stack: Stack | str = "raw",
        config: ArqConfig | None = None,
        close_timeout: float = 10.0,
        observer: Observer | None = None,
        name: str | None = None,
    ) -> None:
        self._lower = lower
        self._stack = Stack.parse(stack) if isinstance(stack, str) else stack.fresh()
        if self._stack.lower_kind != "frame":
            raise UsageError(
                f"a ReliableChannel carries whole messages; stack {self._stack.spec!r} must "
                "start with a codec such as raw or json, not a framing layer"
            )
        remote = lower.remote_address if isinstance(lower, Channel) else lower.remote
        self._remote = "" if remote is None else str(remote)
        self._name = name if name is not None else f"arq {self._remote}"
        self._core = ArqConnection(config, observer=observer, name=self._name)
        self._observer = observer
        self._close_timeout = close_timeout
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._wake_writer = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._error: NetweaveError | None = None
        self._closing = False
        self._inbox: list[Any] = []
        self.malformed = 0
        self._reader = self._loop.create_task(self._read_loop())
        self._writer = self._loop.create_task(self._write_loop())

    # -- Channel -------------------------------------------------------------------

    @property
    def stack(self) -> Stack:
        return self._stack

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def core(self) -> ArqConnection:
        """The sans-IO connection (for its statistics: rtt, cwnd, retransmissions...)."""
        return self._core

    async def send(self, message: Any) -> None:
        if self._closing:
            raise ClosedResourceError(f"{self._name}: send after close on our side")
        data = self._stack.encode(message)
        while not self._core.writable:
            self._check()
            await self._wait()
        self._check()
        self._core.send(data)
        self._wake_writer.set()

    async def receive(self) -> Any:
        while True:
            if self._inbox:
                return self._inbox.pop(0)
            data = self._core.next_message()
            if data is not None:
                self._wake_writer.set()  # the window may have reopened
                self._inbox.extend(self._stack.decode(data))
                continue
            if self._core.finished:
                raise EndOfStream(f"{self._name}: the peer ended the stream")
            if self._closing and self._error is None:
                raise ClosedResourceError(f"{self._name}: receive after close on our side")
            self._check()
            await self._wait()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        core = self._core
        try:
            if self._error is None:
                core.close()
                self._wake_writer.set()
                # First, everything we sent must be acknowledged: that takes as long
                # as it takes, unless the peer stops answering (the core then fails).
                while self._error is None and not core.closed:
                    self._check_silently()
                    await self._wait()
                # Then linger (up to close_timeout) for the peer's own end of stream,
                # so our acknowledgement of it goes out before we go away.
                async with asyncio.timeout(self._close_timeout):
                    while self._error is None and not core.peer_closed:
                        self._check_silently()
                        await self._wait()
                for datagram in core.datagrams_to_send(self._loop.time()):
                    await self._send_datagram(datagram)
        except (TimeoutError, NetweaveError):
            pass  # the peer did not confirm in time, or went away: release everything anyway
        finally:
            await self._shutdown()

    def abort(self) -> None:
        self._closing = True
        self._stop_tasks()
        self._lower.abort()
        self._notify()

    # -- plumbing ------------------------------------------------------------------

    def _check(self) -> None:
        self._check_silently()
        if self._error is not None:
            raise self._error

    async def _wait(self) -> None:
        event = self._changed
        await event.wait()

    def _notify(self) -> None:
        event = self._changed
        self._changed = asyncio.Event()
        event.set()

    def _fail(self, error: NetweaveError) -> None:
        if self._error is None:
            self._error = error
        self._notify()

    async def _read_loop(self) -> None:
        lower = self._lower
        core = self._core
        try:
            while True:
                if isinstance(lower, DatagramChannel):
                    data = await lower.receive()
                else:
                    data, _ = await lower.receive_from()
                try:
                    core.receive_datagram(bytes(data), self._loop.time())
                except DecodeError as exc:
                    if core.failed is not None:
                        self._fail(exc)
                        return
                    self.malformed += 1
                    if self._observer is not None:
                        self._observer(ProtocolViolation(self._name, exc.layer, exc.detail))
                    continue
                self._wake_writer.set()
                self._notify()
        except ProtocolError as exc:  # a datagram channel's own layers rejected one
            self._fail(exc)
        except (EndOfStream, ClosedResourceError) as exc:
            if not self._closing:
                self._fail(ConnectionBroken(f"{self._name}: the datagram endpoint ended: {exc}"))
        except ConnectionBroken as exc:
            self._fail(exc)

    async def _write_loop(self) -> None:
        core = self._core
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                for datagram in core.datagrams_to_send(self._loop.time()):
                    await self._send_datagram(datagram)
                self._arm_timer()
                self._check_silently()
                self._notify()
        except (ClosedResourceError, ConnectionBroken) as exc:
            if not self._closing:
                self._fail(ConnectionBroken(f"{self._name}: cannot send: {exc}"))

    async def _send_datagram(self, datagram: bytes) -> None:
        lower = self._lower
        if isinstance(lower, DatagramChannel):
            await lower.send(datagram)
        else:
            await lower.send_to(datagram)

    def _check_silently(self) -> None:
        failure = self._core.failed
        if failure is not None and self._error is None:
            self._fail(PeerUnresponsive(failure))

    def _arm_timer(self) -> None:
        when = self._core.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._core.handle_timer(self._loop.time())
        self._check_silently()
        self._wake_writer.set()

    def _stop_tasks(self) -> None:
        for task in (self._reader, self._writer):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _shutdown(self) -> None:
        self._stop_tasks()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)
        try:
            await self._lower.close()
        finally:
            self._notify()
