"""The RPC envelope: golden bytes, round trips, and a decoder fuzzed with garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netweave.errors import DecodeError
from netweave.session._rpc_wire import (
    Cancel,
    Credit,
    End,
    ErrorFrame,
    Frame,
    GoAway,
    Hello,
    Item,
    Ping,
    Pong,
    Request,
    Response,
    decode_frame,
    encode_frame,
)

# Golden bytes: change only with a version bump.
GOLDEN: list[tuple[Frame, str]] = [
    (Hello(1, 64, 30_000), "01 4e57525043 01 4040 80007530"),
    (Request(1, "echo", b"hi"), "02 01 00 04 6563686f 6869"),
    (Request(2, "m", b"", timeout_us=1_500_000, credit=16), "02 02 03 8016e360 10 01 6d"),
    (Response(300, b"ok"), "03 412c 6f6b"),
    (Item(5, b"x"), "04 05 78"),
    (End(5), "05 05"),
    (ErrorFrame(7, 3, "Overloaded", "busy"), "06 07 03 0a 4f7665726c6f61646564 04 62757379"),
    (Cancel(9), "07 09"),
    (Credit(9, 8), "08 09 08"),
    (Ping(1), "09 01"),
    (Pong(1), "0a 01"),
    (GoAway(), "0b"),
]


@pytest.mark.parametrize(("frame", "golden"), GOLDEN)
def test_golden_bytes(frame: Frame, golden: str) -> None:
    assert encode_frame(frame) == bytes.fromhex(golden)
    assert decode_frame(bytes.fromhex(golden)) == frame


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x0c", "unknown frame kind"),
        (b"\x01NOPE\x01\x00\x00", "magic"),
        (b"\x02\x01\x04", "reserved"),
        (b"\x02\x01", "header"),
        (b"\x02\x01\x00\x05ab", "method name"),
        (b"\x02\x01\x00\x02\xff\xfe", "UTF-8"),
        (b"\x05\x01extra", "unexpected bytes"),
        (b"\x06\x01\x01\x05ab", "error type"),
        (b"\x09", "varint"),
        (b"\x0bx", "unexpected bytes"),
    ],
)
def test_malformed_frames_are_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem) as info:
        decode_frame(data)
    assert info.value.layer == "rpc"


def test_method_names_are_bounded() -> None:
    with pytest.raises(ValueError, match="255"):
        encode_frame(Request(1, "x" * 256, b""))
    with pytest.raises(DecodeError, match="at most 255"):
        decode_frame(b"\x02\x01\x00\x41\x00" + b"x" * 256)


ids = st.integers(0, 2**62 - 1)
text = st.text(max_size=40)
frames = st.one_of(
    st.builds(Hello, st.integers(0, 255), ids, ids),
    st.builds(
        Request,
        ids,
        st.text(min_size=0, max_size=60).filter(lambda m: len(m.encode()) <= 255),
        st.binary(max_size=50),
        st.none() | ids,
        st.none() | ids,
    ),
    st.builds(Response, ids, st.binary(max_size=50)),
    st.builds(Item, ids, st.binary(max_size=50)),
    st.builds(End, ids),
    st.builds(ErrorFrame, ids, ids, text, text),
    st.builds(Cancel, ids),
    st.builds(Credit, ids, ids),
    st.builds(Ping, ids),
    st.builds(Pong, ids),
    st.just(GoAway()),
)


@given(frames)
def test_round_trip(frame: Frame) -> None:
    assert decode_frame(encode_frame(frame)) == frame


@given(st.binary(max_size=120))
def test_decoder_raises_only_decode_error_on_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_frame(data)


@given(frames, st.integers(0, 2**16), st.integers(0, 7))
def test_decoder_raises_only_decode_error_on_mutated_frames(
    frame: Frame, position: int, bit: int
) -> None:
    data = bytearray(encode_frame(frame))
    data[position % len(data)] ^= 1 << bit
    with contextlib.suppress(DecodeError):
        decode_frame(bytes(data))
    with contextlib.suppress(DecodeError):
        decode_frame(bytes(data[: position % len(data)]))
