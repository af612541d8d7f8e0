"""The ARQ wire format: golden bytes, round trips, and a decoder fuzzed with garbage."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netweave.errors import DecodeError, ProtocolError
from netweave.session import ArqConnection
from netweave.session._arq_wire import (
    AckChunk,
    DataChunk,
    datagram_header,
    decode_datagram,
    encode_varint,
    varint_size,
)

# -- golden bytes: change these only with a version bump ------------------------------

GOLDEN_DATAGRAM = bytes.fromhex(
    "01 00000007"  # version 1, packet 7
    " 02 0000000a 00000003 4064 02 01 01 01 00"  # ACK cum=10 largest=3 window=100, 2 ranges
    " 01 03 00000005 0002 6869"  # DATA FIRST|LAST seq=5 "hi"
    " 01 04 00000006 0000"  # DATA FIN seq=6
)


def test_golden_datagram_encodes_exactly() -> None:
    ack = AckChunk(cumulative=10, largest=3, window=100, ranges=((2, 4), (6, 7)))
    data = DataChunk(seq=5, flags=0x03, payload=b"hi")
    fin = DataChunk(seq=6, flags=0x04, payload=b"")
    encoded = datagram_header(7) + ack.encode() + data.encode() + fin.encode()
    assert encoded == GOLDEN_DATAGRAM


def test_golden_datagram_decodes_exactly() -> None:
    packet, chunks = decode_datagram(GOLDEN_DATAGRAM)
    assert packet == 7
    assert chunks == [
        AckChunk(cumulative=10, largest=3, window=100, ranges=((2, 4), (6, 7))),
        DataChunk(seq=5, flags=0x03, payload=b"hi"),
        DataChunk(seq=6, flags=0x04, payload=b""),
    ]


def test_sequence_numbers_are_sent_mod_2_to_the_32() -> None:
    assert DataChunk(seq=(1 << 32) + 5, flags=3, payload=b"").encode()[2:6] == bytes.fromhex(
        "00000005"
    )
    assert datagram_header((1 << 32) + 1) == bytes.fromhex("0100000001")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (63, "3f"),
        (64, "4040"),
        (16383, "7fff"),
        (16384, "80004000"),
        (2**30 - 1, "bfffffff"),
        (2**30, "c000000040000000"),
    ],
)
def test_varint_is_quic_varint(value: int, encoded: str) -> None:
    assert encode_varint(value) == bytes.fromhex(encoded)
    assert varint_size(value) == len(encoded) // 2


def test_varint_range() -> None:
    with pytest.raises(ValueError, match="range"):
        encode_varint(-1)
    with pytest.raises(ValueError, match="range"):
        encode_varint(2**62)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x02\x00\x00\x00\x00\x01", "version"),
        (b"\x01\x00\x00", "header"),
        (b"\x01\x00\x00\x00\x00", "no chunk"),
        (b"\x01\x00\x00\x00\x00\x09", "unknown chunk"),
        (b"\x01\x00\x00\x00\x00\x01\x08\x00\x00\x00\x00\x00\x00", "reserved"),
        (b"\x01\x00\x00\x00\x00\x01\x05\x00\x00\x00\x00\x00\x00", "FIN"),
        (b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00", "empty middle"),
        (b"\x01\x00\x00\x00\x00\x01\x03\x00\x00\x00\x00\x00\x05ab", "announces 5"),
        (b"\x01\x00\x00\x00\x00\x02\x00\x00", "ACK header"),
        (b"\x01\x00\x00\x00\x00\x02" + bytes(8) + b"\x40", "varint"),
        (b"\x01\x00\x00\x00\x00\x02" + bytes(8) + b"\x00\x42\x00", "ranges"),
    ],
)
def test_malformed_datagrams_are_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem) as info:
        decode_datagram(data)
    assert info.value.layer == "arq"


chunk_strategy = st.one_of(
    st.builds(
        DataChunk,
        seq=st.integers(0, 2**32 - 1),
        flags=st.sampled_from([0x01, 0x02, 0x03]),
        payload=st.binary(min_size=1, max_size=64),
    ),
    st.builds(
        lambda cum, largest, window, starts: AckChunk(cum, largest, window, tuple(_ranges(starts))),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**20),
        st.lists(st.integers(1, 50), max_size=20),
    ),
)


def _ranges(lengths: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    previous = 0
    for i, length in enumerate(lengths):
        start = previous + 1 + (i % 3)
        out.append((start, start + length))
        previous = start + length
    return out


@given(packet=st.integers(0, 2**32 - 1), chunks=st.lists(chunk_strategy, min_size=1, max_size=8))
def test_round_trip(packet: int, chunks: list[DataChunk | AckChunk]) -> None:
    data = datagram_header(packet) + b"".join(chunk.encode() for chunk in chunks)
    assert decode_datagram(data) == (packet, chunks)


@given(st.binary(max_size=200))
def test_decoder_raises_only_decode_error_on_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_datagram(data)


@given(st.binary(max_size=80).map(lambda tail: b"\x01\x00\x00\x00\x00" + tail))
def test_decoder_raises_only_decode_error_behind_a_valid_header(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_datagram(data)


@given(st.lists(st.binary(max_size=60), max_size=20), st.integers(0, 2**32 - 1))
def test_connection_raises_only_protocol_errors_on_garbage(
    datagrams: list[bytes], seed: int
) -> None:
    """Garbage (and mutated real traffic) reaching a connection raises only ProtocolError."""
    rng = random.Random(seed)
    sender, conn = ArqConnection(), ArqConnection()
    sender.send(b"x" * 3000)
    real = sender.datagrams_to_send(0.0)
    mutated = []
    for datagram in real:
        raw = bytearray(datagram)
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        mutated.append(bytes(raw))
    now = 0.0
    for data in [b"\x01\x00\x00\x00\x00" + d for d in datagrams] + mutated + real:
        now += 0.01
        with contextlib.suppress(ProtocolError):
            conn.receive_datagram(data, now)
        conn.datagrams_to_send(now)
        conn.next_message()
        timer = conn.get_timer()
        if timer is not None:
            conn.handle_timer(timer)
