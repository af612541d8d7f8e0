"""Hypothesis round-trip properties, one per layer: whatever a layer encodes, the
same layer decodes back unchanged, however the stream is cut.

Examples are deterministic (the ``netweave`` hypothesis profile in
``tests/conftest.py`` derandomizes) and bounded by ``max_examples``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave import Stack, UsageError
from netweave.layers import (
    Cbor,
    Delimiter,
    Json,
    Layer,
    LengthPrefix,
    Msgpack,
    Protobuf,
    Raw,
    Text,
    Varint,
)

MAX = 300


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    if not data:
        return [data]
    points = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def decode_stream(layer: Layer[Any, Any], pieces: list[bytes]) -> list[Any]:
    units: list[Any] = []
    for piece in pieces:
        units.extend(layer.decode(piece))
    units.extend(layer.end_of_input())
    assert layer.buffered == 0
    return units


frames = st.lists(st.binary(max_size=MAX), max_size=8)
cuts = st.lists(st.integers(min_value=0), max_size=10)


# ---------------------------------------------------------------------------
# Framing: a list of frames survives encoding, concatenation and any cutting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 4, 8])
@pytest.mark.parametrize("byteorder", ["big", "little"])
@settings(max_examples=50)
@given(payloads=frames, where=cuts)
def test_length_prefix_round_trip(
    size: Any, byteorder: Any, payloads: list[bytes], where: list[int]
) -> None:
    layer = LengthPrefix(size, max_frame=MAX, byteorder=byteorder)
    payloads = [p[: layer.max_frame] for p in payloads]
    data = b"".join(layer.encode(p) for p in payloads)
    assert decode_stream(layer.clone(), split(data, where)) == payloads


@settings(max_examples=100)
@given(payloads=st.lists(st.binary(max_size=20_000), max_size=4), where=cuts)
def test_varint_round_trip(payloads: list[bytes], where: list[int]) -> None:
    layer = Varint(max_frame=20_000)
    data = b"".join(layer.encode(p) for p in payloads)
    assert decode_stream(layer.clone(), split(data, where)) == payloads


@given(length=st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_header_is_minimal_and_exact(length: int) -> None:
    # The header of a frame announces exactly its length, in the fewest bytes.
    size = Varint.header_size(length)
    assert size == max(1, math.ceil(length.bit_length() / 7))
    if length < 2**16:
        layer = Varint(max_frame=2**16)
        wire = layer.encode(b"\x00" * length)
        assert len(wire) == size + length
        assert wire[size - 1] < 0x80
        assert all(byte >= 0x80 for byte in wire[: size - 1])


SEPARATORS = [b"\n", b"\r\n", b"\x00", b"\x00\x00", b"ab", b"aba", b"\xff\xfe\xff"]


@settings(max_examples=150)
@given(
    sep=st.sampled_from(SEPARATORS),
    payloads=st.lists(st.binary(max_size=40) | st.text("ab\n\r\x00", max_size=40).map(str.encode)),
    where=cuts,
)
def test_delimiter_round_trip(sep: bytes, payloads: list[bytes], where: list[int]) -> None:
    layer = Delimiter(sep, max_length=40)
    encoded: list[bytes] = []
    sent: list[bytes] = []
    for payload in payloads:
        try:
            encoded.append(layer.encode(payload))
        except UsageError:
            # Refused only when the reader could not get this payload back.
            assert (payload + sep).find(sep) != len(payload)
        else:
            sent.append(payload)
    assert decode_stream(layer.clone(), split(b"".join(encoded), where)) == sent


# ---------------------------------------------------------------------------
# Codecs: each value survives encode then decode
# ---------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**100), 2**100) | finite | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | finite
    | text
    | st.binary(max_size=30)
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(text | st.integers(-100, 100), inner, max_size=4)
    ),
    max_leaves=20,
)
cbor_values = st.recursive(
    msgpack_scalars | st.integers(-(2**100), 2**100),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(text | st.integers(-100, 100), inner, max_size=4)
    ),
    max_leaves=20,
)


def round_trip(layer: Layer[Any, Any], value: Any) -> Any:
    (decoded,) = layer.decode(layer.encode(value))
    return decoded


@given(value=st.binary())
def test_raw_round_trip(value: bytes) -> None:
    assert round_trip(Raw(), value) == value


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le", "utf-8-sig"])
@given(value=text)
def test_text_round_trip(encoding: str, value: str) -> None:
    assert round_trip(Text(encoding), value) == value


@given(value=json_values)
def test_json_round_trip(value: Any) -> None:
    assert round_trip(Json(), value) == value


@given(value=msgpack_values)
def test_msgpack_round_trip(value: Any) -> None:
    assert round_trip(Msgpack(), value) == value


@given(value=cbor_values)
def test_cbor_round_trip(value: Any) -> None:
    assert round_trip(Cbor(), value) == value


file_descriptors = st.builds(
    descriptor_pb2.FileDescriptorProto,
    name=text,
    package=text,
    dependency=st.lists(text, max_size=3),
    message_type=st.lists(st.builds(descriptor_pb2.DescriptorProto, name=text), max_size=3),
)


@given(value=file_descriptors)
def test_protobuf_round_trip(value: Any) -> None:
    assert round_trip(Protobuf(descriptor_pb2.FileDescriptorProto), value) == value


# ---------------------------------------------------------------------------
# Whole stacks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["lp4,json", "varint:max=4k,msgpack", "line,json", "lp2le,cbor", "delim:sep=00,text"]
)
@settings(max_examples=40)
@given(data=st.data(), where=cuts)
def test_stack_round_trip(spec: str, data: st.DataObject, where: list[int]) -> None:
    strategy: st.SearchStrategy[Any] = {
        "json": json_values,
        "msgpack": msgpack_values,
        "cbor": cbor_values,
        "text": st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    }[spec.rsplit(",", 1)[1]]
    messages = data.draw(st.lists(strategy, max_size=5))
    stack = Stack.parse(spec)
    wire = b"".join(stack.encode(m) for m in messages)
    receiver = stack.fresh()
    got: list[Any] = []
    for piece in split(wire, where):
        got.extend(receiver.decode(piece))
    got.extend(receiver.end_of_input())
    assert got == messages
