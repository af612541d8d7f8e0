"""Framing specifics that the conformance suite does not pin down: limits, header
rules, error details, constructor checks and spec factories."""

from __future__ import annotations

from typing import Any

import pytest

from netweave import FrameTooLarge, InvalidStackSpec, ProtocolError, TruncatedInput, UsageError
from netweave.layers import DEFAULT_MAX_FRAME, VARINT_MAX, Delimiter, LengthPrefix, Varint
from netweave.registry import Registry

# ---------------------------------------------------------------------------
# LengthPrefix
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ceiling"), [(1, 255), (2, 65535), (4, 2**32 - 1), (8, 2**64 - 1)]
)
def test_length_prefix_max_is_capped_by_what_the_header_holds(size: Any, ceiling: int) -> None:
    assert LengthPrefix(size, max_frame=2**70).max_frame == ceiling
    assert LengthPrefix(size, max_frame=10).max_frame == 10


def test_length_prefix_rejects_the_header_before_the_payload_arrives() -> None:
    layer = LengthPrefix(4, max_frame=100)
    assert layer.decode(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge) as info:
        layer.decode(b"\x00\x65")
    assert (info.value.size, info.value.limit, info.value.layer) == (101, 100, "lp4")
    assert layer.buffered == 0


def test_length_prefix_frames_before_an_oversize_header_are_not_returned() -> None:
    # After a ProtocolError the layer is unusable; it raises rather than half-deliver.
    layer = LengthPrefix(2, max_frame=4)
    with pytest.raises(FrameTooLarge):
        layer.decode(b"\x00\x01a\x00\x05")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 3, "max_frame": 10}, "1, 2, 4 or 8"),
        ({"size": 4, "max_frame": 0}, "max_frame must be a positive integer"),
        ({"size": 4, "max_frame": -5}, "max_frame must be a positive integer"),
        ({"size": 4, "max_frame": 1.5}, "max_frame must be a positive integer"),
        ({"size": 4, "max_frame": True}, "max_frame must be a positive integer"),
        ({"size": 4, "max_frame": 10, "byteorder": "middle"}, "byteorder"),
    ],
)
def test_length_prefix_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        LengthPrefix(**kwargs)


def test_length_prefix_max_frame_is_required() -> None:
    with pytest.raises(TypeError):
        LengthPrefix(4)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------
# Varint
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
    ],
)
def test_varint_header_is_unsigned_leb128(length: int, header: str) -> None:
    layer = Varint(max_frame=1 << 20)
    encoded = layer.encode(b"\x00" * length)
    assert encoded[: len(header) // 2].hex() == header
    assert Varint.header_size(length) == len(header) // 2
    assert layer.decode(encoded) == [b"\x00" * length]


def test_varint_largest_header_is_ten_bytes() -> None:
    assert Varint.header_size(VARINT_MAX) == 10
    assert Varint.header_size(2**63) == 10
    assert Varint.header_size(2**63 - 1) == 9


def test_varint_longer_than_ten_bytes_is_a_protocol_error() -> None:
    layer = Varint(max_frame=VARINT_MAX)
    assert layer.decode(b"\xff" * 9) == []
    with pytest.raises(ProtocolError, match="longer than 10 bytes") as info:
        layer.decode(b"\xff")
    assert not isinstance(info.value, FrameTooLarge)
    assert info.value.layer == "varint"


def test_varint_over_64_bits_is_too_large() -> None:
    with pytest.raises(FrameTooLarge) as info:
        Varint(max_frame=VARINT_MAX).decode(b"\xff" * 9 + b"\x02")
    assert info.value.size == 2**64 + 2**63 - 1


@pytest.mark.parametrize("header", [b"\x80\x00", b"\xff\x00", b"\x80\x80\x00", b"\x81\x80\x00"])
def test_varint_non_minimal_headers_are_rejected(header: bytes) -> None:
    with pytest.raises(ProtocolError, match="non-minimal") as info:
        Varint(max_frame=1 << 20).decode(header)
    assert info.value.layer == "varint"


def test_varint_knows_a_header_is_too_large_before_it_ends() -> None:
    # max 300 needs two header bytes; a second continuation bit means at least 2**14.
    layer = Varint(max_frame=300)
    assert layer.decode(b"\x80") == []
    assert layer.buffered == 1
    with pytest.raises(FrameTooLarge) as info:
        layer.decode(b"\x80")
    assert info.value.size == 2**14
    assert info.value.limit == 300


def test_varint_exact_limit_is_accepted_and_one_more_is_not() -> None:
    layer = Varint(max_frame=300)
    assert layer.decode(layer.encode(b"x" * 300)) == [b"x" * 300]
    with pytest.raises(FrameTooLarge):
        layer.decode(b"\xad\x02")
    with pytest.raises(UsageError, match="maximum is 300"):
        layer.encode(b"x" * 301)


def test_varint_max_is_capped_at_64_bits_and_must_be_positive() -> None:
    assert Varint(max_frame=2**80).max_frame == VARINT_MAX
    with pytest.raises(UsageError):
        Varint(max_frame=0)


def test_varint_truncated_stream() -> None:
    layer = Varint(max_frame=300)
    assert layer.decode(b"\x05abc") == []
    with pytest.raises(TruncatedInput) as info:
        layer.end_of_input()
    assert info.value.pending == 4


# ---------------------------------------------------------------------------
# Delimiter
# ---------------------------------------------------------------------------


def test_delimiter_names() -> None:
    assert Delimiter(max_length=10).name == "line"
    assert Delimiter(b"\0", max_length=10).name == "delim"
    assert Delimiter(b"\n", max_length=10, name="custom").clone().name == "custom"
    assert Delimiter(b"\r\n", max_length=7).max_frame == 7


def test_delimiter_rejects_an_endless_frame_as_soon_as_it_must_be_too_long() -> None:
    layer = Delimiter(b"\r\n", max_length=4)
    assert layer.decode(b"abcd") == []
    assert layer.decode(b"\r") == []  # could still be "abcd" + CRLF
    assert layer.buffered == 5
    with pytest.raises(FrameTooLarge) as info:
        layer.decode(b"x")
    assert info.value.size == 6
    assert layer.buffered == 0


def test_delimiter_rejects_a_long_frame_even_when_its_delimiter_is_in_the_same_chunk() -> None:
    with pytest.raises(FrameTooLarge) as info:
        Delimiter(max_length=4).decode(b"ok\n" + b"x" * 10 + b"\n")
    assert info.value.size == 10


def test_delimiter_split_across_chunks() -> None:
    layer = Delimiter(b"\r\n", max_length=10)
    assert layer.decode(b"ab\r") == []
    assert layer.decode(b"\ncd\r\n\r") == [b"ab", b"cd"]
    assert layer.decode(b"\n") == [b""]


def test_delimiter_encode_refuses_frames_the_reader_would_cut_differently() -> None:
    with pytest.raises(UsageError, match="contains the delimiter"):
        Delimiter(max_length=10).encode(b"a\nb")
    overlapping = Delimiter(b"aba", max_length=10)
    with pytest.raises(UsageError):
        overlapping.encode(b"xab")  # xab + aba reads as x + aba + ba
    assert overlapping.encode(b"xa") == b"xaaba"
    assert overlapping.decode(b"xaaba") == [b"xa"]


@pytest.mark.parametrize("delimiter", [b"", "\n", None])
def test_delimiter_must_be_non_empty_bytes(delimiter: Any) -> None:
    with pytest.raises(UsageError, match="delimiter"):
        Delimiter(delimiter, max_length=10)


# ---------------------------------------------------------------------------
# Spec factories
# ---------------------------------------------------------------------------

REGISTRY = Registry(entry_points=False)


def build(spec: str) -> Any:
    (layer,) = REGISTRY.build_layers(spec)
    return layer


@pytest.mark.parametrize(
    ("spec", "cls", "name", "max_frame"),
    [
        ("lp1", LengthPrefix, "lp1", 255),
        ("lp2", LengthPrefix, "lp2", 65535),
        ("lp4", LengthPrefix, "lp4", DEFAULT_MAX_FRAME),
        ("lp8:max=16m", LengthPrefix, "lp8", 16 * 1024 * 1024),
        ("lp4le:max=64k", LengthPrefix, "lp4le", 65536),
        ("varint", Varint, "varint", DEFAULT_MAX_FRAME),
        ("varint:max=300", Varint, "varint", 300),
        ("line", Delimiter, "line", DEFAULT_MAX_FRAME),
        ("line:max=1k", Delimiter, "line", 1024),
        ("delim:sep=00", Delimiter, "delim", DEFAULT_MAX_FRAME),
        ("delim:sep=0D0A:max=100", Delimiter, "delim", 100),
    ],
)
def test_spec_factories(spec: str, cls: type, name: str, max_frame: int) -> None:
    layer = build(spec)
    assert type(layer) is cls
    assert layer.name == name
    assert layer.max_frame == max_frame


def test_spec_byte_orders() -> None:
    assert build("lp2").encode(b"x") == b"\x00\x01x"
    assert build("lp2le").encode(b"x") == b"\x01\x00x"
    assert build("delim:sep=0d0a").delimiter == b"\r\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lp4:size=2", r"layer 'lp4' has no parameter 'size' \(it accepts: max\)"),
        ("varint:max=lots", r"layer 'varint': bad max"),
        ("line:max=0", r"max must be positive"),
        ("line:sep=00", r"layer 'line' has no parameter 'sep' \(it accepts: max\)"),
        ("delim", r"needs its delimiter in hex.*accepts: sep, max"),
        ("delim:sep=", r"sep must be one or more bytes in hex"),
        ("delim:sep=\\0", r"sep must be one or more bytes in hex"),
        ("delim:sep=0", r"two digits each"),
        ("delim:sep=0g", r"two digits each"),
        ("delim:sep=00:size=1", r"layer 'delim' has no parameter 'size' \(it accepts: sep, max\)"),
    ],
)
def test_spec_factory_errors_name_the_parameter(spec: str, message: str) -> None:
    with pytest.raises(InvalidStackSpec, match=message):
        REGISTRY.build_layers(spec)
