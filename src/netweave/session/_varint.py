"""QUIC variable-length integers (RFC 9000 section 16), shared by the ARQ and RPC wire formats.

The two high bits of the first byte give the length (1, 2, 4 or 8 bytes); the
rest, big-endian, is the value (0 to 2**62 - 1). Decoders accept any length
for a value (non-minimal encodings are allowed, as in QUIC).
"""

from __future__ import annotations

from typing import Final

from ..errors import DecodeError

__all__ = ["VARINT_MAX", "decode_varint", "encode_varint", "varint_size"]

VARINT_MAX: Final = (1 << 62) - 1


def varint_size(value: int) -> int:
    """How many bytes :func:`encode_varint` uses for ``value``."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x40000000:
        return 4
    return 8


def encode_varint(value: int) -> bytes:
    """The shortest encoding of ``value``; ``ValueError`` outside 0 to 2**62 - 1."""
    if value < 0 or value > VARINT_MAX:
        raise ValueError(f"varint out of range: {value}")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x40000000:
        return (value | 0x80000000).to_bytes(4, "big")
    return (value | 0xC000000000000000).to_bytes(8, "big")


def decode_varint(data: bytes, pos: int, *, layer: str) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it.

    Raises ``DecodeError`` (naming ``layer``) if the data ends inside it.
    """
    if pos >= len(data):
        raise DecodeError("input ends inside a varint", layer=layer)
    first = data[pos]
    end = pos + (1 << (first >> 6))
    if end > len(data):
        raise DecodeError("input ends inside a varint", layer=layer)
    value = first & 0x3F
    for byte in data[pos + 1 : end]:
        value = (value << 8) | byte
    return value, end
