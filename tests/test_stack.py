"""Stacks: parsing specs, composition errors, bulk encode/decode across layers, fresh()."""

from __future__ import annotations

from typing import Any

import pytest

import netweave
from netweave import (
    FrameTooLarge,
    InvalidStackSpec,
    ProtocolError,
    Stack,
    TruncatedInput,
    UsageError,
)
from netweave.layers import Delimiter, Json, LengthPrefix, Msgpack, Raw, Text, Varint
from netweave.observe import ProtocolViolation, RecordingObserver
from netweave.registry import Registry

REGISTRY = Registry(entry_points=False)


def parse(spec: str, **kwargs: Any) -> Stack:
    return Stack.parse(spec, registry=REGISTRY, **kwargs)


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "names", "lower_kind"),
    [
        ("lp4,json", ["lp4", "json"], "stream"),
        ("lp4:max=64k,json", ["lp4", "json"], "stream"),
        ("lp1,raw", ["lp1", "raw"], "stream"),
        ("lp8le,msgpack", ["lp8le", "msgpack"], "stream"),
        ("varint:max=16m,cbor", ["varint", "cbor"], "stream"),
        ("line,json", ["line", "json"], "stream"),
        ("line:max=4k,text", ["line", "text"], "stream"),
        ("delim:sep=00,text:encoding=latin-1", ["delim", "text"], "stream"),
        ("lp4", ["lp4"], "stream"),
        ("varint", ["varint"], "stream"),
        ("json", ["json"], "frame"),
        ("raw", ["raw"], "frame"),
        ("protobuf:message=google.protobuf.struct_pb2.Struct", ["protobuf"], "frame"),
        (" LP4 , JSON ", ["lp4", "json"], "stream"),
    ],
)
def test_parse(spec: str, names: list[str], lower_kind: str) -> None:
    stack = parse(spec)
    assert [layer.name for layer in stack.layers] == names
    assert stack.lower_kind == lower_kind
    assert stack.spec == spec.strip()
    assert repr(stack) == f"Stack({spec.strip()!r})"


def test_parse_applies_parameters() -> None:
    lp, codec = parse("lp2le:max=1k,text:encoding=utf-16-le").layers
    assert isinstance(lp, LengthPrefix)
    assert (lp.size, lp.byteorder, lp.max_frame) == (2, "little", 1024)
    assert isinstance(codec, Text)
    assert codec.encoding == "utf-16-le"


def test_parse_uses_the_default_registry() -> None:
    assert [layer.name for layer in Stack.parse("lp4,json").layers] == ["lp4", "json"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty stack spec"),
        ("lp4,,json", "item 2 is empty"),
        ("lp4,json,", "item 3 is empty"),
        ("lp4,nope", "unknown layer 'nope'; known layers: cbor, delim, "),
        ("lp4:max=big,json", "layer 'lp4': bad max"),
        ("lp4:max=0,json", "max must be positive"),
        ("lp4:mx=1,json", r"layer 'lp4' has no parameter 'mx' \(it accepts: max\)"),
        ("lp4,json:indent=2", r"layer 'json' has no parameter 'indent'"),
        ("lp4:max", "must be key=value"),
        # framing over a codec
        ("json,lp4", "layer 'lp4' takes a byte stream, but 'json' below it gives application"),
        # framing over framing
        ("lp4,lp4,json", "'lp4' takes a byte stream, but 'lp4' below it gives whole frames"),
        # codec over a codec
        ("lp4,json,json", "nothing can sit above the codec 'json'"),
        ("lp4,json,raw", "nothing can sit above the codec 'json'"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidStackSpec, match=message):
        parse(spec)


def test_misfit_hint_says_where_framing_goes() -> None:
    with pytest.raises(InvalidStackSpec, match="goes first, right on the byte stream"):
        parse("lp4,varint,json")


def test_a_stack_needs_layers() -> None:
    with pytest.raises(UsageError, match="at least one layer"):
        Stack([])


async def test_codec_without_framing_cannot_run_over_a_stream() -> None:
    # Refused before any I/O: nothing listens on this port.
    with pytest.raises(InvalidStackSpec, match="needs a framing layer first"):
        await netweave.connect("tcp://127.0.0.1:9", "json", registry=REGISTRY)


async def test_framing_cannot_run_over_datagrams() -> None:
    with pytest.raises(InvalidStackSpec, match="must not start with the framing layer 'lp4'"):
        await netweave.connect("udp://127.0.0.1:9", "lp4,json", registry=REGISTRY)


# ---------------------------------------------------------------------------
# Bulk encode / decode
# ---------------------------------------------------------------------------

MESSAGES: list[Any] = [{"n": i, "text": "é" * i} for i in range(20)]


@pytest.mark.parametrize(
    "spec", ["lp4,json", "lp1,json", "varint,json", "line,json", "delim:sep=1e,json"]
)
def test_bulk_decode_returns_every_complete_message(spec: str) -> None:
    sender, receiver = parse(spec), parse(spec)
    wire = b"".join(sender.encode(m) for m in MESSAGES)
    assert receiver.decode(wire) == MESSAGES
    assert receiver.end_of_input() == []


@pytest.mark.parametrize("spec", ["lp4,json", "varint,msgpack", "line,text", "lp2le,raw"])
def test_any_chunking_gives_the_same_messages(spec: str) -> None:
    sample: list[Any] = ["one", "two", "", "four"] if spec.endswith("text") else MESSAGES[:6]
    if spec.endswith("raw"):
        sample = [b"one", b"", b"three"]
    wire = b"".join(parse(spec).encode(m) for m in sample)
    for size in (1, 2, 3, 7, 64, len(wire)):
        receiver = parse(spec)
        got: list[Any] = []
        for start in range(0, len(wire), size):
            got.extend(receiver.decode(wire[start : start + size]))
        got.extend(receiver.end_of_input())
        assert got == sample, size


def test_decode_keeps_a_partial_message_for_the_next_chunk() -> None:
    stack = parse("lp4,json")
    wire = stack.encode([1, 2]) + stack.encode({"a": None})
    assert stack.decode(wire[:-3]) == [[1, 2]]
    assert stack.layers[0].buffered == len(stack.encode({"a": None})) - 3
    assert stack.decode(wire[-3:]) == [{"a": None}]


def test_frame_level_stack_decodes_one_datagram_as_one_message() -> None:
    stack = parse("json")
    assert stack.decode(b'{"a":1}') == [{"a": 1}]
    assert stack.encode([1]) == b"[1]"


def test_identity_codec_is_left_out_of_the_data_path() -> None:
    stack = parse("lp2,raw")
    assert stack.decode(b"\x00\x01x\x00\x00") == [b"x", b""]
    assert stack.encode(b"ab") == b"\x00\x02ab"
    assert parse("raw").decode(b"as is") == [b"as is"]


def test_end_of_input_inside_a_message_is_truncated_input() -> None:
    stack = parse("lp4,json")
    assert stack.decode(stack.encode("hello")[:-1]) == []
    with pytest.raises(TruncatedInput) as info:
        stack.end_of_input()
    assert info.value.layer == "lp4"


def test_protocol_errors_are_reported_to_the_observer() -> None:
    observer = RecordingObserver()
    stack = parse("lp2,json", observer=observer)
    with pytest.raises(ProtocolError) as info:
        stack.decode(b"\x00\x01{")
    assert info.value.layer == "json"
    events = [event for _, event in observer.records if isinstance(event, ProtocolViolation)]
    assert len(events) == 1
    assert events[0].layer == "json"


def test_frame_too_large_from_the_stack() -> None:
    stack = parse("lp4:max=8,raw")
    with pytest.raises(FrameTooLarge):
        stack.decode(b"\x00\x00\x00\x09")
    with pytest.raises(UsageError, match="maximum is 8"):
        stack.encode(b"x" * 9)


@pytest.mark.parametrize(("spec", "message"), [("lp4,raw", "hello"), ("lp4", 3), ("line", None)])
def test_encode_of_the_wrong_type_is_a_usage_error(spec: str, message: Any) -> None:
    with pytest.raises(UsageError, match="cannot send a"):
        parse(spec).encode(message)


def test_encode_of_an_unserialisable_message_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="json codec cannot encode"):
        parse("lp4,json").encode({"when": object()})


def test_a_stack_does_not_speak_on_its_own() -> None:
    stack = parse("lp4,json")
    assert not stack.speaks
    assert stack.data_to_send() == []


def test_stack_from_layer_objects() -> None:
    stack = Stack([Varint(max_frame=100), Msgpack()])
    assert stack.spec == "varint,msgpack"
    assert stack.decode(stack.encode({"k": [1, 2]})) == [{"k": [1, 2]}]
    other = Stack([Delimiter(b"\r\n", max_length=50), Json()], spec="crlf json")
    assert other.spec == "crlf json"


# ---------------------------------------------------------------------------
# fresh()
# ---------------------------------------------------------------------------


def test_fresh_stacks_have_their_own_state() -> None:
    template = parse("lp4,json")
    wire = template.encode({"a": 1})
    first = template.fresh()
    second = template.fresh()
    assert first.decode(wire[:5]) == []
    assert first.layers[0].buffered == 5
    assert second.layers[0].buffered == 0
    assert template.layers[0].buffered == 0
    assert second.decode(wire) == [{"a": 1}]
    assert first.decode(wire[5:]) == [{"a": 1}]


def test_fresh_keeps_configuration_spec_and_observer() -> None:
    observer = RecordingObserver()
    template = parse("lp2:max=10,text:encoding=latin-1", observer=observer)
    fresh = template.fresh()
    assert fresh.spec == template.spec
    assert all(a is not b for a, b in zip(fresh.layers, template.layers, strict=True))
    lp, text = fresh.layers
    assert isinstance(lp, LengthPrefix)
    assert lp.max_frame == 10
    assert isinstance(text, Text)
    assert text.encoding == "latin-1"
    with pytest.raises(ProtocolError):
        fresh.decode(b"\x00\x0b")
    assert any(isinstance(event, ProtocolViolation) for _, event in observer.records)


def test_fresh_with_another_observer() -> None:
    first, second = RecordingObserver(), RecordingObserver()
    fresh = parse("lp2,json", observer=first).fresh(observer=second)
    with pytest.raises(ProtocolError):
        fresh.decode(b"\x00\x01x")
    assert not first.records
    assert second.records


def test_a_failed_stack_does_not_poison_its_template() -> None:
    template = parse("lp2:max=4,raw")
    broken = template.fresh()
    with pytest.raises(FrameTooLarge):
        broken.decode(b"\x00\x05")
    assert template.fresh().decode(b"\x00\x01x") == [b"x"]


def test_raw_layer_in_a_stack_is_shared_safely() -> None:
    # Identity layers hold no state, but fresh() still clones them.
    template = Stack([LengthPrefix(2, max_frame=10), Raw()])
    assert template.fresh().layers[1] is not template.layers[1]
