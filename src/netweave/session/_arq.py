"""The sans-IO ARQ connection: a reliable, ordered message channel over datagrams.

Shaped like aioquic's ``QuicConnection``: datagrams in with
:meth:`ArqConnection.receive_datagram`, datagrams out with
:meth:`~ArqConnection.datagrams_to_send`, timers through
:meth:`~ArqConnection.get_timer` / :meth:`~ArqConnection.handle_timer`,
messages in with :meth:`~ArqConnection.send` and out with
:meth:`~ArqConnection.next_message`. It never reads a clock or touches a
socket: every call that needs the time takes ``now``.

The two halves live in ``_arq_sender`` and ``_arq_receiver``; the wire
format in ``_arq_wire`` (and ``docs/arq.md``). One ARQ connection carries one
direction of messages each way; both peers start at ``initial_sequence``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ..errors import DecodeError
from ._arq_config import ArqConfig
from ._arq_receiver import ArqReceiver
from ._arq_sender import ArqSender
from ._arq_wire import DATAGRAM_HEADER, AckChunk, datagram_header, decode_datagram

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["ArqConnection"]


@final
class ArqConnection:
    """One end of a reliable, ordered message exchange over an unreliable datagram path.

    Guarantees, whatever the path loses, duplicates or reorders: every message
    passed to :meth:`send` comes out of the peer's :meth:`next_message` exactly
    once and in order, unless the connection fails (:attr:`failed`). Messages
    larger than a segment are fragmented and reassembled. Memory is bounded:
    the receiver buffers at most ``recv_window`` segments, and :attr:`writable`
    tells the application to stop sending once ``send_buffer`` bytes wait.

    Errors: :meth:`receive_datagram` raises ``DecodeError`` (a ``ProtocolError``,
    ``layer="arq"``) for a malformed datagram or one that breaks the protocol's
    rules. A datagram that does not parse changes nothing (a stray datagram may
    be ignored); one that parses but breaks the rules (data after the end of
    stream, a fragment without its start) leaves the connection :attr:`failed`.
    :meth:`send` raises ``UsageError`` for a message over ``max_message_size``
    and ``ClosedResourceError`` after :meth:`close`.
    """

    def __init__(
        self,
        config: ArqConfig | None = None,
        *,
        observer: Observer | None = None,
        name: str = "arq",
    ) -> None:
        self.config = config if config is not None else ArqConfig()
        self.name = name
        self._sender = ArqSender(self.config, observer=observer, name=name)
        self._receiver = ArqReceiver(self.config)
        self._violation: str | None = None
        self.datagrams_received = 0
        self.datagrams_sent = 0

    # -- messages ------------------------------------------------------------------------

    def send(self, message: bytes) -> None:
        """Queue ``message`` for reliable, ordered delivery."""
        self._sender.send(message)

    def close(self) -> None:
        """Queue the end of stream after every message sent so far. Idempotent."""
        self._sender.close()

    def next_message(self) -> bytes | None:
        """The next message from the peer in order, or ``None`` if none is complete yet."""
        return self._receiver.next_message()

    # -- datagrams -------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Take one datagram from the peer, received at loop time ``now``."""
        packet, chunks = decode_datagram(data)
        self.datagrams_received += 1
        receiver = self._receiver
        sender = self._sender
        receiver.on_packet(packet)
        for chunk in chunks:
            if isinstance(chunk, AckChunk):
                sender.on_ack(chunk, now)
            else:
                try:
                    receiver.on_data(chunk)
                except DecodeError as exc:
                    self._violation = f"{self.name}: the peer broke the protocol: {exc.detail}"
                    raise

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Every datagram to send now: a due ACK, retransmissions, new segments."""
        if self._violation is not None:
            return []
        sender = self._sender
        mtu = self.config.mtu
        out: list[bytes] = []
        chunks: list[bytes] = []
        size = DATAGRAM_HEADER
        ack = self._receiver.take_ack()
        if ack is not None:
            encoded = ack.encode()
            chunks.append(encoded)
            size += len(encoded)
        while True:
            seg = sender.next_segment(now)
            if seg is None:
                break
            if size + seg.size > mtu and chunks:
                out.append(datagram_header(sender.packet) + b"".join(chunks))
                sender.datagram_done()
                chunks = []
                size = DATAGRAM_HEADER
            sender.transmitted(seg, now)
            chunks.append(seg.encode())
            size += seg.size
        if chunks:
            out.append(datagram_header(sender.packet) + b"".join(chunks))
            sender.datagram_done()
        self.datagrams_sent += len(out)
        return out

    # -- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The loop time at which :meth:`handle_timer` must run next, or ``None``."""
        return self._sender.get_timer()

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now`` (then call :meth:`datagrams_to_send`)."""
        self._sender.handle_timer(now)

    # -- state -------------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """True while the send buffer has room (the adapter waits otherwise)."""
        return self._sender.writable

    @property
    def all_acknowledged(self) -> bool:
        """Everything sent (including a FIN) was acknowledged by the peer."""
        return self._sender.idle

    @property
    def closed(self) -> bool:
        """Our end of stream was sent and acknowledged."""
        return self._sender.fin_acked

    @property
    def peer_closed(self) -> bool:
        """The peer's end of stream arrived (messages before it may still wait)."""
        return self._receiver.fin_delivered

    @property
    def finished(self) -> bool:
        """The peer's end of stream arrived and every message before it was taken."""
        return self._receiver.fin_delivered and self._receiver.pending == 0

    @property
    def failed(self) -> str | None:
        """Why the connection gave up (the peer stopped acknowledging, or broke the
        protocol), or ``None``."""
        return self._violation or self._sender.failed

    @property
    def rtt(self) -> float | None:
        """The smoothed round-trip time, or ``None`` before the first sample."""
        return self._sender.rtt.srtt

    @property
    def rto(self) -> float:
        """The current retransmission timeout."""
        return self._sender.rtt.rto

    @property
    def cwnd(self) -> int:
        """The congestion window, in bytes."""
        return self._sender.cc.cwnd

    @property
    def bytes_in_flight(self) -> int:
        """Bytes of segments sent and neither acknowledged nor deemed lost."""
        return self._sender.bytes_in_flight

    @property
    def peer_window_edge(self) -> int:
        """The first sequence number the peer's window does not admit."""
        return self._sender.peer_edge

    @property
    def spurious_losses(self) -> int:
        """Segments deemed lost whose first transmission arrived after all (reordering)."""
        return self._sender.spurious

    @property
    def retransmissions(self) -> int:
        """Segments sent again so far."""
        return self._sender.retransmissions

    @property
    def duplicates(self) -> int:
        """Segments received more than once."""
        return self._receiver.duplicates

    @property
    def receive_window(self) -> int:
        """Segments this side will currently accept beyond what it has received in order."""
        return self._receiver.window
