"""Framing layers: cut a byte stream into frames.

Wire formats (the exact bytes are a contract; see ``docs/wire-format.md``):

* ``LengthPrefix(n, byteorder)`` — an ``n``-byte unsigned length (1, 2, 4 or 8
  bytes, big or little endian), then that many payload bytes.
* ``Varint`` — the length as a protobuf-style unsigned LEB128 varint (1 to 10
  bytes, least significant group first, minimal encoding only), then the payload.
* ``Delimiter(sep)`` — the payload, then the delimiter bytes (``b"\\n"`` for
  ``line``); a payload never contains the delimiter.

Every framing has a required maximum frame size that bounds memory whatever a
peer sends: a frame announcing (or, for a delimiter, growing past) more than
the maximum raises ``FrameTooLarge`` as soon as that is known, and nothing of
it is buffered. A stream that ends inside a frame raises ``TruncatedInput``
from ``end_of_input``.
"""

from __future__ import annotations

import struct
from typing import Final, Literal, Self, final

from ..errors import FrameTooLarge, InvalidStackSpec, ProtocolError, TruncatedInput, UsageError
from ._params import DEFAULT_MAX_FRAME, check_params, hex_bytes_param, positive_int, size_param
from .base import Framing

__all__ = ["DEFAULT_MAX_FRAME", "VARINT_MAX", "Delimiter", "LengthPrefix", "Varint"]

_FORMATS: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}

#: The largest length a varint header carries (64 bits).
VARINT_MAX: Final = (1 << 64) - 1
#: The longest varint header: ten 7-bit groups cover 64 bits.
_VARINT_MAX_BYTES: Final = 10
_SMALL_VARINTS: Final = tuple(bytes((i,)) for i in range(0x80))


@final
class LengthPrefix(Framing):
    """``size``-byte unsigned length header, then the payload.

    ``max_frame`` is required: it bounds memory whatever a peer sends. It is
    lowered to what the header can express (255 for one byte). A header that
    announces more raises ``FrameTooLarge`` before any payload is buffered, so
    :attr:`buffered` never exceeds ``size + max_frame - 1``. ``encode`` raises
    ``UsageError`` for a frame over the maximum.
    """

    def __init__(
        self,
        size: Literal[1, 2, 4, 8] = 4,
        *,
        max_frame: int,
        byteorder: Literal["big", "little"] = "big",
    ) -> None:
        if size not in _FORMATS:
            raise UsageError(f"length prefix size must be 1, 2, 4 or 8 bytes, not {size}")
        if byteorder not in ("big", "little"):
            raise UsageError(f"byteorder must be 'big' or 'little', not {byteorder!r}")
        ceiling = (1 << (8 * size)) - 1
        positive_int("max_frame", max_frame)
        self.size = size
        self.byteorder = byteorder
        self.max_frame = min(max_frame, ceiling)
        self.name = f"lp{size}" + ("le" if byteorder == "little" else "")
        self._header = struct.Struct((">" if byteorder == "big" else "<") + _FORMATS[size])
        self._buffer = bytearray()

    def clone(self) -> Self:
        return type(self)(self.size, max_frame=self.max_frame, byteorder=self.byteorder)

    def encode(self, unit: bytes) -> bytes:
        length = len(unit)
        if length > self.max_frame:
            raise UsageError(
                f"{self.name}: cannot send a frame of {length} bytes; the maximum is "
                f"{self.max_frame} (raise max_frame on both sides)"
            )
        return self._header.pack(length) + unit

    def decode(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            hsize = self.size
            if len(data) >= hsize:
                # The common case, one whole frame and nothing else: no loop, no buffer.
                (length,) = self._header.unpack_from(data)
                if hsize + length == len(data) and length <= self.max_frame:
                    return [bytes(data[hsize:])]
            view = data
        frames: list[bytes] = []
        unpack = self._header.unpack_from
        hsize = self.size
        limit = self.max_frame
        total = len(view)
        pos = 0
        while total - pos >= hsize:
            (length,) = unpack(view, pos)
            if length > limit:
                self._buffer = bytearray()
                raise FrameTooLarge(layer=self.name, size=length, limit=limit)
            end = pos + hsize + length
            if end > total:
                break
            frames.append(bytes(view[pos + hsize : end]))
            pos = end
        if view is buffer:
            if pos:
                del buffer[:pos]
        elif pos < total:
            buffer += data[pos:] if pos else data
        return frames

    def end_of_input(self) -> list[bytes]:
        if self._buffer:
            raise TruncatedInput(layer=self.name, pending=len(self._buffer))
        return []

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def _varint(value: int) -> bytes:
    """The minimal unsigned LEB128 encoding of ``value`` (0 <= value < 2**64)."""
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@final
class Varint(Framing):
    """A protobuf-style varint length header, then the payload.

    The header is the payload length in unsigned LEB128: 7 bits per byte, least
    significant group first, the top bit set on every byte but the last. It is
    at most 10 bytes (64 bits) and must be minimal: a header of two or more
    bytes whose last byte is ``0x00`` is rejected with ``ProtocolError``, so
    every frame has exactly one encoding.

    ``max_frame`` is required (at most ``2**64 - 1``). A length over it raises
    ``FrameTooLarge``; so does a header that already has more bytes than the
    encoding of ``max_frame`` needs (its ``size`` is then the smallest length
    such a header can carry), so at most that many header bytes are ever held
    and :attr:`buffered` never exceeds ``header_size(max_frame) + max_frame - 1``.
    """

    def __init__(self, *, max_frame: int) -> None:
        self.max_frame = min(positive_int("max_frame", max_frame), VARINT_MAX)
        self.name = "varint"
        self._max_header = len(_varint(self.max_frame))
        self._buffer = bytearray()

    @staticmethod
    def header_size(length: int) -> int:
        """The number of header bytes that announce a payload of ``length`` bytes."""
        return len(_varint(length))

    def clone(self) -> Self:
        return type(self)(max_frame=self.max_frame)

    def encode(self, unit: bytes) -> bytes:
        length = len(unit)
        if length > self.max_frame:
            raise UsageError(
                f"{self.name}: cannot send a frame of {length} bytes; the maximum is "
                f"{self.max_frame} (raise max_frame on both sides)"
            )
        return _varint(length) + unit

    def decode(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        frames: list[bytes] = []
        limit = self.max_frame
        max_header = self._max_header
        total = len(view)
        pos = 0
        while pos < total:
            # Read the header: at most max_header bytes, stopping at the last one.
            value = 0
            shift = 0
            index = pos
            stop = min(total, pos + max_header)
            byte = 0x80
            while index < stop:
                byte = view[index]
                index += 1
                value |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            if byte >= 0x80:
                if index - pos < max_header:
                    break  # the header continues in the next chunk
                self._buffer = bytearray()
                if index - pos >= _VARINT_MAX_BYTES:
                    raise ProtocolError(
                        f"varint length header longer than {_VARINT_MAX_BYTES} bytes",
                        layer=self.name,
                    )
                raise FrameTooLarge(layer=self.name, size=value + (1 << shift), limit=limit)
            if byte == 0 and index - pos > 1:
                self._buffer = bytearray()
                raise ProtocolError(
                    f"non-minimal varint length header {bytes(view[pos:index]).hex()} "
                    f"(its last byte is 00; encode lengths in as few bytes as possible)",
                    layer=self.name,
                )
            if value > limit:
                self._buffer = bytearray()
                raise FrameTooLarge(layer=self.name, size=value, limit=limit)
            end = index + value
            if end > total:
                break
            frames.append(bytes(view[index:end]))
            pos = end
        if view is buffer:
            if pos:
                del buffer[:pos]
        elif pos < total:
            buffer += data[pos:] if pos else data
        return frames

    def end_of_input(self) -> list[bytes]:
        if self._buffer:
            raise TruncatedInput(layer=self.name, pending=len(self._buffer))
        return []

    @property
    def buffered(self) -> int:
        return len(self._buffer)


@final
class Delimiter(Framing):
    """Each frame is its payload followed by ``delimiter`` (``b"\\n"`` by default).

    A payload must not contain the delimiter: ``encode`` raises ``UsageError``
    for one that does (or that ends with bytes which, followed by the delimiter,
    would be read as an earlier delimiter, possible only with self-overlapping
    delimiters such as ``b"\\0\\0"``).

    ``max_length`` (required, also exposed as ``max_frame``) bounds a payload,
    delimiter excluded. As soon as the bytes held without a delimiter show that
    the payload must exceed it (``max_length + len(delimiter)`` bytes with no
    delimiter), ``decode`` raises ``FrameTooLarge`` (``size`` is then the bytes
    seen so far, a lower bound). So :attr:`buffered` never exceeds
    ``max_length + len(delimiter) - 1``. ``name`` defaults to ``"line"`` for
    ``b"\\n"`` and ``"delim"`` otherwise.
    """

    def __init__(
        self, delimiter: bytes = b"\n", *, max_length: int, name: str | None = None
    ) -> None:
        if not isinstance(delimiter, bytes) or not delimiter:
            raise UsageError(f"the delimiter must be non-empty bytes, not {delimiter!r}")
        self.delimiter = delimiter
        self.max_length = positive_int("max_length", max_length)
        self.max_frame = self.max_length
        self.name = name if name is not None else ("line" if delimiter == b"\n" else "delim")
        self._buffer = bytearray()

    def clone(self) -> Self:
        return type(self)(self.delimiter, max_length=self.max_length, name=self.name)

    def encode(self, unit: bytes) -> bytes:
        sep = self.delimiter
        length = len(unit)
        if length > self.max_length:
            raise UsageError(
                f"{self.name}: cannot send a frame of {length} bytes; the maximum is "
                f"{self.max_length} (raise max_length on both sides)"
            )
        framed = b"".join((unit, sep))
        if framed.find(sep) != length:
            raise UsageError(
                f"{self.name}: cannot send a frame that contains the delimiter "
                f"{sep.hex()} (hex); escape it first or use a length-prefix framing"
            )
        return framed

    def decode(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        sep = self.delimiter
        seplen = len(sep)
        if buffer:
            # What is held has no delimiter: only its last seplen-1 bytes may start one.
            start = max(0, len(buffer) - seplen + 1)
            buffer += data
            view: bytes | bytearray = buffer
        else:
            start = 0
            view = data
        frames: list[bytes] = []
        limit = self.max_length
        find = view.find
        pos = 0
        while (index := find(sep, start)) >= 0:
            if index - pos > limit:
                self._buffer = bytearray()
                raise FrameTooLarge(layer=self.name, size=index - pos, limit=limit)
            frames.append(bytes(view[pos:index]))
            pos = start = index + seplen
        rest = len(view) - pos
        if rest >= limit + seplen:
            self._buffer = bytearray()
            raise FrameTooLarge(layer=self.name, size=rest, limit=limit)
        if view is buffer:
            if pos:
                del buffer[:pos]
        elif rest:
            buffer += data[pos:] if pos else data
        return frames

    def end_of_input(self) -> list[bytes]:
        if self._buffer:
            raise TruncatedInput(layer=self.name, pending=len(self._buffer))
        return []

    @property
    def buffered(self) -> int:
        return len(self._buffer)


# ---------------------------------------------------------------------------
# Spec factories (names in ``netweave.registry.BUILTIN_LAYERS``)
# ---------------------------------------------------------------------------


def _max_frame(params: dict[str, str], name: str) -> int:
    check_params(name, params, ("max",))
    return size_param(name, params)


def lp1(**params: str) -> LengthPrefix:
    """Spec ``lp1[:max=SIZE]``: 1-byte length prefix (at most 255 bytes a frame)."""
    return LengthPrefix(1, max_frame=_max_frame(params, "lp1"))


def lp2(**params: str) -> LengthPrefix:
    """Spec ``lp2[:max=SIZE]``: 2-byte big-endian length prefix."""
    return LengthPrefix(2, max_frame=_max_frame(params, "lp2"))


def lp4(**params: str) -> LengthPrefix:
    """Spec ``lp4[:max=SIZE]``: 4-byte big-endian length prefix (default max 1 MiB)."""
    return LengthPrefix(4, max_frame=_max_frame(params, "lp4"))


def lp8(**params: str) -> LengthPrefix:
    """Spec ``lp8[:max=SIZE]``: 8-byte big-endian length prefix."""
    return LengthPrefix(8, max_frame=_max_frame(params, "lp8"))


def lp2le(**params: str) -> LengthPrefix:
    """Spec ``lp2le[:max=SIZE]``: 2-byte little-endian length prefix."""
    return LengthPrefix(2, max_frame=_max_frame(params, "lp2le"), byteorder="little")


def lp4le(**params: str) -> LengthPrefix:
    """Spec ``lp4le[:max=SIZE]``: 4-byte little-endian length prefix."""
    return LengthPrefix(4, max_frame=_max_frame(params, "lp4le"), byteorder="little")


def lp8le(**params: str) -> LengthPrefix:
    """Spec ``lp8le[:max=SIZE]``: 8-byte little-endian length prefix."""
    return LengthPrefix(8, max_frame=_max_frame(params, "lp8le"), byteorder="little")


def varint(**params: str) -> Varint:
    """Spec ``varint[:max=SIZE]``: protobuf-style varint length prefix (default max 1 MiB)."""
    return Varint(max_frame=_max_frame(params, "varint"))


def line(**params: str) -> Delimiter:
    """Spec ``line[:max=SIZE]``: frames end with a newline (``0a``); default max 1 MiB."""
    return Delimiter(b"\n", max_length=_max_frame(params, "line"), name="line")


def delim(**params: str) -> Delimiter:
    """Spec ``delim:sep=HEX[:max=SIZE]``: frames end with the delimiter spelled in hex,
    two digits a byte (``sep=00`` for NUL, ``sep=0d0a`` for CRLF); default max 1 MiB."""
    check_params("delim", params, ("sep", "max"))
    sep = hex_bytes_param("delim", params, "sep")
    if sep is None:
        raise InvalidStackSpec(
            "layer 'delim' needs its delimiter in hex, e.g. 'delim:sep=00' or 'delim:sep=0d0a' "
            "(it accepts: sep, max)"
        )
    return Delimiter(sep, max_length=size_param("delim", params), name="delim")
