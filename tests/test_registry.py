"""The registry of names: spec parsing, registration, errors, and the plug-in proof.

The plug-in proof writes a tiny distribution (a module plus a ``*.dist-info``
with ``entry_points.txt``) into ``tmp_path``, puts it on ``sys.path`` and shows
that a fresh :class:`Registry` finds its layer, codec and transport by name,
from spec strings and endpoint URLs, without touching netweave.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import netweave
from netweave import (
    InvalidEndpoint,
    InvalidStackSpec,
    MissingDependency,
    Stack,
    UsageError,
    parse_endpoint,
)
from netweave.layers import Json, LengthPrefix, Raw
from netweave.registry import (
    BUILTIN_LAYERS,
    BUILTIN_TRANSPORTS,
    Registry,
    default_registry,
    parse_spec,
)

# ---------------------------------------------------------------------------
# parse_spec
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("lp4", [("lp4", {})]),
        ("lp4,json", [("lp4", {}), ("json", {})]),
        ("lp4:max=64k,json", [("lp4", {"max": "64k"}), ("json", {})]),
        (" LP4 : max = 1m , Json ", [("lp4", {"max": "1m"}), ("json", {})]),
        ("delim:sep=0d0a:max=10", [("delim", {"sep": "0d0a", "max": "10"})]),
        (
            "text:encoding=utf-8:errors=strict",
            [("text", {"encoding": "utf-8", "errors": "strict"})],
        ),
        ("x:k=a=b", [("x", {"k": "a=b"})]),
        ("x:k=", [("x", {"k": ""})]),
    ],
)
def test_parse_spec(spec: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert [(item.name, item.params) for item in parse_spec(spec)] == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty stack spec"),
        ("   ", "empty stack spec"),
        ("lp4,,json", "item 2 is empty"),
        ("lp4,json,", "item 3 is empty"),
        (",json", "item 1 is empty"),
        ("4lp", "not a valid layer name"),
        ("lp4 json", "not a valid layer name"),
        (":max=1", "not a valid layer name"),
        ("lp4:max", "must be key=value"),
        ("lp4:=5", "must be key=value"),
        ("lp4:max=1:max=2", "parameter 'max' twice"),
    ],
)
def test_parse_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidStackSpec, match=message):
        parse_spec(spec)


def test_parse_spec_rejects_non_strings() -> None:
    with pytest.raises(InvalidStackSpec):
        parse_spec(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Built-ins and registration
# ---------------------------------------------------------------------------


def test_builtin_names_are_listed_sorted() -> None:
    registry = Registry(entry_points=False)
    assert registry.layer_names() == sorted(BUILTIN_LAYERS)
    assert registry.transport_names() == sorted(BUILTIN_TRANSPORTS)
    described = registry.describe()
    assert ("json", "netweave") in described["layers"]
    assert ("tcp", "netweave") in described["transports"]


def test_unknown_layer_lists_the_known_names() -> None:
    with pytest.raises(InvalidStackSpec, match=r"unknown layer 'jsn'; known layers: .*json"):
        Stack.parse("lp4,jsn", registry=Registry(entry_points=False))


def test_unknown_scheme_lists_the_known_schemes() -> None:
    with pytest.raises(InvalidEndpoint, match=r"unknown scheme 'tcpp'; known schemes: .*tcp"):
        parse_endpoint("tcpp://127.0.0.1:1", registry=Registry(entry_points=False))


def test_register_layer_makes_a_name_usable() -> None:
    registry = Registry(entry_points=False)

    def bytes_codec(**params: str) -> Raw:
        return Raw()

    registry.register_layer("bytes", bytes_codec)
    assert "bytes" in registry.layer_names()
    stack = Stack.parse("lp2,bytes", registry=registry)
    assert stack.decode(stack.encode(b"x")) == [b"x"]
    with pytest.raises(UsageError, match="already registered"):
        registry.register_layer("bytes", bytes_codec)
    with pytest.raises(UsageError, match="already registered"):
        registry.register_layer("json", bytes_codec)
    registry.register_layer("json", bytes_codec, replace=True)
    assert isinstance(registry.build_layers("json")[0], Raw)
    with pytest.raises(UsageError, match="not a valid layer name"):
        registry.register_layer("Bad Name", bytes_codec)


def test_register_transport_rejects_a_taken_scheme() -> None:
    registry = Registry(entry_points=False)
    tcp = registry.transport("tcp")
    with pytest.raises(UsageError, match="already registered"):
        registry.register_transport(tcp)
    registry.register_transport(tcp, replace=True)
    assert registry.transport("tcp") is tcp


def test_factory_value_and_type_errors_become_invalid_stack_spec() -> None:
    registry = Registry(entry_points=False)

    def picky(*, level: str = "1") -> LengthPrefix:
        return LengthPrefix(4, max_frame=int(level))

    registry.register_layer("picky", picky)  # type: ignore[arg-type]
    assert registry.build_layers("picky:level=10")[0].max_frame == 10
    with pytest.raises(InvalidStackSpec, match=r"layer 'picky'.*invalid literal"):
        registry.build_layers("picky:level=ten")
    with pytest.raises(InvalidStackSpec, match=r"layer 'picky'.*unexpected keyword"):
        registry.build_layers("picky:colour=red")


def test_a_factory_that_crashes_or_returns_junk_is_named() -> None:
    registry = Registry(entry_points=False)

    def crashes(**params: str) -> Any:
        raise RuntimeError("kaput")

    def junk(**params: str) -> Any:
        return "not a layer"

    registry.register_layer("crashes", crashes)
    registry.register_layer("junk", junk)
    with pytest.raises(UsageError, match=r"layer 'crashes'.*failed to build: RuntimeError: kaput"):
        registry.build_layers("lp4,crashes")
    with pytest.raises(UsageError, match=r"layer 'junk'.*returned a str, not a netweave Layer"):
        registry.build_layers("lp4,junk")


def test_missing_dependency_passes_through_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(MissingDependency, match=r"netweave\[msgpack\]"):
        Registry(entry_points=False).build_layers("lp4,msgpack")


def test_default_registry_is_built_once() -> None:
    assert default_registry() is default_registry()
    assert isinstance(netweave.default_registry(), Registry)


# ---------------------------------------------------------------------------
# The plug-in proof
# ---------------------------------------------------------------------------

PLUGIN_MODULE = '''
"""A third-party netweave plug-in: one layer, one codec, one transport."""

import dataclasses

from netweave import DecodeError, InvalidStackSpec
from netweave.layers import Codec, FrameTransform
from netweave.registry import Registry
from netweave.transports import StreamTransport

LOADED = True


class Xor(FrameTransform):
    """XORs every byte with a key (spec ``xor:key=HEX``)."""

    def __init__(self, key):
        self.key = key
        self.name = "xor"

    def clone(self):
        return Xor(self.key)

    def encode(self, unit):
        return bytes(b ^ self.key for b in unit)

    def decode(self, data):
        return [bytes(b ^ self.key for b in data)]


def xor(**params):
    unknown = set(params) - {"key"}
    if unknown:
        raise InvalidStackSpec(f"layer 'xor' has no parameter {unknown.pop()!r} (it accepts: key)")
    return Xor(int(params.get("key", "ff"), 16))


class HexCodec(Codec):
    """Objects are hex strings; frames are the bytes they spell."""

    def __init__(self):
        self.name = "hex"

    def clone(self):
        return HexCodec()

    def encode(self, unit):
        return bytes.fromhex(unit)

    def decode(self, data):
        if not data:
            raise DecodeError("empty frame", layer=self.name)
        return [bytes(data).hex()]


def hex_codec(**params):
    return HexCodec()


def impostor_json(**params):
    raise AssertionError("a plug-in must never shadow a built-in name")


_MEM = Registry(entry_points=False).transport("mem")


class LoopTransport(StreamTransport):
    """``loop://NAME``: in-process streams, by way of netweave's own mem transport."""

    scheme = "loop"
    uses_host_port = False
    options = _MEM.options

    async def connect(self, endpoint, *, observer=None):
        return await _MEM.connect(dataclasses.replace(endpoint, scheme="mem"), observer=observer)

    async def listen(self, endpoint, *, observer=None):
        return await _MEM.listen(dataclasses.replace(endpoint, scheme="mem"), observer=observer)
'''

ENTRY_POINTS = """
[netweave.layers]
xor = nwtestplugin:xor
broken = nwtestplugin_not_installed:factory

[netweave.codecs]
hex = nwtestplugin:hex_codec
UpperHex = nwtestplugin:hex_codec
json = nwtestplugin:impostor_json

[netweave.transports]
loop = nwtestplugin:LoopTransport
tcp = nwtestplugin:LoopTransport
brokenscheme = nwtestplugin:NoSuchTransport
"""

PLUGIN_DIST = "netweave-test-plugin"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plug-in distribution, installed on ``sys.path`` for this test only."""
    (tmp_path / "nwtestplugin.py").write_text(textwrap.dedent(PLUGIN_MODULE), encoding="utf-8")
    dist_info = tmp_path / "netweave_test_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PLUGIN_DIST}\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("nwtestplugin", None)


def test_plugin_names_are_listed_with_their_origin(plugin: Path) -> None:
    registry = Registry()
    assert {"xor", "hex", "broken"} <= set(registry.layer_names())
    assert {"loop", "brokenscheme"} <= set(registry.transport_names())
    described = registry.describe()
    assert ("xor", f"plug-in {PLUGIN_DIST}") in described["layers"]
    assert ("loop", f"plug-in {PLUGIN_DIST}") in described["transports"]


def test_plugin_names_are_matched_lowercased(plugin: Path) -> None:
    registry = Registry()
    assert "upperhex" in registry.layer_names()
    stack = netweave.Stack.parse("lp4,UpperHex", registry=registry)
    assert stack.decode(stack.encode("0102")) == ["0102"]


def test_plugins_load_only_when_used(plugin: Path) -> None:
    registry = Registry()
    assert "nwtestplugin" not in sys.modules
    Stack.parse("lp4,json", registry=registry)
    assert "nwtestplugin" not in sys.modules
    Stack.parse("lp4,hex", registry=registry)
    assert "nwtestplugin" in sys.modules


def test_plugin_layer_and_codec_work_from_a_spec_string(plugin: Path) -> None:
    registry = Registry()
    stack = Stack.parse("lp2,xor:key=0f,hex", registry=registry)
    assert [layer.name for layer in stack.layers] == ["lp2", "xor", "hex"]
    wire = stack.encode("00ff10")
    assert wire == bytes.fromhex("0003 0f f0 1f")
    assert stack.fresh().decode(wire) == ["00ff10"]
    with pytest.raises(InvalidStackSpec, match="layer 'xor' has no parameter 'colour'"):
        Stack.parse("lp2,xor:colour=red,hex", registry=registry)


def test_plugin_transport_works_from_an_endpoint_url(plugin: Path) -> None:
    registry = Registry()
    endpoint, transport = parse_endpoint("loop://demo?chunks=1", registry=registry)
    assert type(transport).__name__ == "LoopTransport"
    assert endpoint.scheme == "loop"
    assert endpoint.path == "demo"
    assert endpoint.option("chunks") == (1,)
    with pytest.raises(InvalidEndpoint, match="unknown option 'colour'"):
        parse_endpoint("loop://demo?colour=red", registry=registry)


async def test_plugin_transport_and_layers_carry_messages(plugin: Path) -> None:
    registry = Registry()

    async def echo(channel: netweave.Channel[str]) -> None:
        async for message in channel:
            await channel.send(message)

    spec = "lp2,xor:key=5a,hex"
    async with netweave.serve("loop://echo", spec, echo, registry=registry):
        channel = await netweave.connect("loop://echo?chunks=1", spec, registry=registry)
        async with channel:
            await channel.send("c0ffee")
            assert await channel.receive() == "c0ffee"


def test_builtins_win_over_a_plugin_of_the_same_name(plugin: Path) -> None:
    registry = Registry()
    (json_layer,) = registry.build_layers("json")
    assert isinstance(json_layer, Json)
    assert type(registry.transport("tcp")).__module__ == "netweave.transports._tcp"
    described = dict(registry.describe()["layers"])
    assert described["json"] == "netweave"


def test_a_broken_plugin_fails_only_when_used_and_is_named(plugin: Path) -> None:
    registry = Registry()  # building the registry does not load anything
    Stack.parse("lp4,xor,hex", registry=registry)  # the working entries still work
    with pytest.raises(
        UsageError, match=rf"layer 'broken' from plug-in {PLUGIN_DIST} failed to load"
    ):
        Stack.parse("lp4,broken", registry=registry)
    with pytest.raises(
        UsageError, match=rf"transport 'brokenscheme' from plug-in {PLUGIN_DIST} failed to load"
    ):
        parse_endpoint("brokenscheme://x", registry=registry)


def test_without_entry_points_the_plugin_is_not_seen(plugin: Path) -> None:
    registry = Registry(entry_points=False)
    assert "xor" not in registry.layer_names()
    with pytest.raises(InvalidStackSpec, match="unknown layer 'xor'"):
        Stack.parse("lp4,xor", registry=registry)
