"""Configuration of the ARQ core, checked once when it is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from ..errors import UsageError
from ._arq_wire import DATA_HEADER, DATAGRAM_HEADER

__all__ = ["ArqConfig", "unwrap"]

_HALF: Final = 1 << 31
_FULL: Final = 1 << 32
#: Space kept free in each datagram so an ACK can ride along with a full segment.
ACK_ROOM: Final = 48


@final
@dataclass(frozen=True, slots=True)
class ArqConfig:
    """Knobs of :class:`~netweave.session.ArqConnection`. Both peers must use the
    same ``initial_sequence``; the other values may differ between them.

    * ``mtu`` — the largest datagram sent, in bytes (the path MTU minus IP/UDP).
    * ``recv_window`` — how many segments this side buffers for the peer (its
      flow-control window); at most 16383.
    * ``send_buffer`` — payload bytes queued or unacknowledged before
      ``writable`` turns false (the async adapter then waits).
    * ``max_message_size`` — the largest message accepted in either direction;
      a message is split into segments and must fit in ``recv_window - 1`` of them.
    * ``initial_window`` — the first congestion window, in segments (RFC 6928: 10).
    * ``initial_rto`` / ``min_rto`` / ``max_rto`` — RFC 6298 bounds, in seconds.
    * ``max_rto_expirations`` — consecutive retransmission timeouts without any
      progress before the connection is declared broken.
    * ``max_ack_ranges`` — selective-acknowledgement ranges per ACK (lowest first).
    * ``packet_threshold`` / ``time_threshold`` — a segment is deemed lost when a
      datagram sent ``packet_threshold`` datagrams later was acknowledged, or
      ``time_threshold`` round trips passed since it was sent and a later one was
      acknowledged (RFC 9002's rules, applied to segments).
    """

    mtu: int = 1200
    recv_window: int = 256
    send_buffer: int = 1024 * 1024
    max_message_size: int = 256 * 1024
    initial_window: int = 10
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    max_rto_expirations: int = 10
    max_ack_ranges: int = 64
    packet_threshold: int = 3
    time_threshold: float = 9 / 8
    initial_sequence: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.mtu < 128:
            problems.append(f"mtu must be at least 128 bytes (got {self.mtu})")
        if not 2 <= self.recv_window <= 16383:
            problems.append(f"recv_window must be 2..16383 segments (got {self.recv_window})")
        if self.send_buffer < 1:
            problems.append("send_buffer must be positive")
        if self.initial_window < 1:
            problems.append("initial_window must be at least 1 segment")
        if not 0 < self.min_rto <= self.initial_rto <= self.max_rto:
            problems.append("RTO bounds need 0 < min_rto <= initial_rto <= max_rto")
        if self.max_rto_expirations < 1:
            problems.append("max_rto_expirations must be at least 1")
        if not 1 <= self.max_ack_ranges <= 256:
            problems.append("max_ack_ranges must be 1..256")
        if self.packet_threshold < 1 or not self.time_threshold >= 1:
            problems.append("packet_threshold must be >= 1 and time_threshold >= 1")
        if not 0 <= self.initial_sequence < _FULL:
            problems.append("initial_sequence must be a 32-bit unsigned number")
        if 16 + 4 * self.max_ack_ranges > self.mtu - DATAGRAM_HEADER:
            problems.append("an ACK with max_ack_ranges ranges would not fit in the mtu")
        if not problems and self.max_message_size > (self.recv_window - 1) * self.segment_payload:
            problems.append(
                f"max_message_size {self.max_message_size} needs more than recv_window - 1 "
                f"segments of {self.segment_payload} bytes; raise recv_window or mtu"
            )
        if self.max_message_size < 1:
            problems.append("max_message_size must be positive")
        if problems:
            raise UsageError("bad ArqConfig: " + "; ".join(problems))

    @property
    def segment_payload(self) -> int:
        """Payload bytes per segment: the mtu less the datagram, DATA and ACK overheads."""
        return self.mtu - DATAGRAM_HEADER - DATA_HEADER - ACK_ROOM


def unwrap(value: int, reference: int) -> int:
    """The full sequence number whose low 32 bits are ``value``, nearest to ``reference``."""
    candidate = (reference & ~(_FULL - 1)) | value
    if candidate < reference - _HALF:
        candidate += _FULL
    elif candidate > reference + _HALF:
        candidate -= _FULL
    return candidate
