"""The receiving half of the ARQ core: reordering, reassembly, flow control, ACKs.

Rules of this file:

* ``next_seq`` is the first sequence number not yet received; everything
  below it was delivered, in order, to reassembly.
* Memory is bounded by the window: a segment is accepted only if it falls in
  ``[next_seq, next_seq + window)``, where ``window = recv_window - held`` and
  ``held`` counts segments delivered in order but not yet consumed by the
  application (complete messages waiting, plus the message being reassembled).
  The right edge of the window therefore never moves left.
* Duplicates and segments outside the window are dropped, but every arriving
  DATA chunk makes an ACK due, so a sender whose ACK was lost learns again.
* The peer breaking the framing rules (a fragment without a start, data after
  FIN, a message over ``max_message_size``) raises ``DecodeError``.
"""

from __future__ import annotations

from collections import deque
from typing import final

from ..errors import DecodeError
from ._arq_config import ArqConfig, unwrap
from ._arq_wire import FIN, FIRST, LAST, AckChunk, DataChunk

__all__ = ["ArqReceiver"]


@final
class ArqReceiver:
    """Turns DATA chunks into ordered messages and says what to acknowledge."""

    def __init__(self, config: ArqConfig) -> None:
        self._config = config
        self._capacity = config.recv_window
        self.next_seq = config.initial_sequence
        self._out_of_order: dict[int, DataChunk] = {}
        self._ready: deque[tuple[bytes, int]] = deque()
        self._held = 0
        self._assembly: list[bytes] = []
        self._assembly_size = 0
        self._fin_delivered = False
        self._ack_due = False
        self._advertised = self._capacity
        self._largest_packet = -1
        self.duplicates = 0
        self.refused = 0
        self.delivered = 0

    @property
    def window(self) -> int:
        """Segments the peer may send from ``next_seq`` on."""
        return self._capacity - self._held

    @property
    def ack_due(self) -> bool:
        """True when an ACK should go out with the next datagram."""
        return self._ack_due

    @property
    def fin_delivered(self) -> bool:
        """The peer's end of stream arrived in order (messages may still be waiting)."""
        return self._fin_delivered

    @property
    def pending(self) -> int:
        """Complete messages waiting for :meth:`next_message`."""
        return len(self._ready)

    def on_packet(self, packet: int) -> None:
        """A datagram numbered ``packet`` (32 bits) arrived from the peer."""
        if self._largest_packet < 0:
            self._largest_packet = packet
        else:
            self._largest_packet = max(self._largest_packet, unwrap(packet, self._largest_packet))

    def on_data(self, chunk: DataChunk) -> None:
        """Take one DATA chunk from the peer."""
        self._ack_due = True
        seq = unwrap(chunk.seq, self.next_seq)
        if seq < self.next_seq or seq in self._out_of_order:
            self.duplicates += 1
            return
        if self._fin_delivered:
            raise DecodeError(f"segment {seq} arrived after the end of stream", layer="arq")
        if seq >= self.next_seq + self.window:
            self.refused += 1
            return
        self._out_of_order[seq] = chunk
        out_of_order = self._out_of_order
        while self.next_seq in out_of_order:
            self._deliver(out_of_order.pop(self.next_seq))
            self.next_seq += 1

    def _deliver(self, chunk: DataChunk) -> None:
        flags = chunk.flags
        if flags & FIN:
            if self._assembly:
                raise DecodeError("end of stream in the middle of a message", layer="arq")
            self._fin_delivered = True
            if self._out_of_order:
                raise DecodeError("segments sent after the end of stream", layer="arq")
            return
        if flags & FIRST:
            if self._assembly:
                raise DecodeError("a new message began before the previous one ended", layer="arq")
        elif not self._assembly:
            raise DecodeError("a message fragment arrived without its first part", layer="arq")
        self._assembly_size += len(chunk.payload)
        if self._assembly_size > self._config.max_message_size:
            raise DecodeError(
                f"message exceeds max_message_size ({self._config.max_message_size} bytes)",
                layer="arq",
            )
        self._assembly.append(chunk.payload)
        self._held += 1
        if flags & LAST:
            parts = self._assembly
            message = parts[0] if len(parts) == 1 else b"".join(parts)
            self._ready.append((message, len(parts)))
            self._assembly = []
            self._assembly_size = 0

    def next_message(self) -> bytes | None:
        """The next complete message in order, or ``None``."""
        if not self._ready:
            return None
        message, segments = self._ready.popleft()
        self._held -= segments
        self.delivered += 1
        # Announce a window that reopened noticeably (a lost update is repaired by
        # the sender's zero-window probe).
        if self.window - self._advertised >= max(1, self._capacity // 4):
            self._ack_due = True
        return message

    def take_ack(self) -> AckChunk | None:
        """The ACK to send now, if one is due (and mark it sent)."""
        if not self._ack_due:
            return None
        self._ack_due = False
        self._advertised = self.window
        ranges: list[tuple[int, int]] = []
        if self._out_of_order:
            base = self.next_seq
            limit = self._config.max_ack_ranges
            start = end = -1
            for seq in sorted(self._out_of_order):
                offset = seq - base
                if offset == end:
                    end += 1
                    continue
                if start >= 0:
                    ranges.append((start, end))
                    if len(ranges) == limit:
                        break
                start, end = offset, offset + 1
            else:
                ranges.append((start, end))
        return AckChunk(
            self.next_seq & 0xFFFFFFFF,
            max(self._largest_packet, 0) & 0xFFFFFFFF,
            self.window,
            tuple(ranges),
        )
