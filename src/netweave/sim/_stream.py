"""Simulated TCP as an ``asyncio.Transport``: the adapter between a protocol and a :class:`TcpCore`.

Rules of this file:

* This module only moves bytes and arms timers: segments come from the
  network into :meth:`SimStreamTransport.handle_packet`, the core decides, and
  :meth:`SimStreamTransport._pump` carries out what it decided (send packets,
  hand data to the protocol, report EOF and errors, re-arm the one timer).
* Protocol callbacks run with ``current_host`` set to the transport's host and
  never inside a call the application made (``write`` does not call
  ``data_received``): deliveries triggered from the application side are
  deferred with ``call_soon``, as asyncio's selector transports do.
* asyncio's semantics are kept: ``connection_lost`` is called exactly once, via
  ``call_soon``; ``close()`` lets buffered data drain first; ``abort()`` sends
  a reset; ``eof_received()`` returning a false value closes the transport;
  ``write()`` after ``write_eof()`` raises ``RuntimeError``; writes after close
  are ignored; ``get_write_buffer_size()`` counts what the "kernel" (the core,
  up to ``sndbuf`` unacknowledged bytes) does not hold, and drives
  ``pause_writing``/``resume_writing`` through the high/low water marks.
* Writes are corked until the current callback ends (like Linux's
  autocorking): the writes of one instant leave in as few segments as the MSS
  allows, at that same virtual instant.
* A connection leaves its host's table in the very pump that finishes it (both
  FINs acknowledged, a reset, a timeout): no TIME_WAIT is simulated, so a late
  segment for it is answered as for a closed port.
* One loop timer per connection, at the core's earliest deadline; one that
  fires early (the deadline moved later) only moves itself.
* A crash kills the transport: no callback ever runs again for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast, final

from ._context import current_host
from ._tcp import (
    CLOSED,
    ESTABLISHED,
    EV_CLOSED,
    EV_EOF,
    EV_ERROR,
    EV_ESTABLISHED,
    EV_SENDSPACE,
    TcpCore,
)

if TYPE_CHECKING:
    from ._host import Host
    from ._network import Network
    from ._packet import Packet
    from ._server import SimServer

__all__ = ["SimStreamTransport", "open_stream"]

_DEFAULT_HIGH: Final = 64 * 1024
_set_host = current_host.set
_reset_host = current_host.reset


@final
class SimStreamTransport(asyncio.Transport):
    """One end of a simulated TCP connection, as asyncio's stream transport."""

    def __init__(
        self, network: Network, host: Host, core: TcpCore, *, server: SimServer | None = None
    ) -> None:
        super().__init__(
            {
                "peername": (core.remote_ip, core.remote_port),
                "sockname": (core.local_ip, core.local_port),
                "socket": None,
            }
        )
        self._network = network
        self._loop = network.loop
        self._context = network.context  # callbacks run outside every host
        self._host = host
        self._host_name = host.name
        self._core = core
        self._key = (core.local_port, core.remote_ip, core.remote_port)
        self._server = server
        self._protocol: asyncio.BaseProtocol | None = None
        self._buffered = False
        self._connect_waiter: asyncio.Future[None] | None = None
        self._error: OSError | None = None
        self._reading_paused = False
        self._closing = False
        self._eof_written = False
        self._eof_pending = False
        self._lost = False
        self._dead = False
        self._high = _DEFAULT_HIGH
        self._low = _DEFAULT_HIGH // 4
        self._writing_paused = False
        self._sndbuf = network.tcp_settings.sndbuf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = -1
        self._timer_set_at = -1  # when the timer was armed
        self._pumping = False
        self._again = False
        self._deferred = False

    def __repr__(self) -> str:
        core = self._core
        return (
            f"<SimStreamTransport {self._host.name} {core.local_ip}:{core.local_port}"
            f"->{core.remote_ip}:{core.remote_port}{' closing' if self.is_closing() else ''}>"
        )

    # -- used by the network, the server and open_stream -----------------------------

    def start(self) -> None:
        """Register with the host and send the opening segment."""
        self._host.add_tcp(self._key, self)
        self._pump()

    def handle_packet(self, packet: Packet) -> None:
        """A segment for this connection arrived."""
        if self._dead:
            return
        self._core.receive(packet, self._loop._now)
        self._pump()

    def kill(self) -> None:
        """The host crashed: vanish without a callback or a packet."""
        self._dead = True
        self._closing = True
        self._set_timer(-1)
        self._protocol = None

    def attach(self, protocol: asyncio.BaseProtocol) -> None:
        """Give the connection its protocol and call ``connection_made``."""
        self.set_protocol(protocol)
        self._call(protocol.connection_made, self)
        if self._core.ready_len or self._eof_pending or self._error is not None:
            self._defer()

    def abandon(self) -> None:
        """Drop a connection attempt whose caller went away (no RST in SYN_SENT)."""
        self._closing = True
        self._lost = True
        self._core.abort()
        self._pump()

    # -- asyncio.BaseTransport --------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None, "the connection has no protocol yet"
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._dead:
            return
        self._core.close(self._loop.time_ns())
        self._pump(from_app=True)
        if self.get_write_buffer_size() == 0:
            self._schedule_lost(None)

    # -- asyncio.ReadTransport --------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._core.window_opened()
        self._defer()

    # -- asyncio.WriteTransport -------------------------------------------------------

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _DEFAULT_HIGH if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        core = self._core
        if core.closed:
            return 0
        over = core.queued - self._sndbuf
        return over if over > 0 else 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(
                    f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                )
            data = bytes(data)
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        core = self._core
        if not data or self._closing or self._lost or core.state == CLOSED:
            return  # as asyncio: writes after the connection is gone are dropped
        core.send(data)
        if not self._deferred:
            self._defer()  # autocork: writes of this instant leave together, at its end
        if not self._writing_paused:
            sndbuf = core.sndbuf
            if sndbuf.end - sndbuf.start - self._sndbuf > self._high:
                self._maybe_pause_writing()

    def write_eof(self) -> None:
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        if self._core.closed:
            return
        self._core.shutdown_write()
        self._pump(from_app=True)

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        if self._dead or self._lost:
            self._closing = True
            return
        self._closing = True
        self._core.abort()
        self._pump(from_app=True)
        self._schedule_lost(None)

    # -- the pump ---------------------------------------------------------------------

    def _pump(self, *, from_app: bool = False) -> None:
        """Carry out what the core decided: deliver, send, report, arm the timer; again if
        the protocol's callbacks changed something meanwhile (``from_app``: the
        application called in, so protocol callbacks are deferred)."""
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        self._again = False
        try:
            while True:
                self._step(from_app)
                if not self._again:
                    break
                self._again = False
        finally:
            self._pumping = False

    def _step(self, from_app: bool) -> None:
        core = self._core
        rcv = core.rcv
        events = core.events
        core.events = 0
        if events & EV_ESTABLISHED:
            self._established()
        protocol: Any = self._protocol
        deliverable = protocol is not None and not self._closing and not self._reading_paused
        if deliverable and rcv.ready_len:
            if from_app:
                self._defer()
            elif self._buffered:
                self._deliver(rcv.take())
            else:
                # self._call(protocol.data_received, rcv.take()), inlined: every read's path.
                data = rcv.take()
                token = _set_host(self._host_name)
                try:
                    protocol.data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal(exc, "Fatal error: protocol.data_received() call failed.")
                finally:
                    _reset_host(token)
        if core.state == ESTABLISHED and (
            core.ack_now or core.fin_acked or core.fin_queued or core.snd_nxt < core.sndbuf.end
        ):
            core.flush(self._loop._now)  # (it would find nothing to do otherwise)
        outbox = core.outbox
        if outbox:
            send = self._network.send
            host = self._host
            for packet in outbox:
                send(packet, host)
            outbox.clear()
        if core.events:  # flush may finish the connection (both FINs acknowledged)
            events |= core.events
            core.events = 0
        if events & EV_EOF:
            self._eof_pending = True
        if self._eof_pending and deliverable and not rcv.ready_len:
            if from_app:
                self._defer()
            else:
                self._eof_pending = False
                keep_open = self._call(cast(asyncio.Protocol, self._protocol).eof_received)
                if not keep_open and not self._closing:
                    self.close()
        if events & EV_SENDSPACE and (self._writing_paused or self._closing):
            self._room_to_write()
        if events & (EV_ERROR | EV_CLOSED) or self._error is not None:
            self._after(events)
            return
        # self._arm_timer(), inlined: most steps leave the timer as it is.
        when = core.next_timer()
        if when != self._timer_at:
            self._arm_timer_for(when)

    def _room_to_write(self) -> None:
        """Acknowledged data made room while writing is paused or the transport closes."""
        self._maybe_resume_writing()
        if self._closing and not self._lost and self.get_write_buffer_size() == 0:
            self._schedule_lost(None)

    def _after(self, events: int) -> None:
        """The rarer outcomes of a step: an error, the end."""
        core = self._core
        if events & EV_ERROR:
            self._on_error(core.error)
        if self._error is not None and not self._lost and self._protocol is not None:
            self._schedule_lost(self._error)
        if events & EV_CLOSED:
            self._host.remove_tcp(self._key, self)
            self._set_timer(-1)
            if self._server is not None and not self._ever_established():
                self._server.handshake_failed(self)
        elif core.state != CLOSED:
            self._arm_timer()

    def _ever_established(self) -> bool:
        return self._protocol is not None

    def _established(self) -> None:
        waiter = self._connect_waiter
        if waiter is not None:
            self._connect_waiter = None
            if not waiter.done():
                waiter.set_result(None)
            return
        server = self._server
        if server is None:
            return
        protocol = server.connection_established(self)
        if protocol is None:
            self.abort()

    def _on_error(self, error: OSError | None) -> None:
        if error is None:
            return
        waiter = self._connect_waiter
        if waiter is not None:
            self._connect_waiter = None
            if not waiter.done():
                waiter.set_exception(error)
            return
        if not self._lost:
            self._error = error

    def _deliver(self, data: bytes) -> None:
        protocol = self._protocol
        if self._buffered:
            buffered = cast(asyncio.BufferedProtocol, protocol)
            view = memoryview(data)
            while view:
                buf = memoryview(self._call(buffered.get_buffer, len(view)) or b"")
                if not buf or self._closing:
                    return
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                self._call(buffered.buffer_updated, n)
                view = view[n:]
        else:
            self._call(cast(asyncio.Protocol, protocol).data_received, data)

    def _defer(self) -> None:
        if not self._deferred:
            self._deferred = True
            self._loop.call_soon(self._run_deferred, context=self._context)

    def _run_deferred(self) -> None:
        self._deferred = False
        if not self._dead:
            self._pump()

    def _arm_timer(self) -> None:
        """Keep one loop timer at the core's earliest deadline (see :meth:`_arm_timer_for`)."""
        when = self._core.next_timer()
        if when != self._timer_at:
            self._arm_timer_for(when)

    def _arm_timer_for(self, when: int) -> None:
        """The core's earliest deadline is now ``when`` (-1: none), not the timer's.

        A deadline that moves earlier re-arms the timer; one that moves later
        leaves it where it is (it fires, finds nothing due and moves itself, which
        costs less than re-arming on every ACK), unless the timer was armed at this
        very instant; a timer no longer needed at all is cancelled.
        """
        timer_at = self._timer_at
        if when < 0 or timer_at < 0 or when < timer_at or self._timer_set_at == self._loop._now:
            self._set_timer(when)

    def _set_timer(self, when: int) -> None:
        """Cancel the loop timer, then arm one at ``when`` (ns) unless it is negative."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
        if when < 0:
            self._timer = None
            self._timer_at = -1
        else:
            self._timer_at = when
            self._timer_set_at = self._loop._now
            self._timer = self._loop.call_at_ns(when, self._on_timer, context=self._context)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = -1
        if self._dead:
            return
        core = self._core
        now = self._loop._now
        when = core.next_timer()
        if when > now:
            # Stale: the deadline moved later after the timer was armed. Nothing is due,
            # so a pump would do nothing but arm the timer again.
            self._timer_at = when
            self._timer_set_at = now
            self._timer = self._loop.call_at_ns(when, self._on_timer, context=self._context)
            return
        if when < 0:
            return  # nothing pending at all (a pump would find nothing to do)
        core.handle_timer(now)
        self._pump()

    # -- calling the protocol -------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        token = _set_host(self._host_name)
        try:
            return method(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, f"Fatal error: protocol.{method.__name__}() call failed.")
            return None
        finally:
            _reset_host(token)

    def _fatal(self, exc: BaseException, message: str) -> None:
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )
        if not self._lost and not self._dead:
            self._closing = True
            self._core.abort()
            self._pump()
            self._schedule_lost(exc if isinstance(exc, Exception) else None)

    def _schedule_lost(self, exc: Exception | None) -> None:
        if self._lost or self._dead:
            return
        self._lost = True
        self._closing = True
        self._network.call_soon(self._call_lost, exc)

    def _call_lost(self, exc: Exception | None) -> None:
        protocol = self._protocol
        if self._dead or protocol is None:
            return
        token = current_host.set(self._host.name)
        try:
            protocol.connection_lost(exc)
        finally:
            current_host.reset(token)
            if self._server is not None:
                self._server.connection_gone(self)

    def _maybe_pause_writing(self) -> None:
        if self._writing_paused or self.get_write_buffer_size() <= self._high:
            return
        protocol = self._protocol
        if protocol is None:
            return
        self._writing_paused = True
        self._flow_call(protocol.pause_writing, "pause_writing")

    def _maybe_resume_writing(self) -> None:
        if not self._writing_paused or self.get_write_buffer_size() > self._low:
            return
        protocol = self._protocol
        if protocol is None:
            return
        self._writing_paused = False
        self._flow_call(protocol.resume_writing, "resume_writing")

    def _flow_call(self, method: Callable[[], None], name: str) -> None:
        token = current_host.set(self._host.name)
        try:
            method()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        finally:
            current_host.reset(token)


async def open_stream(
    network: Network,
    host: Host,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    local: tuple[str, int],
    remote: tuple[str, int],
) -> tuple[SimStreamTransport, asyncio.BaseProtocol]:
    """Connect from ``host`` (bound to ``local``) to ``remote``; asyncio's connect errors.

    Raises ``ConnectionRefusedError`` (a RST answered the SYN) or ``TimeoutError``
    (no answer within the user timeout), with asyncio's "Connect call failed" text.
    """
    loop = network.loop
    core = TcpCore.client(
        host.name,
        local,
        remote,
        iss=host.isn(),
        mss=network.mss(host, remote[0]),
        settings=network.tcp_settings,
        now=loop.time_ns(),
    )
    transport = SimStreamTransport(network, host, core)
    waiter: asyncio.Future[None] = loop.create_future()
    transport._connect_waiter = waiter
    transport.start()
    try:
        await waiter
    except asyncio.CancelledError:
        transport.abandon()
        raise
    except OSError as exc:
        network.connect_event(host, local, remote, exc)
        raise type(exc)(exc.errno, f"Connect call failed {remote!r}") from None
    network.connect_event(host, local, remote, None)
    try:
        protocol = protocol_factory()
    except BaseException:
        transport.abort()
        raise
    transport.attach(protocol)
    return transport, protocol
