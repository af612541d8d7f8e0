"""Framing layers: cut a byte stream into frames.

Wire formats (the exact bytes are a contract; see ``docs/wire-format.md``):

* ``LengthPrefix(n, byteorder)`` — an ``n``-byte unsigned length (1, 2, 4 or 8
  bytes, big or little endian), then that many payload bytes.

A frame whose header announces more than ``max_frame`` bytes raises
``FrameTooLarge`` as soon as the header is read; nothing of it is buffered.
"""

from __future__ import annotations

import struct
from typing import Final, Literal, Self, final

from ..endpoints import parse_size
from ..errors import FrameTooLarge, InvalidStackSpec, TruncatedInput, UsageError
from .base import Framing

__all__ = ["DEFAULT_MAX_FRAME", "LengthPrefix"]

#: The maximum frame size that spec names use when ``max`` is not given: 1 MiB.
DEFAULT_MAX_FRAME: Final = 1024 * 1024

_FORMATS: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


@final
class LengthPrefix(Framing):
    """``size``-byte unsigned length header, then the payload.

    ``max_frame`` is required: it bounds memory whatever a peer sends.
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
        if max_frame <= 0:
            raise UsageError(f"max_frame must be positive, not {max_frame}")
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


def _max_frame(params: dict[str, str], name: str) -> int:
    unknown = set(params) - {"max"}
    if unknown:
        raise InvalidStackSpec(
            f"layer {name!r} has no parameter {sorted(unknown)[0]!r} (it accepts: max)"
        )
    text = params.get("max")
    if text is None:
        return DEFAULT_MAX_FRAME
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise InvalidStackSpec(f"layer {name!r}: bad max: {exc}") from None
    if value <= 0:
        raise InvalidStackSpec(f"layer {name!r}: max must be positive")
    return value


def lp1(**params: str) -> LengthPrefix:
    """Spec ``lp1[:max=SIZE]``: 1-byte length prefix."""
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
