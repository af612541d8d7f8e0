"""The resumable-session wire format: golden bytes, round trips, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netweave.errors import DecodeError
from netweave.session._resume_wire import (
    Ack,
    Data,
    Expired,
    Fin,
    Open,
    Resume,
    ResumeFrame,
    SessionPing,
    SessionPong,
    Welcome,
    decode,
    encode,
)

SID = bytes(range(16))
SID_HEX = "000102030405060708090a0b0c0d0e0f"

GOLDEN: list[tuple[ResumeFrame, str]] = [
    (Open(), "21 01"),
    (Resume(SID, 300), f"22 01 {SID_HEX} 412c"),
    (Welcome(SID, 5, 30_000), f"23 {SID_HEX} 05 80007530"),
    (Expired(SID), f"24 {SID_HEX}"),
    (Data(7, b"hi"), "25 07 6869"),
    (Fin(8), "26 08"),
    (Ack(7), "27 07"),
    (SessionPing(1), "28 01"),
    (SessionPong(1), "29 01"),
]


@pytest.mark.parametrize(("frame", "golden"), GOLDEN)
def test_golden_bytes(frame: ResumeFrame, golden: str) -> None:
    assert encode(frame) == bytes.fromhex(golden)
    assert decode(bytes.fromhex(golden)) == frame


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x2a", "unknown"),
        (b"\x21", "two bytes"),
        (b"\x22\x01" + b"\x00" * 5, "session id"),
        (b"\x27\x01\x02", "unexpected bytes"),
        (b"\x24" + b"\x00" * 17, "unexpected bytes"),
    ],
)
def test_malformed_frames_are_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode(data)


def test_session_ids_are_sixteen_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        encode(Expired(b"short"))


numbers = st.integers(0, 2**62 - 1)
session_ids = st.binary(min_size=16, max_size=16)
frames = st.one_of(
    st.builds(Open, st.integers(0, 255)),
    st.builds(Resume, session_ids, numbers, st.integers(0, 255)),
    st.builds(Welcome, session_ids, numbers, numbers),
    st.builds(Expired, session_ids),
    st.builds(Data, numbers, st.binary(max_size=40)),
    st.builds(Fin, numbers),
    st.builds(Ack, numbers),
    st.builds(SessionPing, numbers),
    st.builds(SessionPong, numbers),
)


@given(frames)
def test_round_trip(frame: ResumeFrame) -> None:
    assert decode(encode(frame)) == frame


@given(st.binary(max_size=60))
def test_decoder_raises_only_decode_error_on_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)
