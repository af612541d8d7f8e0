"""Codec specifics: the exact JSON produced, error translation, optional extras,
and the ``text`` and ``protobuf`` spec parameters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from google.protobuf import struct_pb2, wrappers_pb2

from netweave import DecodeError, InvalidStackSpec, MissingDependency, UsageError
from netweave.layers import Cbor, Json, Msgpack, Protobuf, Raw, Text
from netweave.registry import Registry

REGISTRY = Registry(entry_points=False)


def build(spec: str) -> Any:
    (layer,) = REGISTRY.build_layers(spec)
    return layer


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def test_json_is_compact_utf8_without_ascii_escapes() -> None:
    assert Json().encode({"a": [1, 2], "é": "😀"}) == '{"a":[1,2],"é":"😀"}'.encode()


def test_json_decode_errors_are_decode_errors_with_the_cause() -> None:
    with pytest.raises(DecodeError) as info:
        Json().decode(b'{"a":')
    assert info.value.layer == "json"
    assert isinstance(info.value.__cause__, ValueError)


def test_json_deep_nesting_is_a_decode_error_not_a_recursion_error() -> None:
    with pytest.raises(DecodeError, match="RecursionError") as info:
        Json().decode(b"[" * 200_000 + b"]" * 200_000)
    assert isinstance(info.value.__cause__, RecursionError)


@pytest.mark.parametrize("data", [b"\xff", b"\xef\xbb\xbf{}", b'"\xed\xa0\x80"'])
def test_json_accepts_only_utf8(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Json().decode(data)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_json_refuses_non_finite_numbers(value: Any) -> None:
    with pytest.raises(UsageError, match="json codec cannot encode"):
        Json().encode(value)


def test_json_non_serialisable_is_a_usage_error_naming_the_type() -> None:
    with pytest.raises(UsageError, match="not JSON serializable"):
        Json().encode({"when": object()})


def test_json_encodes_correctly_after_a_failed_encode() -> None:
    # The fast path keeps circular-reference markers between calls; a failure
    # half-way must not poison the next encode.
    codec = Json()
    loop: list[Any] = [1, {"a": 2}]
    loop.append(loop)
    with pytest.raises(UsageError):
        codec.encode(loop)
    loop.pop()  # no longer circular: must encode now
    assert codec.encode(loop) == b'[1,{"a":2}]'
    shared = {"k": [1, 2]}
    assert (
        codec.encode([shared, shared, {"x": "é"}]) == '[{"k":[1,2]},{"k":[1,2]},{"x":"é"}]'.encode()
    )
    with pytest.raises(UsageError):
        codec.encode({"bad": object()})
    assert codec.decode(codec.encode([shared, shared])) == [[shared, shared]]


def test_json_accepts_bytearray_and_memoryview_frames() -> None:
    assert Json().decode(bytearray(b"[1]")) == [[1]]
    assert Json().decode(memoryview(b"[2]")) == [[2]]  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


def test_text_spec_parameters() -> None:
    latin = build("text:encoding=latin-1")
    assert latin.encode("é") == b"\xe9"
    lenient = build("text:errors=replace")
    assert lenient.decode(b"a\xffb") == ["a\ufffdb"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("text:encoding=no-such-codec", "unknown encoding"),
        ("text:encoding=base64", "not a text encoding"),
        ("text:errors=whatever", "unknown error handler"),
        ("text:charset=utf-8", r"has no parameter 'charset' \(it accepts: encoding, errors\)"),
    ],
)
def test_text_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidStackSpec, match=message):
        REGISTRY.build_layers(spec)


def test_text_decode_error_names_the_encoding() -> None:
    with pytest.raises(DecodeError, match="not valid utf-8") as info:
        Text().decode(b"\xc3")
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


# ---------------------------------------------------------------------------
# msgpack, CBOR
# ---------------------------------------------------------------------------


def test_msgpack_bytes_and_str_stay_distinct() -> None:
    layer = Msgpack()
    assert layer.encode("a") == b"\xa1a"
    assert layer.encode(b"a") == b"\xc4\x01a"
    assert layer.decode(b"\xc4\x01a") == [b"a"]


def test_msgpack_extra_data_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="extra data"):
        Msgpack().decode(b"\x01\x02")


def test_cbor_trailing_data_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="1 bytes of trailing data"):
        Cbor().decode(b"\x01\x02")


def test_cbor_known_tags_become_python_values() -> None:
    layer = Cbor()
    (value,) = layer.decode(layer.encode({"big": 2**100}))
    assert value == {"big": 2**100}


# ---------------------------------------------------------------------------
# Protobuf
# ---------------------------------------------------------------------------


def test_protobuf_spec_imports_the_message_class() -> None:
    layer = build("protobuf:message=google.protobuf.wrappers_pb2.StringValue")
    assert layer.message_type is wrappers_pb2.StringValue
    encoded = layer.encode(wrappers_pb2.StringValue(value="hi"))
    assert encoded == b"\x0a\x02hi"
    assert layer.decode(encoded) == [wrappers_pb2.StringValue(value="hi")]


def test_protobuf_serialises_maps_deterministically() -> None:
    layer = Protobuf(struct_pb2.Struct)
    one = struct_pb2.Struct()
    one.update({"b": 1, "a": 2})
    two = struct_pb2.Struct()
    two.update({"a": 2, "b": 1})
    assert layer.encode(one) == layer.encode(two)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("protobuf", "needs message=package.module.Class"),
        ("protobuf:message=Struct", "needs message=package.module.Class"),
        ("protobuf:message=no_such_module_xyz.Thing", "cannot import module 'no_such_module_xyz'"),
        ("protobuf:message=google.protobuf.struct_pb2.Nope", "has no class 'Nope'"),
        ("protobuf:message=json.JSONDecoder", "needs a generated message class"),
        ("protobuf:type=x.Y", r"has no parameter 'type' \(it accepts: message\)"),
    ],
)
def test_protobuf_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidStackSpec, match=message):
        REGISTRY.build_layers(spec)


def test_protobuf_constructor_wants_a_message_class() -> None:
    with pytest.raises(UsageError, match="generated message class"):
        Protobuf(dict)
    with pytest.raises(UsageError, match="generated message class"):
        Protobuf(wrappers_pb2.StringValue())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Optional dependencies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked", "make", "extra"),
    [
        ("msgpack", Msgpack, "msgpack"),
        ("cbor2", Cbor, "cbor"),
        ("google.protobuf.message", lambda: Protobuf(struct_pb2.Struct), "protobuf"),
    ],
)
def test_missing_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, blocked: str, make: Any, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # makes the import fail
    with pytest.raises(MissingDependency, match=rf"pip install 'netweave\[{extra}\]'") as info:
        make()
    assert info.value.extra == extra


@pytest.mark.parametrize(
    ("blocked", "spec", "extra"),
    [
        ("msgpack", "lp4,msgpack", "msgpack"),
        ("cbor2", "lp4,cbor", "cbor"),
        (
            "google.protobuf.message",
            "protobuf:message=google.protobuf.struct_pb2.Struct",
            "protobuf",
        ),
    ],
)
def test_missing_package_through_a_spec(
    monkeypatch: pytest.MonkeyPatch, blocked: str, spec: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)
    with pytest.raises(MissingDependency) as info:
        REGISTRY.build_layers(spec)
    assert info.value.extra == extra


def test_netweave_imports_without_the_optional_packages() -> None:
    script = textwrap.dedent(
        """
        import sys
        for name in ("msgpack", "cbor2", "google", "google.protobuf"):
            sys.modules[name] = None
        import netweave, netweave.layers, netweave.testing
        stack = netweave.Stack.parse("lp4,json")
        assert stack.decode(stack.encode({"a": 1})) == [{"a": 1}]
        try:
            netweave.Stack.parse("lp4,msgpack")
        except netweave.MissingDependency as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'netweave[msgpack]'" in result.stdout


def test_raw_is_identity() -> None:
    assert Raw.identity
    assert Raw().decode(b"x") == [b"x"]
    with pytest.raises(InvalidStackSpec, match="has no parameter"):
        REGISTRY.build_layers("raw:x=1")
