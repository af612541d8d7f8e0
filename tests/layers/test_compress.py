"""The compression layers: conformance, wire format, threshold, and the decompression bound."""

from __future__ import annotations

import tracemalloc
import zlib as stdlib_zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import lz4.block
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave import Stack
from netweave.errors import (
    DecodeError,
    FrameTooLarge,
    InvalidStackSpec,
    ProtocolError,
    UsageError,
)
from netweave.layers import Compression, Lz4, Zlib, Zstd
from netweave.registry import Registry
from netweave.testing import LayerConformance

SMALL_MAX = 4096
SAMPLES: list[bytes] = [
    b"",
    b"x",
    b"short and stored",
    b"compressible " * 100,
    bytes(range(256)) * 4,  # poorly compressible: stored
    b"\x00" * SMALL_MAX,
]


class _CompressionSuite(LayerConformance):
    cls: ClassVar[type[Compression]]

    def make_layer(self) -> Compression:
        return self.cls(threshold=16, max_frame=SMALL_MAX)

    def samples(self) -> Sequence[bytes]:
        return SAMPLES

    def garbage(self) -> Sequence[bytes]:
        compressed = self.make_layer().encode(b"a" * 1000)
        assert compressed[0] == self.cls.marker
        return [
            b"",  # no marker
            b"\x7f",  # unknown marker
            bytes([self.cls.marker]),  # marker and nothing else
            compressed[:-3],  # truncated body
            compressed + b"junk",  # trailing bytes
            bytes([self.cls.marker]) + b"\xff" * 40,  # not this algorithm at all
            b"\x00" + b"y" * (SMALL_MAX + 1),  # stored frame over the bound
        ]

    def oversize(self) -> tuple[Any, int]:
        return self.bomb(SMALL_MAX + 1), 1

    def unencodable(self) -> Sequence[Any]:
        return [b"\x00" * (SMALL_MAX + 1)]

    def bomb(self, size: int) -> bytes:
        """A valid frame of this algorithm that expands to ``size`` bytes."""
        return bytes([self.cls.marker]) + self.raw_compress(b"\x00" * size)

    def raw_compress(self, data: bytes) -> bytes:
        raise NotImplementedError


class TestZlibConformance(_CompressionSuite):
    cls = Zlib

    def raw_compress(self, data: bytes) -> bytes:
        return stdlib_zlib.compress(data, 9)


class TestZstdConformance(_CompressionSuite):
    cls = Zstd

    def raw_compress(self, data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=19).compress(data)


class TestLz4Conformance(_CompressionSuite):
    cls = Lz4

    def raw_compress(self, data: bytes) -> bytes:
        return lz4.block.compress(data, store_size=True)  # type: ignore[no-any-return]


ALL = [Zlib, Zstd, Lz4]


# ---------------------------------------------------------------------------
# Wire format (golden bytes; docs/wire-format.md, "Compression")
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_small_frames_are_stored_with_marker_zero(cls: type[Compression]) -> None:
    layer = cls(threshold=256)
    assert layer.encode(b"hello") == b"\x00hello"
    assert layer.encode(b"") == b"\x00"
    assert layer.decode(b"\x00hello") == [b"hello"]


@pytest.mark.parametrize("cls", ALL)
def test_incompressible_frames_are_stored(cls: type[Compression]) -> None:
    data = bytes(range(256))
    assert cls(threshold=0).encode(data) == b"\x00" + data


# Compressed bytes may differ between library versions, so the golden frames are
# checked on the way in: these exact bytes must always decode to 64 "a"s.
GOLDEN = {
    Zlib: "01789c4b4ca40c0000148d1841",
    Zstd: "0228b52ffd20404500001061610100930016",
    Lz4: "03400000001f61010027506161616161",
}


@pytest.mark.parametrize("cls", ALL)
def test_golden_frames_decode(cls: type[Compression]) -> None:
    assert cls().decode(bytes.fromhex(GOLDEN[cls])) == [b"a" * 64]
    assert cls().decode(bytes.fromhex("00") + b"a" * 64) == [b"a" * 64]


@pytest.mark.parametrize(
    ("cls", "marker", "direct"),
    [
        (Zlib, 0x01, lambda data: stdlib_zlib.compress(data, 6)),
        (Zstd, 0x02, lambda data: zstandard.ZstdCompressor(level=3).compress(data)),
        (Lz4, 0x03, lambda data: lz4.block.compress(data, store_size=True)),
    ],
)
def test_frame_is_marker_then_library_format(
    cls: type[Compression], marker: int, direct: Any
) -> None:
    """The body is exactly what the library itself writes, so any implementation can read it."""
    data = b"netweave " * 200
    frame = cls(threshold=0).encode(data)
    assert frame == bytes([marker]) + direct(data)
    assert cls().decode(bytes([marker]) + direct(data)) == [data]


def test_layer_refuses_another_algorithm_by_name() -> None:
    frame = Zstd(threshold=0).encode(b"z" * 500)
    with pytest.raises(DecodeError, match=r"compressed with zstd .* this layer is zlib"):
        Zlib().decode(frame)


def test_zstd_frame_without_content_size_is_rejected() -> None:
    packer = zstandard.ZstdCompressor(write_content_size=False)
    with pytest.raises(DecodeError, match="content size"):
        Zstd().decode(b"\x02" + packer.compress(b"q" * 500))


# ---------------------------------------------------------------------------
# Decompression bound: bombs are refused before they are expanded
# ---------------------------------------------------------------------------

BOMB_SIZE = 64 * 1024 * 1024  # 64 MiB of zeros, a few KiB compressed


@pytest.fixture(scope="module")
def bombs() -> dict[type[Compression], bytes]:
    zeros = b"\x00" * BOMB_SIZE
    return {
        Zlib: b"\x01" + stdlib_zlib.compress(zeros, 9),
        Zstd: b"\x02" + zstandard.ZstdCompressor(level=1).compress(zeros),
        Lz4: b"\x03" + lz4.block.compress(zeros, store_size=True),
    }


@pytest.mark.parametrize("cls", ALL)
def test_bomb_is_rejected_with_bounded_memory(
    cls: type[Compression], bombs: dict[type[Compression], bytes]
) -> None:
    bomb = bombs[cls]
    assert len(bomb) < BOMB_SIZE // 100
    limit = 64 * 1024
    layer = cls(max_frame=limit)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            layer.decode(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == limit
    assert info.value.size > limit
    assert info.value.layer == cls.name
    # Never more than the bound (plus interpreter noise) was allocated, not 64 MiB.
    assert peak < limit + 256 * 1024, f"peak {peak} bytes while rejecting a bomb"
    assert layer.buffered == 0


@pytest.mark.parametrize("cls", [Zstd, Lz4])
def test_announced_size_is_checked_before_allocating(cls: type[Compression]) -> None:
    """A header announcing 2 GiB is refused from the header alone."""
    if cls is Lz4:
        frame = b"\x03" + (2**31 - 1).to_bytes(4, "little") + b"\x00" * 8
    else:
        # zstd magic, a descriptor for a single segment with a 4-byte content size, 2 GiB.
        frame = b"\x02" + bytes.fromhex("28b52ffd") + b"\xa0" + (2**31).to_bytes(4, "little")
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            cls().decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size >= 2**31 - 1
    assert peak < 64 * 1024


def test_zstd_skippable_frame_is_refused_without_allocating() -> None:
    """A skippable frame (its own magic, any size) has no content size of its own: the
    library reports 0 for it, yet would allocate its announced length to "decompress" it."""
    skippable = (0x184D2A50).to_bytes(4, "little") + (2**31).to_bytes(4, "little") + bytes(8)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="skippable") as info:
            Zstd().decode(b"\x02" + skippable)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.layer == "zstd"
    assert peak < 64 * 1024


def test_zstd_empty_frame_decodes_and_nothing_may_follow_it() -> None:
    empty = zstandard.ZstdCompressor().compress(b"")
    assert zstandard.frame_content_size(empty) == 0
    assert Zstd().decode(b"\x02" + empty) == [b""]
    with pytest.raises(DecodeError, match="4 bytes after the end"):
        Zstd().decode(b"\x02" + empty + b"junk")
    with pytest.raises(DecodeError):
        Zstd().decode(b"\x02" + empty[:-1])


@pytest.mark.parametrize("delta", [-24, 24])
def test_zstd_frame_whose_content_size_lies_is_refused(delta: int) -> None:
    frame = bytearray(zstandard.ZstdCompressor(level=3).compress(b"abc" * 341 + b"x"))
    assert frame[4] == 0x60  # single segment, 2-byte content size (value - 256) at offset 5
    announced = int.from_bytes(frame[5:7], "little") + delta
    frame[5:7] = announced.to_bytes(2, "little")
    with pytest.raises(DecodeError, match="corrupt zstd frame"):
        Zstd().decode(b"\x02" + bytes(frame))


@pytest.mark.parametrize("delta", [-1, 1])
def test_lz4_block_whose_size_header_lies_is_refused(delta: int) -> None:
    data = b"netweave " * 100
    frame = bytearray(b"\x03" + lz4.block.compress(data, store_size=True))
    frame[1:5] = (len(data) + delta).to_bytes(4, "little")
    with pytest.raises(DecodeError, match="corrupt lz4 block"):
        Lz4().decode(bytes(frame))


def test_lz4_frame_shorter_than_its_size_header() -> None:
    with pytest.raises(DecodeError, match="shorter than its 4-byte size header"):
        Lz4().decode(b"\x03\x10\x00")


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("size", [100, 10_000, 200_000])
def test_large_and_small_frames_decode_from_bytes_and_views(
    cls: type[Compression], size: int
) -> None:
    """Frames are sliced when small and viewed when large; both give the same bytes."""
    data = b"".join(b"netweave %d " % i for i in range(size))[:size]
    frame = cls(threshold=0, max_frame=size).encode(data)
    assert frame[0] == cls.marker
    assert cls(max_frame=size).decode(frame) == [data]
    with pytest.raises(DecodeError):
        cls(max_frame=size).decode(frame + b"\x00")


@pytest.mark.parametrize("cls", ALL)
def test_frame_exactly_at_the_bound_is_accepted(cls: type[Compression]) -> None:
    limit = 10_000
    data = b"\x00" * limit
    assert cls(max_frame=limit).decode(cls(max_frame=limit, threshold=0).encode(data)) == [data]


@pytest.mark.parametrize("cls", ALL)
@settings(max_examples=50)
@given(data=st.binary(max_size=2048), threshold=st.integers(0, 300))
def test_round_trip_any_frame(cls: type[Compression], data: bytes, threshold: int) -> None:
    layer = cls(threshold=threshold, max_frame=4096)
    frame = layer.encode(data)
    assert len(frame) <= len(data) + 1
    assert frame[0] in (0, cls.marker)
    if len(data) < threshold:
        assert frame[0] == 0
    assert cls(max_frame=4096).decode(frame) == [data]


@pytest.mark.parametrize("cls", ALL)
@settings(max_examples=300)
@given(body=st.binary(max_size=600), marker=st.sampled_from([0, 1, 2, 3, 4, 255]))
def test_fuzz_any_marker_and_body(cls: type[Compression], body: bytes, marker: int) -> None:
    """Bad input yields only this layer's protocol error, and never more than the bound."""
    layer = cls(max_frame=1024)
    error: ProtocolError | None = None
    frames: list[bytes] = []
    try:
        frames = layer.decode(bytes([marker]) + body)
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert error.layer == cls.name
    else:
        assert len(frames) == 1
        assert len(frames[0]) <= 1024


# ---------------------------------------------------------------------------
# Parameters, spec names and stacks
# ---------------------------------------------------------------------------


def test_spec_names_build_configured_layers() -> None:
    registry = Registry(entry_points=False)
    stack = Stack.parse("lp4,zstd:level=7:threshold=1k:max=64k,raw", registry=registry)
    layer = stack.layers[1]
    assert isinstance(layer, Zstd)
    assert (layer.level, layer.threshold, layer.max_frame) == (7, 1024, 64 * 1024)
    assert isinstance(Stack.parse("lp4,zlib,raw", registry=registry).layers[1], Zlib)
    lz = Stack.parse("lp4,lz4:level=9,raw", registry=registry).layers[1]
    assert isinstance(lz, Lz4)
    assert lz.level == 9


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lp4,zlib:level=10,raw", "level must be an integer from 0 to 9"),
        ("lp4,zlib:level=high,raw", "level must be an integer"),
        ("lp4,zstd:level=23,raw", "from -7 to 22"),
        ("lp4,lz4:level=13,raw", "from 0 to 12"),
        ("lp4,zlib:speed=1,raw", "no parameter 'speed'"),
        ("lp4,zlib:threshold=lots,raw", "bad threshold"),
        ("lp4,zlib:max=0,raw", "max must be positive"),
    ],
)
def test_bad_parameters_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(InvalidStackSpec, match=message):
        Stack.parse(spec, registry=Registry(entry_points=False))


def test_encode_over_the_bound_is_our_fault() -> None:
    with pytest.raises(UsageError, match="maximum is 100"):
        Zlib(max_frame=100).encode(b"x" * 101)


@pytest.mark.parametrize("cls", ALL)
def test_stack_round_trip_over_a_stream(cls: type[Compression]) -> None:
    stack = Stack(
        [*Stack.parse("lp4,raw").layers[:1], cls(threshold=8), *Stack.parse("lp4,raw").layers[1:]]
    )
    messages = [b"tiny", b"repeat " * 300, b""]
    wire = b"".join(stack.encode(m) for m in messages)
    assert len(wire) < sum(len(m) for m in messages)
    receiver = stack.fresh()
    assert [m for i in range(len(wire)) for m in receiver.decode(wire[i : i + 1])] == messages


def test_missing_optional_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from netweave.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setitem(sys.modules, "lz4.block", None)
    with pytest.raises(MissingDependency, match=r"netweave\[zstd\]"):
        Zstd()
    with pytest.raises(MissingDependency, match=r"netweave\[lz4\]"):
        Lz4()
    with pytest.raises(MissingDependency, match=r"netweave\[zstd\]"):
        Stack.parse("lp4,zstd,raw", registry=Registry(entry_points=False))


def test_wire_format_page_examples() -> None:
    """The examples in docs/wire-format.md ("Compression") decode to their frames."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()
    section = page[page.index("## Compression") :]
    rows = re.findall(r"^\| `(\w+):threshold=0` \| 64 x `61` \| `([0-9a-f ]+)` \|$", section, re.M)
    layers = {"zlib": Zlib(), "zstd": Zstd(), "lz4": Lz4()}
    assert sorted(name for name, _ in rows) == sorted(layers)
    for name, wire in rows:
        assert wire.replace(" ", "") == GOLDEN[type(layers[name])]
        assert layers[name].decode(bytes.fromhex(wire)) == [b"a" * 64]
    assert (
        "| any | `68 65 6c 6c 6f` (5 bytes, under the threshold) | `00 68 65 6c 6c 6f` |" in section
    )
