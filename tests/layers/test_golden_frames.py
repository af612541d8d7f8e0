"""Golden bytes: the exact frames each framing puts on the wire.

These bytes are a contract with every peer ever deployed: change one only with
a protocol version bump. ``docs/wire-format.md`` shows the same examples; the
last tests check that the document and this file agree, row for row.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netweave import FrameTooLarge, Stack
from netweave.layers import Varint
from netweave.registry import Registry

REGISTRY = Registry(entry_points=False)
WIRE_FORMAT_DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"

#: (spec, payload, exact bytes on the wire)
GOLDEN_FRAMES: list[tuple[str, bytes, bytes]] = [
    ("lp1", b"", bytes.fromhex("00")),
    ("lp1", b"hi", bytes.fromhex("02 6869")),
    ("lp2", b"", bytes.fromhex("0000")),
    ("lp2", b"hi", bytes.fromhex("0002 6869")),
    ("lp2le", b"hi", bytes.fromhex("0200 6869")),
    ("lp4", b"", bytes.fromhex("00000000")),
    ("lp4", b"hi", bytes.fromhex("00000002 6869")),
    ("lp4", b"hello", bytes.fromhex("00000005 68656c6c6f")),
    ("lp4le", b"hi", bytes.fromhex("02000000 6869")),
    ("lp8", b"", bytes.fromhex("0000000000000000")),
    ("lp8", b"hi", bytes.fromhex("0000000000000002 6869")),
    ("lp8le", b"hi", bytes.fromhex("0200000000000000 6869")),
    ("varint", b"", bytes.fromhex("00")),
    ("varint", b"hi", bytes.fromhex("02 6869")),
    ("varint", b"hello", bytes.fromhex("05 68656c6c6f")),
    ("line", b"", bytes.fromhex("0a")),
    ("line", b"hi", bytes.fromhex("6869 0a")),
    ("delim:sep=00", b"hi", bytes.fromhex("6869 00")),
    ("delim:sep=0d0a", b"hi", bytes.fromhex("6869 0d0a")),
]

#: Larger frames, given as (spec, payload length, the header bytes before the payload).
GOLDEN_HEADERS: list[tuple[str, int, bytes]] = [
    ("lp1", 255, bytes.fromhex("ff")),
    ("lp2", 256, bytes.fromhex("0100")),
    ("lp2le", 256, bytes.fromhex("0001")),
    ("lp2", 65535, bytes.fromhex("ffff")),
    ("lp4", 65536, bytes.fromhex("00010000")),
    ("lp4le", 65536, bytes.fromhex("00000100")),
    ("lp8", 65536, bytes.fromhex("0000000000010000")),
    ("lp8le", 65536, bytes.fromhex("0000010000000000")),
    ("varint", 127, bytes.fromhex("7f")),
    ("varint", 128, bytes.fromhex("8001")),
    ("varint", 300, bytes.fromhex("ac02")),
    ("varint", 16383, bytes.fromhex("ff7f")),
    ("varint", 16384, bytes.fromhex("808001")),
    ("varint", 1048576, bytes.fromhex("808040")),
]

#: Varint headers too long to build frames for: (length, header); checked by decoding.
GOLDEN_VARINT_HEADERS: list[tuple[int, bytes]] = [
    (0, bytes.fromhex("00")),
    (1, bytes.fromhex("01")),
    (2**32 - 1, bytes.fromhex("ffffffff0f")),
    (2**63, bytes.fromhex("80808080808080808001")),
    (2**64 - 1, bytes.fromhex("ffffffffffffffffff01")),
]

#: A stream of two frames, to show that frames simply follow one another.
GOLDEN_STREAMS: list[tuple[str, list[bytes], bytes]] = [
    ("lp2", [b"a", b"bc"], bytes.fromhex("0001 61 0002 6263")),
    ("varint", [b"a", b"bc"], bytes.fromhex("01 61 02 6263")),
    ("line", [b"a", b"bc"], bytes.fromhex("61 0a 6263 0a")),
]


def layer_for(spec: str) -> Stack:
    return Stack(REGISTRY.build_layers(spec), spec=spec)


@pytest.mark.parametrize(("spec", "payload", "wire"), GOLDEN_FRAMES)
def test_golden_frame(spec: str, payload: bytes, wire: bytes) -> None:
    stack = layer_for(spec)
    assert stack.encode(payload) == wire
    assert stack.decode(wire) == [payload]
    assert stack.end_of_input() == []


@pytest.mark.parametrize(("spec", "length", "header"), GOLDEN_HEADERS)
def test_golden_header(spec: str, length: int, header: bytes) -> None:
    stack = layer_for(spec)
    payload = b"\xa5" * length
    wire = stack.encode(payload)
    assert wire == header + payload
    assert stack.decode(wire) == [payload]


@pytest.mark.parametrize(("length", "header"), GOLDEN_VARINT_HEADERS)
def test_golden_varint_header_value(length: int, header: bytes) -> None:
    assert Varint.header_size(length) == len(header)
    if length <= 1:
        payload = b"\xff" * length
        assert Varint(max_frame=1).decode(header + payload) == [payload]
        return
    # A layer whose maximum is one below the length reports the length it decoded.
    with pytest.raises(FrameTooLarge) as info:
        Varint(max_frame=length - 1).decode(header)
    assert info.value.size == length


@pytest.mark.parametrize(("spec", "payloads", "wire"), GOLDEN_STREAMS)
def test_golden_stream(spec: str, payloads: list[bytes], wire: bytes) -> None:
    stack = layer_for(spec)
    assert b"".join(stack.encode(p) for p in payloads) == wire
    assert stack.decode(wire) == payloads


# ---------------------------------------------------------------------------
# The document shows the same bytes
# ---------------------------------------------------------------------------


def spaced(data: bytes) -> str:
    return data.hex(" ")


_FRAME_ROW = re.compile(
    r"^\| `([a-z0-9:=]+)` \| (?:`([0-9a-f ]+)`|\(empty\)) \| `([0-9a-f ]+)` \|$"
)
_HEADER_ROW = re.compile(r"^\| `([a-z0-9:=]+)` \| (\d+) \| `([0-9a-f ]+)` \|$")


def doc_rows(pattern: re.Pattern[str]) -> set[tuple[str, ...]]:
    lines = WIRE_FORMAT_DOC.read_text(encoding="utf-8").splitlines()
    return {match.groups("") for line in lines if (match := pattern.match(line.strip()))}


def test_document_shows_every_golden_frame_and_no_other() -> None:
    expected = {(spec, spaced(payload), spaced(wire)) for spec, payload, wire in GOLDEN_FRAMES}
    assert doc_rows(_FRAME_ROW) == expected


def test_document_shows_every_golden_header_and_no_other() -> None:
    expected = {(spec, str(length), spaced(header)) for spec, length, header in GOLDEN_HEADERS}
    expected |= {("varint", str(n), spaced(header)) for n, header in GOLDEN_VARINT_HEADERS}
    assert doc_rows(_HEADER_ROW) == expected
