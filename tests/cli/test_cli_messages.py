"""The argument -> message -> printed-line mapping of ``netweave send``."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netweave import Stack, UsageError
from netweave.layers import Codec
from netweave.tools import CODEC_FORMATS, check_encodable, message_format


class Upper(Codec[str]):
    """A codec netweave does not know: ASCII text, upper-cased on the wire."""

    identity: ClassVar[bool] = False

    def __init__(self) -> None:
        self.name = "upper"

    def clone(self) -> Self:
        return type(self)()

    def encode(self, unit: str) -> bytes:
        return unit.upper().encode("ascii")

    def decode(self, data: bytes) -> list[str]:
        return [data.decode("ascii")]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("lp4,raw", "bytes"),
        ("lp4", "bytes"),
        ("raw", "bytes"),
        ("lp4,text", "text"),
        ("line,text", "text"),
        ("lp4,json", "json"),
        ("json", "json"),
        ("lp4,msgpack", "json"),
        ("lp4,cbor", "json"),
    ],
)
def test_format_is_chosen_by_the_top_layer(spec: str, expected: str) -> None:
    assert message_format(Stack.parse(spec)).name == expected


def test_unknown_codec_uses_json() -> None:
    assert "upper" not in CODEC_FORMATS
    assert message_format(Stack([Upper()])).name == "json"


def test_bytes_format() -> None:
    fmt = message_format(Stack.parse("lp4,raw"))
    assert fmt.parse("héllo", 1) == "héllo".encode()
    assert fmt.render(b"caf\xc3\xa9") == "café"
    assert fmt.render(b"a\xffb") == "a\\xffb"


def test_text_format() -> None:
    fmt = message_format(Stack.parse("lp4,text"))
    assert fmt.parse('{"not": "json"}', 1) == '{"not": "json"}'
    assert fmt.render("héllo") == "héllo"


def test_json_format_parses_and_prints_compact_json() -> None:
    fmt = message_format(Stack.parse("lp4,json"))
    assert fmt.parse('{"a": [1, 2.5, null, true]}', 1) == {"a": [1, 2.5, None, True]}
    assert fmt.parse('"text"', 1) == "text"
    assert fmt.render({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'
    # Values JSON has no form for still print on one line.
    assert fmt.render({"k": b"a\xff"}) == '{"k":"a\\\\xff"}'


@pytest.mark.parametrize("argument", ["{a:1}", "hello", "[1,", ""])
def test_json_parse_failure_names_the_argument(argument: str) -> None:
    fmt = message_format(Stack.parse("lp4,json"))
    with pytest.raises(UsageError, match=r"message 3 .*not valid JSON.*quote"):
        fmt.parse(argument, 3)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=8,
)


@given(JSON_VALUES)
def test_json_round_trip(value: Any) -> None:
    fmt = message_format(Stack.parse("lp4,json"))
    assert fmt.parse(fmt.render(value), 1) == value


def test_check_encodable_names_the_bad_message() -> None:
    stack = Stack.parse("lp4,json")
    check_encodable(stack, [{"a": 1}, [1, 2]])
    with pytest.raises(UsageError, match="message 2"):
        check_encodable(stack, [1, float("nan")])
    with pytest.raises(UsageError, match="message 1"):
        check_encodable(Stack.parse("lp4,text"), [b"bytes are not text"])
