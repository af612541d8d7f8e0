"""Compression layers: zlib, zstd and lz4, one frame at a time.

Wire format (a contract; ``docs/wire-format.md``, section "Compression"): each
frame starts with one marker byte saying how the rest is stored.

========  ====================================================================
marker    rest of the frame
========  ====================================================================
``0x00``  stored: the frame as it is
``0x01``  zlib: one zlib stream (RFC 1950)
``0x02``  zstd: one zstd frame (RFC 8878) whose header carries the content size
``0x03``  lz4: the uncompressed size (4 bytes, little endian), then one LZ4 block
========  ====================================================================

A frame shorter than ``threshold`` bytes is stored, and so is any frame that
compression would not make smaller. A layer decodes stored frames and frames
of its own algorithm; any other marker is a ``DecodeError``.

Rules of this file:

* The decompression bound: a frame that would expand past ``max_frame`` bytes
  raises ``FrameTooLarge`` *before* it is expanded. zstd and lz4 frames carry
  their size, which is checked before anything is allocated; zlib is expanded
  with a bounded ``decompressobj().decompress(data, max_frame + 1)``, so at most
  ``max_frame + 1`` bytes are ever produced. No decompression bombs.
* ``decode`` raises only this layer's ``ProtocolError`` (``DecodeError`` for
  a malformed frame, with the library's exception as ``__cause__``;
  ``FrameTooLarge`` for one over the bound). ``encode`` raises ``UsageError``
  for a frame over ``max_frame`` (the peer would refuse it).
* ``zstandard`` and ``lz4`` are imported when a layer is constructed; a missing
  one raises ``MissingDependency`` naming the extra (``zstd`` or ``lz4``).
* Each algorithm's ``decode`` is one flat function for frames of its own
  marker (the hot path: a 1 KiB frame costs little more than the library call);
  stored frames and errors go through :meth:`Compression._not_ours`.
"""

from __future__ import annotations

import functools
import importlib
import struct
import zlib as _zlib
from abc import abstractmethod
from collections.abc import Mapping
from types import ModuleType
from typing import Any, ClassVar, Final, Self, final

from ..endpoints import parse_size
from ..errors import (
    DecodeError,
    FrameTooLarge,
    InvalidStackSpec,
    MissingDependency,
    ProtocolError,
    UsageError,
)
from ._params import DEFAULT_MAX_FRAME, check_params, size_param
from .base import FrameTransform

__all__ = [
    "DEFAULT_THRESHOLD",
    "MARKER_LZ4",
    "MARKER_STORED",
    "MARKER_ZLIB",
    "MARKER_ZSTD",
    "Compression",
    "Lz4",
    "Zlib",
    "Zstd",
]

#: Marker bytes (the first byte of every compressed-layer frame).
MARKER_STORED: Final = 0x00
MARKER_ZLIB: Final = 0x01
MARKER_ZSTD: Final = 0x02
MARKER_LZ4: Final = 0x03

#: Frames shorter than this many bytes are stored uncompressed unless told otherwise.
DEFAULT_THRESHOLD: Final = 256

_STORED: Final = bytes([MARKER_STORED])
_MARKER_NAMES: Final = {MARKER_ZLIB: "zlib", MARKER_ZSTD: "zstd", MARKER_LZ4: "lz4"}


#: An lz4 frame's marker and uncompressed size (4 bytes, little endian), in one call.
_LZ4_HEAD: Final = struct.Struct("<BI").unpack_from
#: The magic number that starts every zstd frame (skippable frames have others).
_ZSTD_MAGIC: Final = bytes.fromhex("28b52ffd")
#: Frames up to this size are sliced (a copy) rather than viewed: cheaper when small.
_COPY_BELOW: Final = 8 * 1024
_decompressobj: Final = _zlib.decompressobj
_ZlibError: Final = _zlib.error


def _require(module: str, *, feature: str, package: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(feature, package, extra) from exc


class Compression(FrameTransform):
    """One frame in, one frame out, compressed above ``threshold`` bytes.

    ``level`` is the algorithm's compression level, ``threshold`` the smallest
    frame worth compressing, ``max_frame`` the largest frame accepted either
    way (and so the decompression bound).
    """

    #: The marker byte of this algorithm.
    marker: ClassVar[int]
    #: Inclusive range of accepted levels, and the default.
    levels: ClassVar[tuple[int, int]]
    default_level: ClassVar[int]

    def __init__(
        self,
        *,
        level: int | None = None,
        threshold: int = DEFAULT_THRESHOLD,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        low, high = self.levels
        chosen = self.default_level if level is None else level
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not low <= chosen <= high:
            raise UsageError(
                f"{self.name} level must be an integer from {low} to {high}, not {level!r}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise UsageError(f"{self.name} threshold must be a byte count >= 0, not {threshold!r}")
        if isinstance(max_frame, bool) or not isinstance(max_frame, int) or max_frame <= 0:
            raise UsageError(
                f"{self.name} max_frame must be a positive byte count, not {max_frame!r}"
            )
        self.level = chosen
        self.threshold = threshold
        self.max_frame = max_frame
        self._marker = bytes([self.marker])

    def clone(self) -> Self:
        return type(self)(level=self.level, threshold=self.threshold, max_frame=self.max_frame)

    @abstractmethod
    def _compress(self, data: bytes) -> bytes:
        """The algorithm's encoding of ``data`` (without the marker)."""

    def encode(self, unit: bytes) -> bytes:
        size = len(unit)
        if size > self.max_frame:
            raise UsageError(
                f"{self.name}: cannot send a frame of {size} bytes; the maximum is "
                f"{self.max_frame} (raise max on both sides)"
            )
        if size >= self.threshold:
            packed = self._compress(unit)
            if len(packed) < size:
                return self._marker + packed
        return _STORED + unit

    def _not_ours(self, data: bytes) -> list[bytes]:
        """Decode a frame whose first byte is not this algorithm's marker: a stored
        frame, or a ``DecodeError`` (empty frame, another algorithm, unknown marker)."""
        if not data:
            raise DecodeError(
                "empty frame: every frame of a compression layer starts with a marker byte",
                layer=self.name,
            )
        marker = data[0]
        if marker == MARKER_STORED:
            if len(data) - 1 > self.max_frame:
                raise FrameTooLarge(layer=self.name, size=len(data) - 1, limit=self.max_frame)
            return [data[1:]]
        other = _MARKER_NAMES.get(marker)
        if other is not None:
            raise DecodeError(
                f"frame compressed with {other} (marker 0x{marker:02x}), but this layer "
                f"is {self.name}; both sides must use the same compression",
                layer=self.name,
            )
        raise DecodeError(
            f"unknown marker byte 0x{marker:02x} (expected 0x00 stored or "
            f"0x{self.marker:02x} {self.name})",
            layer=self.name,
        )

    def _too_large(self, size: int) -> FrameTooLarge:
        return FrameTooLarge(layer=self.name, size=size, limit=self.max_frame)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} level={self.level} "
            f"threshold={self.threshold} max={self.max_frame}>"
        )


@final
class Zlib(Compression):
    """zlib (RFC 1950) from the standard library; levels 0-9, default 6."""

    marker: ClassVar[int] = MARKER_ZLIB
    levels: ClassVar[tuple[int, int]] = (0, 9)
    default_level: ClassVar[int] = 6
    name = "zlib"

    def _compress(self, data: bytes) -> bytes:
        return _zlib.compress(data, self.level)

    def decode(self, data: bytes) -> list[bytes]:
        if not data or data[0] != MARKER_ZLIB:
            return self._not_ours(data)
        inflater = _decompressobj()
        try:
            # At most max_frame + 1 bytes are ever produced: a bomb stops there.
            out = inflater.decompress(
                data[1:] if len(data) < _COPY_BELOW else memoryview(data)[1:],
                self.max_frame + 1,
            )
        except _ZlibError as exc:
            raise DecodeError(f"corrupt zlib data: {exc}", layer=self.name) from exc
        if inflater.unused_data or not inflater.eof or len(out) > self.max_frame:
            raise self._refusal(out, inflater)
        return [out]

    def _refusal(self, out: bytes, inflater: Any) -> ProtocolError:
        if len(out) > self.max_frame:
            # Stopped at max_frame + 1 bytes: the rest was never expanded.
            return self._too_large(len(out))
        if not inflater.eof:
            return DecodeError("truncated zlib stream (no end marker)", layer=self.name)
        return DecodeError(
            f"{len(inflater.unused_data)} bytes after the end of the zlib stream",
            layer=self.name,
        )


@final
class Zstd(Compression):
    """Zstandard through the ``zstandard`` package (extra ``zstd``); levels -7 to 22,
    default 3. Every frame's header carries its content size."""

    marker: ClassVar[int] = MARKER_ZSTD
    levels: ClassVar[tuple[int, int]] = (-7, 22)
    default_level: ClassVar[int] = 3
    name = "zstd"

    def __init__(
        self,
        *,
        level: int | None = None,
        threshold: int = DEFAULT_THRESHOLD,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        zstandard = _require(
            "zstandard", feature="zstd compression", package="zstandard", extra="zstd"
        )
        super().__init__(level=level, threshold=threshold, max_frame=max_frame)
        self._error: type[Exception] = zstandard.ZstdError
        self._content_size: Any = zstandard.frame_content_size
        self._compressor: Any = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
        self._decompressor: Any = zstandard.ZstdDecompressor()
        self._decompress: Any = self._decompressor.decompress

    def _compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> list[bytes]:
        if not data or data[0] != MARKER_ZSTD:
            return self._not_ours(data)
        body = data[1:] if len(data) < _COPY_BELOW else memoryview(data)[1:]
        try:
            size: int = self._content_size(body)
        except self._error as exc:
            raise DecodeError(f"not a zstd frame header: {exc}", layer=self.name) from exc
        if not 0 < size <= self.max_frame:
            return self._odd_size(body, size)
        try:
            # The library allocates exactly the announced size (checked above), fails
            # unless the frame fills it exactly, and with allow_extra_data=False refuses
            # bytes after the frame. Arguments by position: (data, max_output_size,
            # read_across_frames, allow_extra_data), as keywords they cost 10% at 1 KiB.
            return [self._decompress(body, 0, False, False)]
        except self._error as exc:
            raise DecodeError(f"corrupt zstd frame: {exc}", layer=self.name) from exc

    def _odd_size(self, body: bytes | memoryview, size: int) -> list[bytes]:
        """A frame announcing no size, more than the bound, or nothing: refused, except a
        real (not skippable) zstd frame of empty content with nothing after it."""
        if size < 0:
            raise DecodeError(
                "zstd frame without its content size in the header (netweave always writes it)",
                layer=self.name,
            )
        if size > 0:
            raise self._too_large(size)
        if bytes(body[:4]) != _ZSTD_MAGIC:
            # frame_content_size says 0 for skippable frames, whatever they hold.
            raise DecodeError(
                "not a zstd frame (a skippable frame, or another magic number)", layer=self.name
            )
        inflater = self._decompressor.decompressobj()
        try:
            # Output is bounded by the announced size of 0: the library refuses more.
            out: bytes = inflater.decompress(body)
        except self._error as exc:
            raise DecodeError(f"corrupt zstd frame: {exc}", layer=self.name) from exc
        if out or not inflater.eof:
            raise DecodeError("zstd frame announced 0 bytes but did not end", layer=self.name)
        if inflater.unused_data:
            raise DecodeError(
                f"{len(inflater.unused_data)} bytes after the end of the zstd frame",
                layer=self.name,
            )
        return [b""]


@final
class Lz4(Compression):
    """LZ4 blocks through the ``lz4`` package (extra ``lz4``). Level 0 is LZ4's fast
    default; 1-12 use its high-compression mode at that level."""

    marker: ClassVar[int] = MARKER_LZ4
    levels: ClassVar[tuple[int, int]] = (0, 12)
    default_level: ClassVar[int] = 0
    name = "lz4"

    def __init__(
        self,
        *,
        level: int | None = None,
        threshold: int = DEFAULT_THRESHOLD,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        block = _require("lz4.block", feature="lz4 compression", package="lz4", extra="lz4")
        super().__init__(level=level, threshold=threshold, max_frame=max_frame)
        self._error: type[Exception] = block.LZ4BlockError
        self._decompress: Any = block.decompress
        if self.level == 0:
            self._pack: Any = block.compress  # defaults: fast mode, size stored
        else:
            self._pack = functools.partial(
                block.compress, mode="high_compression", compression=self.level
            )

    def _compress(self, data: bytes) -> bytes:
        return self._pack(data)  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> list[bytes]:
        try:
            marker, size = _LZ4_HEAD(data)
        except struct.error:
            marker = size = -1  # under 5 bytes: stored, or an error
        if marker != MARKER_LZ4:
            if data and data[0] == MARKER_LZ4:
                raise DecodeError(
                    f"lz4 frame of {len(data) - 1} bytes is shorter than its 4-byte size header",
                    layer=self.name,
                )
            return self._not_ours(data)
        if size > self.max_frame:
            raise self._too_large(size)
        try:
            # The size header (checked above) is what lz4 allocates, and it checks
            # that the block fills exactly that much.
            return [self._decompress(data[1:] if len(data) < _COPY_BELOW else memoryview(data)[1:])]
        except (self._error, ValueError) as exc:
            raise DecodeError(f"corrupt lz4 block: {exc}", layer=self.name) from exc


# ---------------------------------------------------------------------------
# Spec factories (names in ``netweave.registry.BUILTIN_LAYERS``)
# ---------------------------------------------------------------------------

_PARAMS: Final = ("level", "threshold", "max")


def _options(name: str, params: Mapping[str, str]) -> dict[str, Any]:
    check_params(name, params, _PARAMS)
    options: dict[str, Any] = {"max_frame": size_param(name, params)}
    if "level" in params:
        try:
            options["level"] = int(params["level"])
        except ValueError:
            raise InvalidStackSpec(
                f"layer {name!r}: level must be an integer, not {params['level']!r}"
            ) from None
    if "threshold" in params:
        try:
            options["threshold"] = parse_size(params["threshold"])
        except ValueError as exc:
            raise InvalidStackSpec(f"layer {name!r}: bad threshold: {exc}") from None
    return options


def _build(cls: type[Compression], name: str, params: Mapping[str, str]) -> Compression:
    options = _options(name, params)
    try:
        return cls(**options)
    except MissingDependency:
        raise
    except UsageError as exc:
        raise InvalidStackSpec(f"layer {name!r}: {exc}") from None


def zlib(**params: str) -> Compression:
    """Spec ``zlib[:level=0-9][:threshold=SIZE][:max=SIZE]`` (defaults 6, 256, 1 MiB)."""
    return _build(Zlib, "zlib", params)


def zstd(**params: str) -> Compression:
    """Spec ``zstd[:level=-7..22][:threshold=SIZE][:max=SIZE]`` (defaults 3, 256, 1 MiB);
    needs the ``zstd`` extra."""
    return _build(Zstd, "zstd", params)


def lz4(**params: str) -> Compression:
    """Spec ``lz4[:level=0-12][:threshold=SIZE][:max=SIZE]`` (defaults 0, 256, 1 MiB);
    needs the ``lz4`` extra."""
    return _build(Lz4, "lz4", params)
