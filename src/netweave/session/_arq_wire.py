"""The ARQ wire format, version 1 (see ``docs/arq.md``; the exact bytes are a contract).

::

    datagram := version:u8 (= 1)  packet:u32  chunk+
    chunk    := DATA | ACK

    DATA     := 0x01  flags:u8  seq:u32  length:u16  payload[length]
                flags: 0x01 FIRST fragment of a message, 0x02 LAST fragment,
                       0x04 FIN (end of stream: no payload, neither FIRST nor LAST)
    ACK      := 0x02  cumulative:u32  largest:u32  window:varint  count:varint
                      (gap:varint  length:varint)*count

All integers are big-endian; ``varint`` is QUIC's (RFC 9000 section 16: the
two high bits of the first byte give the length, 1, 2, 4 or 8 bytes).
``packet`` numbers datagrams in the order a side sends them (every datagram,
retransmission or not, gets a new one); ``seq`` numbers segments. ``packet``,
``seq``, ``cumulative`` and ``largest`` are the low 32 bits of 64-bit numbers;
each side recovers the full number as the one nearest to what it expects.

``largest`` is the highest packet number received from the peer: it tells
the sender, without ambiguity, which of its datagrams got through (the
sequence numbers of retransmitted segments cannot).

``cumulative`` is the first sequence number not yet received; ``window`` says
how many sequence numbers from ``cumulative`` on the receiver will accept.
The ranges list what arrived above ``cumulative``, lowest first: starting
from ``previous = cumulative`` (not received), each range begins
``gap + 1`` after ``previous`` and holds ``length + 1`` sequence numbers;
``previous`` then becomes its (exclusive, not received) end.

Rules of this file: :func:`decode_datagram` raises only
:class:`~netweave.errors.DecodeError` (``layer="arq"``) on bad input, and
rejects anything not exactly as above (unknown version or chunk type,
reserved flag bits, trailing or missing bytes, more ranges than
:data:`MAX_RANGES`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, final

from ..errors import DecodeError
from ._varint import decode_varint, encode_varint, varint_size

__all__ = [
    "ACK",
    "DATAGRAM_HEADER",
    "DATA",
    "FIN",
    "FIRST",
    "LAST",
    "MAX_RANGES",
    "AckChunk",
    "DataChunk",
    "datagram_header",
    "decode_datagram",
    "encode_varint",
    "varint_size",
]

VERSION: Final = 1
DATA: Final = 0x01
ACK: Final = 0x02
FIRST: Final = 0x01
LAST: Final = 0x02
FIN: Final = 0x04
_FLAG_MASK: Final = FIRST | LAST | FIN
#: The most ranges one ACK may carry; a decoder rejects more.
MAX_RANGES: Final = 256
#: Bytes of a DATA chunk before its payload.
DATA_HEADER: Final = 8
#: Bytes of a datagram before its first chunk.
DATAGRAM_HEADER: Final = 5
_DATA = struct.Struct(">BBIH")
_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">BI")
_ACK_HEAD = struct.Struct(">BII")


@final
@dataclass(frozen=True, slots=True)
class DataChunk:
    """One segment: ``seq`` is the 32-bit wire sequence number."""

    seq: int
    flags: int
    payload: bytes

    def encode(self) -> bytes:
        return _DATA.pack(DATA, self.flags, self.seq & 0xFFFFFFFF, len(self.payload)) + self.payload


@final
@dataclass(frozen=True, slots=True)
class AckChunk:
    """A cumulative + selective acknowledgement.

    ``ranges`` are ``(start, end)`` offsets from ``cumulative`` (``start >= 1``,
    ``end`` exclusive), ascending and separated by at least one missing number.
    """

    cumulative: int
    largest: int
    window: int
    ranges: tuple[tuple[int, int], ...] = ()

    def encode(self) -> bytes:
        out = bytearray(
            _ACK_HEAD.pack(ACK, self.cumulative & 0xFFFFFFFF, self.largest & 0xFFFFFFFF)
        )
        out += encode_varint(self.window)
        out += encode_varint(len(self.ranges))
        previous = 0
        for start, end in self.ranges:
            out += encode_varint(start - previous - 1)
            out += encode_varint(end - start - 1)
            previous = end
        return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    return decode_varint(data, pos, layer="arq")


def datagram_header(packet: int) -> bytes:
    """The first bytes of datagram number ``packet``."""
    return _HEAD.pack(VERSION, packet & 0xFFFFFFFF)


def decode_datagram(data: bytes) -> tuple[int, list[DataChunk | AckChunk]]:
    """The 32-bit packet number and every chunk of one datagram, in order.

    Raises only ``DecodeError``.
    """
    if not data:
        raise DecodeError("empty datagram", layer="arq")
    if data[0] != VERSION:
        raise DecodeError(
            f"unsupported ARQ version {data[0]} (this side speaks version {VERSION})", layer="arq"
        )
    total = len(data)
    if total < DATAGRAM_HEADER:
        raise DecodeError("datagram ends inside its header", layer="arq")
    if total == DATAGRAM_HEADER:
        raise DecodeError("datagram holds no chunk", layer="arq")
    (packet,) = _U32.unpack_from(data, 1)
    chunks: list[DataChunk | AckChunk] = []
    pos = DATAGRAM_HEADER
    while pos < total:
        kind = data[pos]
        if kind == DATA:
            if pos + DATA_HEADER > total:
                raise DecodeError("datagram ends inside a DATA header", layer="arq")
            _, flags, seq, length = _DATA.unpack_from(data, pos)
            if flags & ~_FLAG_MASK:
                raise DecodeError(
                    f"DATA chunk has reserved flag bits set: {flags:#04x}", layer="arq"
                )
            if flags & FIN and (flags & (FIRST | LAST) or length):
                raise DecodeError("a FIN chunk carries no payload and no FIRST/LAST", layer="arq")
            if not flags & FIN and not flags & (FIRST | LAST) and not length:
                raise DecodeError("an empty middle fragment is not allowed", layer="arq")
            start = pos + DATA_HEADER
            end = start + length
            if end > total:
                raise DecodeError(
                    f"DATA chunk announces {length} payload bytes but only {total - start} follow",
                    layer="arq",
                )
            chunks.append(DataChunk(seq, flags, data[start:end]))
            pos = end
        elif kind == ACK:
            if pos + _ACK_HEAD.size > total:
                raise DecodeError("datagram ends inside an ACK header", layer="arq")
            _, cumulative, largest = _ACK_HEAD.unpack_from(data, pos)
            window, pos = _varint(data, pos + _ACK_HEAD.size)
            count, pos = _varint(data, pos)
            if count > MAX_RANGES:
                raise DecodeError(
                    f"ACK lists {count} ranges; at most {MAX_RANGES} are allowed", layer="arq"
                )
            ranges: list[tuple[int, int]] = []
            previous = 0
            for _ in range(count):
                gap, pos = _varint(data, pos)
                length, pos = _varint(data, pos)
                start = previous + gap + 1
                end = start + length + 1
                if end > 0xFFFFFFFF:
                    raise DecodeError("ACK range reaches past 2**32 numbers", layer="arq")
                ranges.append((start, end))
                previous = end
            chunks.append(AckChunk(cumulative, largest, window, tuple(ranges)))
        else:
            raise DecodeError(f"unknown chunk type {kind:#04x}", layer="arq")
    return packet, chunks
