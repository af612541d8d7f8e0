"""Every built-in layer runs the public layer conformance suite.

Framings use a small maximum (64 bytes, or 1 MiB for the long-header varint)
so the memory bound that the suite checks is tight: the exact most a framing
may hold is its longest header plus ``max - 1`` payload bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from google.protobuf import descriptor_pb2, wrappers_pb2

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
from netweave.testing import LayerConformance

SMALL = 64

FRAMES: list[bytes] = [
    b"",
    b"x",
    b"\x00\x80\xff",
    bytes(range(SMALL)),
    b"z" * SMALL,
]


# ---------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------


class _LengthPrefixSuite(LayerConformance):
    size: ClassVar[Literal[1, 2, 4, 8]]
    byteorder: ClassVar[Literal["big", "little"]] = "big"

    def make_layer(self) -> LengthPrefix:
        return LengthPrefix(self.size, max_frame=SMALL, byteorder=self.byteorder)

    def samples(self) -> Sequence[bytes]:
        return FRAMES

    def header(self, length: int) -> bytes:
        return length.to_bytes(self.size, self.byteorder)

    def garbage(self) -> Sequence[bytes]:
        return [
            self.header(SMALL + 1) + b"x" * (SMALL + 1),  # over the maximum
            self.header(2 ** (8 * self.size) - 1),  # the largest length the header holds
            self.header(5) + b"ab",  # the stream ends inside the payload
            *([self.header(3)[:-1]] if self.size > 1 else []),  # ends inside the header
        ]

    def oversize(self) -> tuple[bytes, int]:
        return self.header(SMALL + 1) + b"y" * 80, self.size

    def buffer_bound(self, layer: Layer[Any, Any]) -> int:
        return self.size + SMALL - 1


class TestLp1(_LengthPrefixSuite):
    size = 1


class TestLp2(_LengthPrefixSuite):
    size = 2


class TestLp4(_LengthPrefixSuite):
    size = 4


class TestLp8(_LengthPrefixSuite):
    size = 8


class TestLp2le(_LengthPrefixSuite):
    size = 2
    byteorder = "little"


class TestLp4le(_LengthPrefixSuite):
    size = 4
    byteorder = "little"


class TestLp8le(_LengthPrefixSuite):
    size = 8
    byteorder = "little"


class TestVarintSmall(LayerConformance):
    """Max 64: the header is a single byte, so any continuation bit is already too large."""

    def make_layer(self) -> Varint:
        return Varint(max_frame=SMALL)

    def samples(self) -> Sequence[bytes]:
        return FRAMES

    def garbage(self) -> Sequence[bytes]:
        return [b"\x41" + b"x" * 65, b"\x80\x01", b"\xff" * 10, b"\x05ab", b"\x80"]

    def oversize(self) -> tuple[bytes, int]:
        return b"\x41" + b"y" * 80, 1

    def buffer_bound(self, layer: Layer[Any, Any]) -> int:
        return 1 + SMALL - 1


class TestVarintLarge(LayerConformance):
    """Max 1 MiB: headers of up to three bytes, samples crossing each header size."""

    limit: ClassVar[int] = 1 << 20

    def make_layer(self) -> Varint:
        return Varint(max_frame=self.limit)

    def samples(self) -> Sequence[bytes]:
        return [b"", b"a" * 127, b"b" * 128, b"c" * 300, b"d" * 16383, b"e" * 16384]

    def garbage(self) -> Sequence[bytes]:
        return [
            b"\x80\x00",  # non-minimal zero
            b"\xff\x00",  # non-minimal 127
            b"\x80\x80\x00",  # non-minimal zero, three bytes
            b"\x81\x80\x40",  # 2**20 + 1: over the maximum
            b"\x80\x80\x80",  # a fourth header byte would be needed: too large
            b"\xac\x02" + b"x" * 299,  # truncated payload
        ]

    def oversize(self) -> tuple[bytes, int]:
        return b"\x81\x80\x40" + b"y" * 100, 3

    def unencodable(self) -> Sequence[bytes]:
        return [b"\x00" * (self.limit + 1)]

    def buffer_bound(self, layer: Layer[Any, Any]) -> int:
        return Varint.header_size(self.limit) + self.limit - 1


class _DelimiterSuite(LayerConformance):
    sep: ClassVar[bytes]
    garbage_max_size = 256

    def make_layer(self) -> Delimiter:
        return Delimiter(self.sep, max_length=SMALL)

    def samples(self) -> Sequence[bytes]:
        return [frame for frame in FRAMES if self.sep not in frame] + [b"\r", b"a\rb"]

    def garbage(self) -> Sequence[bytes]:
        ends_inside_delimiter = [b"abc" + self.sep[:-1]] if len(self.sep) > 1 else []
        return [
            b"x" * (SMALL + len(self.sep)),
            b"x" * 200 + self.sep,
            b"abc",
            *ends_inside_delimiter,
        ]

    def oversize(self) -> tuple[bytes, int]:
        return b"y" * 100, SMALL + len(self.sep)

    def unencodable(self) -> Sequence[bytes]:
        return [b"\x00" * (SMALL + 1), b"a" + self.sep + b"b", self.sep]

    def buffer_bound(self, layer: Layer[Any, Any]) -> int:
        return SMALL + len(self.sep) - 1


class TestLine(_DelimiterSuite):
    sep = b"\n"


class TestDelimiterCrlf(_DelimiterSuite):
    sep = b"\r\n"


class TestDelimiterNul(_DelimiterSuite):
    sep = b"\x00"


class TestDelimiterSelfOverlapping(_DelimiterSuite):
    """``0000``: a payload may not end in 00, or the reader would cut it one byte early."""

    sep = b"\x00\x00"

    def samples(self) -> Sequence[bytes]:
        return [b"", b"x", b"\x00x", b"x\x00x", b"z" * SMALL]

    def unencodable(self) -> Sequence[bytes]:
        return [*super().unencodable(), b"x\x00"]


# ---------------------------------------------------------------------------
# Codecs
# ---------------------------------------------------------------------------


class TestRaw(LayerConformance):
    def make_layer(self) -> Raw:
        return Raw()

    def samples(self) -> Sequence[bytes]:
        return [b"", b"abc", bytes(range(256))]


class TestText(LayerConformance):
    def make_layer(self) -> Text:
        return Text()

    def samples(self) -> Sequence[str]:
        return ["", "hello", "héllo wörld", "\U0001f600", "a\nb\x00c"]

    def garbage(self) -> Sequence[bytes]:
        return [b"\xff", b"abc\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]

    def unencodable(self) -> Sequence[Any]:
        return [b"bytes", 1, None, "\ud800"]


class TestTextUtf16(LayerConformance):
    def make_layer(self) -> Text:
        return Text("utf-16-le")

    def samples(self) -> Sequence[str]:
        return ["", "x", "\U0001f600 smile"]

    def garbage(self) -> Sequence[bytes]:
        return [b"\x00", b"\x00\xd8"]

    def unencodable(self) -> Sequence[Any]:
        return [b"x", "\udc80"]


class TestJson(LayerConformance):
    def make_layer(self) -> Json:
        return Json()

    def samples(self) -> Sequence[Any]:
        return [
            None,
            True,
            0,
            -1,
            2**70,
            1.5,
            -0.0,
            "",
            "é\u2028\U0001f600",
            [],
            {},
            {"a": [1, {"b": None, "c": "d"}], "e": 1e300},
        ]

    def garbage(self) -> Sequence[bytes]:
        return [
            b"",
            b"{",
            b"[1]x",
            b"\xff",
            b'"\xc3"',
            b"\xef\xbb\xbf1",  # a byte-order mark is not allowed
            b"NaN",
            b"[-Infinity]",
            b"[" * 100_000,  # nesting beyond the parser's recursion limit
            b'{"a":' * 100_000,
        ]

    def unencodable(self) -> Sequence[Any]:
        circular: list[Any] = []
        circular.append(circular)
        return [object(), b"bytes", math.nan, math.inf, {"a": {1, 2}}, "\ud800", circular]


class TestMsgpack(LayerConformance):
    def make_layer(self) -> Msgpack:
        return Msgpack()

    def samples(self) -> Sequence[Any]:
        return [
            None,
            False,
            0,
            -(2**63),
            2**64 - 1,
            1.5,
            "é",
            b"\x00\xff",
            [],
            {},
            {"a": [1, b"x", {"b": None}]},
            {1: "int key"},
        ]

    def garbage(self) -> Sequence[bytes]:
        return [
            b"",
            b"\xc1",  # never-used type byte
            b"\x91",  # array of one with no element
            b"\x01\x02",  # extra data
            b"\x81\x91\x01\x01",  # a list as a map key
            b"\xa2\xff\xfe",  # bad utf-8 in a str
            b"\xdd\xff\xff\xff\xff",  # array announcing 2**32 - 1 items
            b"\x91" * 100_000 + b"\x01",  # nesting too deep
        ]

    def unencodable(self) -> Sequence[Any]:
        return [object(), 2**64, -(2**63) - 1]


class TestCbor(LayerConformance):
    def make_layer(self) -> Cbor:
        return Cbor()

    def samples(self) -> Sequence[Any]:
        return [None, True, 0, -(2**70), 2**70, 1.5, "é", b"\x00", [], {}, {"a": [1, {2: b"x"}]}]

    def garbage(self) -> Sequence[bytes]:
        return [
            b"",
            b"\xff",  # a break outside an indefinite container
            b"\x01\x02",  # trailing data
            b"\x9b" + b"\xff" * 8,  # array announcing 2**64 - 1 items
            b"\x5b" + b"\xff" * 8,  # byte string announcing 2**64 - 1 bytes
            b"\xc1\x1b" + b"\xff" * 8,  # epoch datetime out of range
            b"\x62\xff\xfe",  # bad utf-8 in a text string
            b"\x81" * 100_000 + b"\x01",  # nesting too deep
        ]

    def unencodable(self) -> Sequence[Any]:
        return [object()]


class TestProtobuf(LayerConformance):
    def make_layer(self) -> Protobuf:
        return Protobuf(descriptor_pb2.FileDescriptorProto)

    def samples(self) -> Sequence[Any]:
        return [
            descriptor_pb2.FileDescriptorProto(),
            descriptor_pb2.FileDescriptorProto(name="a.proto", package="pkg.v1"),
            descriptor_pb2.FileDescriptorProto(
                name="é.proto",
                dependency=["b.proto", "c.proto"],
                message_type=[descriptor_pb2.DescriptorProto(name="M")],
            ),
        ]

    def garbage(self) -> Sequence[bytes]:
        return [b"\xff", b"\x08", b"\x0a\x05ab", b"\x00", b"\x0f"]

    def unencodable(self) -> Sequence[Any]:
        return [b"bytes", wrappers_pb2.StringValue(value="other type"), None]
