"""Fuzzing every decoder, with one stated invariant:

    Whatever bytes arrive, in whatever chunks, a decoder returns units or raises
    *its own* ``ProtocolError`` (``layer`` = its name) and nothing else; and the
    bytes it holds never exceed its configured bound.

Inputs mix random bytes with valid frames (so decoders get deep into their
state machines), and whole stacks are fuzzed too.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave import ProtocolError, Stack
from netweave.layers import Delimiter, Layer, LengthPrefix, Varint
from netweave.registry import BUILTIN_LAYERS, Registry

REGISTRY = Registry(entry_points=False)
PROTO = "protobuf:message=google.protobuf.descriptor_pb2.FileDescriptorProto"

SPECS = [
    "lp1:max=64",
    "lp2:max=64",
    "lp4:max=64",
    "lp8:max=64",
    "lp2le:max=64",
    "lp4le:max=64",
    "lp8le:max=64",
    "varint:max=64",
    "varint:max=1m",
    "line:max=64",
    "delim:sep=0d0a:max=64",
    "delim:sep=0000:max=64",
    "raw",
    "text",
    "text:encoding=utf-16",
    "json",
    "msgpack",
    "cbor",
    PROTO,
]

# A frame the layer itself would produce, to reach past the first header.
VALID_UNITS: dict[str, list[Any]] = {
    "frame": [b"", b"x", b"\x00" * 64, b"\r\n\x00\n"],
    "json": [b'{"a":[1,2.5,null,"\\u00e9"]}'],
    "text": [b"hello"],
}


def bound(layer: Layer[Any, Any]) -> int:
    """The most bytes ``layer`` may hold, as docs/wire-format.md states."""
    if isinstance(layer, LengthPrefix):
        return layer.size + layer.max_frame - 1
    if isinstance(layer, Varint):
        return Varint.header_size(layer.max_frame) + layer.max_frame - 1
    if isinstance(layer, Delimiter):
        return layer.max_length + len(layer.delimiter) - 1
    return 0


def build(spec: str) -> Layer[Any, Any]:
    (layer,) = REGISTRY.build_layers(spec)
    return layer


def valid_pieces(layer: Layer[Any, Any]) -> list[bytes]:
    if layer.lower_kind != "stream":
        return VALID_UNITS.get(layer.name, VALID_UNITS["text"])
    pieces = []
    for unit in VALID_UNITS["frame"]:
        try:
            pieces.append(layer.encode(unit))
        except Exception:
            continue
    return pieces


def feed(
    decoder: Layer[Any, Any] | Stack, chunks: list[bytes], limit: int | None
) -> ProtocolError | None:
    """Feed ``chunks`` then end the input; the ProtocolError raised, if any. Any
    other exception propagates and fails the test. Checks ``limit`` after each chunk."""
    try:
        for chunk in chunks:
            decoder.decode(chunk)
            if limit is not None and isinstance(decoder, Layer):
                assert decoder.buffered <= limit
        decoder.end_of_input()
    except ProtocolError as exc:
        return exc
    return None


def test_every_framing_and_codec_is_fuzzed() -> None:
    mine = {
        name
        for name, ref in BUILTIN_LAYERS.items()
        if ref.startswith(("netweave.layers._framing:", "netweave.layers._codecs:"))
    }
    assert {spec.split(":", 1)[0] for spec in SPECS} == mine


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=80)
@given(data=st.data())
def test_decoder_raises_only_its_protocol_error_within_its_bound(
    spec: str, data: st.DataObject
) -> None:
    layer = build(spec)
    limit = bound(layer)
    piece = st.binary(max_size=160) | st.sampled_from(valid_pieces(layer))
    chunks = data.draw(st.lists(piece, min_size=1, max_size=8))
    error = feed(layer, chunks, limit)
    assert error is None or error.layer == layer.name
    assert layer.buffered <= limit


STACKS = ["lp2:max=64,json", "varint:max=64,msgpack", "line:max=64,cbor", f"lp4:max=256,{PROTO}"]


@pytest.mark.parametrize("spec", STACKS)
@settings(max_examples=60)
@given(chunks=st.lists(st.binary(max_size=100), min_size=1, max_size=6))
def test_stack_raises_only_protocol_errors_of_its_layers(spec: str, chunks: list[bytes]) -> None:
    stack = Stack.parse(spec, registry=REGISTRY)
    names = {layer.name for layer in stack.layers}
    error = feed(stack, chunks, None)
    assert error is None or error.layer in names
    framing = stack.layers[0]
    assert framing.buffered <= bound(framing)
