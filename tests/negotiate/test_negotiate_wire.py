"""The negotiation wire format: golden bytes (also checked against docs/negotiation.md),
round trips, strict decoding, and fuzzing of every decoder."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave.errors import DecodeError, FrameTooLarge, ProtocolError, UsageError
from netweave.negotiate import (
    MAX_BODY,
    Hello,
    MessageType,
    Offer,
    agree,
    decode_hello,
    decode_refuse,
    decode_retry,
    encode_hello,
    encode_refuse,
    encode_retry,
    read_message,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "negotiation.md"

CLIENT = Offer(
    "chat",
    versions=[2, 1],
    codecs=["msgpack", "json"],
    compression=["zstd:level=3", "none"],
    max_frame=65536,
    heartbeat=15,
    features={"receipts"},
    required_features={"typing"},
    tls="optional",
)
SERVER = Offer(
    "chat",
    versions=[1, 2],
    codecs=["json", "msgpack"],
    compression=["zstd", "none"],
    heartbeat=30,
    features={"receipts", "typing"},
    tls="optional",
)

HELLO_V1 = (
    "4e574853010100390100046368617402000400020001030004036c703404000d076d73677061636b"
    "046a736f6e05000a047a737464046e6f6e6506000400010000"
)
HELLO_V2 = (
    "4e5748530201006a0100046368617402000400020001030004036c703404000d076d73677061636b"
    "046a736f6e05000a047a737464046e6f6e6506000400010000070006047a7374640308000400003a"
    "9809001008726563656970747306747970696e670a000706747970696e670b000101"
)
AGREE_V2 = (
    "4e57485302020051010004636861740200020001030004036c7034040005046a736f6e050005047a"
    "73746406000400010000070006047a7374640308000400003a980900100872656365697074730674"
    "7970696e670b000101"
)
AGREE_V1 = (
    "4e5748530102002a010004636861740200020001030004036c7034040005046a736f6e050005047a"
    "73746406000400010000"
)
REFUSE = (
    "4e574853020300440270726f746f636f6c206d69736d617463683a2074686520636c69656e742073"
    "7065616b73202763686174272c207468652073657276657220737065616b7320276b7627"
)
RETRY = "4e5748530104000101"


def golden() -> list[bytes]:
    """The example messages of docs/negotiation.md, as the code encodes them today."""
    return [
        encode_hello(CLIENT.hello(1), 1),
        encode_hello(CLIENT.hello(2), 2),
        encode_hello(agree(CLIENT.hello(2), SERVER.hello(2), 2).to_hello(), 2, MessageType.AGREE),
        encode_hello(agree(CLIENT.hello(1), SERVER.hello(2), 1).to_hello(), 1, MessageType.AGREE),
        encode_refuse(
            2, "protocol", "protocol mismatch: the client speaks 'chat', the server speaks 'kv'"
        ),
        encode_retry(1, (1,)),
    ]


def docs_examples() -> list[bytes]:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```hex\n(.*?)```", text, flags=re.DOTALL)
    examples = []
    for block in blocks:
        digits = "".join(line.split("#", 1)[0] for line in block.splitlines())
        examples.append(bytes.fromhex(digits))
    return examples


def test_golden_bytes() -> None:
    assert [message.hex() for message in golden()] == [
        HELLO_V1,
        HELLO_V2,
        AGREE_V2,
        AGREE_V1,
        REFUSE,
        RETRY,
    ]


def test_docs_examples_are_what_the_code_sends() -> None:
    assert docs_examples() == golden()


def test_golden_examples_decode_back() -> None:
    hello_v1, hello_v2, agree_v2, agree_v1, refuse, retry = golden()
    parsed = read_message(agree_v1)
    assert parsed is not None
    assert decode_hello(1, parsed[0].body, MessageType.AGREE).levels == ()
    parsed = read_message(hello_v2)
    assert parsed is not None
    message, used = parsed
    assert used == len(hello_v2)
    assert (message.version, message.type) == (2, MessageType.HELLO)
    assert decode_hello(2, message.body) == CLIENT.hello(2)
    parsed = read_message(hello_v1)
    assert parsed is not None
    assert decode_hello(1, parsed[0].body) == CLIENT.hello(1)
    parsed = read_message(agree_v2)
    assert parsed is not None
    agreed = decode_hello(2, parsed[0].body, MessageType.AGREE)
    assert agreed.levels == (("zstd", 3),)
    assert agreed.tls == 1
    parsed = read_message(refuse)
    assert parsed is not None
    assert decode_refuse(parsed[0].body) == (
        "protocol",
        "protocol mismatch: the client speaks 'chat', the server speaks 'kv'",
    )
    parsed = read_message(retry)
    assert parsed is not None
    assert decode_retry(parsed[0].body) == (1,)


def test_version_1_skips_fields_it_does_not_know() -> None:
    """A v1 reader of a body with v2 tags (a v1 message from a newer v1 writer) skips them."""
    v2_body = encode_hello(CLIENT.hello(2), 2)[8:]
    assert decode_hello(1, v2_body) == CLIENT.hello(1)


def test_unknown_tags_are_skipped() -> None:
    body = encode_hello(CLIENT.hello(1), 1)[8:] + bytes([0x7F, 0, 2, 0xAB, 0xCD])
    assert decode_hello(1, body) == CLIENT.hello(1)


def test_messages_are_read_incrementally() -> None:
    data = golden()[1] + b"after"
    for cut in range(len(data) - 5):
        assert read_message(data[:cut]) is None
    parsed = read_message(data)
    assert parsed is not None
    assert parsed[1] == len(data) - 5


def body(*fields: tuple[int, bytes]) -> bytes:
    return b"".join(struct.pack(">BH", tag, len(value)) + value for tag, value in fields)


MINIMAL = [
    (1, b"chat"),
    (2, b"\x00\x01"),
    (3, b"\x03lp4"),
    (4, b"\x04json"),
    (5, b"\x04none"),
    (6, b"\x00\x00\x04\x00"),
]


def test_minimal_body_decodes() -> None:
    hello = decode_hello(1, body(*MINIMAL))
    assert hello == Hello("chat", (1,), ("lp4",), ("json",), ("none",), 1024)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (MINIMAL[1:], "no protocol field"),
        (MINIMAL[:5], "no max_frame field"),
        ([MINIMAL[1], MINIMAL[0], *MINIMAL[2:]], "out of order"),
        ([MINIMAL[0], MINIMAL[0], *MINIMAL[1:]], "out of order or repeated"),
        ([(1, b""), *MINIMAL[1:]], "protocol name"),
        ([(1, b"\xff\xfe"), *MINIMAL[1:]], "not UTF-8"),
        ([MINIMAL[0], (2, b"\x00"), *MINIMAL[2:]], "2-byte numbers"),
        ([MINIMAL[0], (2, b"\x00\x01\x00\x01"), *MINIMAL[2:]], "repeats a version"),
        ([*MINIMAL[:2], (3, b"\x03LP4"), *MINIMAL[3:]], "not a valid name"),
        ([*MINIMAL[:2], (3, b"\x09lp4"), *MINIMAL[3:]], "runs past"),
        ([*MINIMAL[:2], (3, b""), *MINIMAL[3:]], "framings is empty"),
        ([*MINIMAL[:3], (4, b"\x04json\x04json"), *MINIMAL[4:]], "repeats a name"),
        ([*MINIMAL[:5], (6, b"\x00\x00\x00\x00")], "at least 1"),
        ([*MINIMAL[:5], (6, b"\x00\x00")], "must be 4 bytes"),
    ],
)
def test_malformed_bodies_are_refused(fields: list[tuple[int, bytes]], message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        decode_hello(1, body(*fields))
    assert info.value.layer == "negotiate"


def test_body_running_past_its_end() -> None:
    with pytest.raises(DecodeError, match="runs past"):
        decode_hello(1, body(*MINIMAL) + b"\x07\x00\x10ab")
    with pytest.raises(DecodeError, match="field header"):
        decode_hello(1, body(*MINIMAL) + b"\x07\x00")


def test_v2_fields_are_checked() -> None:
    with pytest.raises(DecodeError, match="tls"):
        decode_hello(2, body(*MINIMAL, (0x0B, b"\x03")))
    with pytest.raises(DecodeError, match="tls"):
        decode_hello(2, body(*MINIMAL, (0x0B, b"\x02")), MessageType.AGREE)
    with pytest.raises(DecodeError, match="levels"):
        decode_hello(2, body(*MINIMAL, (0x07, b"\x04zstd")))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([*MINIMAL[:4], (5, b"\x04zstd\x04none"), MINIMAL[5]], "exactly one of compression"),
        ([*MINIMAL, (0x07, b"\x03lz4\x01")], "level only for the chosen compression"),
        ([*MINIMAL, (0x0A, b"\x01x")], "no required-features"),
    ],
)
def test_agree_shape_is_checked(fields: list[tuple[int, bytes]], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_hello(2, body(*fields), MessageType.AGREE)


def test_envelope_errors() -> None:
    with pytest.raises(DecodeError, match="does not speak netweave negotiation"):
        read_message(b"GET / HTTP/1.1\r\n")
    with pytest.raises(DecodeError, match="does not speak"):
        read_message(b"NX")  # known wrong after two bytes
    with pytest.raises(DecodeError, match="message type 9"):
        read_message(b"NWHS\x01\x09\x00\x00")
    # A body over the maximum is refused from the header, before it is buffered.
    with pytest.raises(FrameTooLarge) as info:
        read_message(b"NWHS\x01\x01" + (MAX_BODY + 1).to_bytes(2, "big"))
    assert info.value.limit == MAX_BODY


def test_refuse_and_retry_bodies() -> None:
    assert decode_refuse(b"\x63what?") == ("unknown", "what?")
    with pytest.raises(DecodeError):
        decode_refuse(b"")
    with pytest.raises(DecodeError, match="control"):
        decode_refuse(b"\x02bad\x00reason")
    with pytest.raises(DecodeError):
        decode_retry(b"")
    with pytest.raises(DecodeError):
        decode_retry(b"\x01\x01")
    long = encode_refuse(1, "codec", "x" * 5000)
    parsed = read_message(long)
    assert parsed is not None
    assert len(decode_refuse(parsed[0].body)[1]) == 1024


def test_encoding_refuses_fields_the_version_lacks() -> None:
    with pytest.raises(UsageError, match="has no field levels"):
        encode_hello(CLIENT.hello(2), 1)
    with pytest.raises(UsageError, match="over the maximum"):
        encode_hello(Offer("p", codecs=[f"c{i:060d}" for i in range(200)]).hello(1), 1)


@settings(max_examples=150)
@given(version=st.sampled_from([1, 2]), data=st.data())
def test_round_trip_any_offer(version: int, data: st.DataObject) -> None:
    names = st.from_regex(r"[a-z][a-z0-9_.+-]{0,10}", fullmatch=True)
    offer = Offer(
        data.draw(st.text(min_size=1, max_size=20).filter(str.isprintable)),
        versions=data.draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=5, unique=True)),
        framings=data.draw(
            st.lists(st.sampled_from(["lp4", "varint", "line"]), min_size=1, unique=True)
        ),
        codecs=data.draw(st.lists(names, min_size=1, max_size=4, unique=True)),
        compression=data.draw(
            st.lists(st.sampled_from(["zstd", "lz4", "zlib", "none"]), min_size=1, unique=True)
        ),
        max_frame=data.draw(st.integers(1, 0xFFFFFFFF)),
        heartbeat=data.draw(st.integers(0, 3600)),
        features=data.draw(st.frozensets(names, max_size=5)),
        tls=data.draw(st.sampled_from(["never", "optional", "required"])),
    )
    hello = offer.hello(version)
    wire = encode_hello(hello, version)
    parsed = read_message(wire)
    assert parsed is not None
    assert decode_hello(version, parsed[0].body) == hello


# -- fuzzing: every decoder raises only its protocol error -------------------------


@settings(max_examples=400)
@given(data=st.binary(max_size=300))
def test_fuzz_read_message(data: bytes) -> None:
    error: ProtocolError | None = None
    try:
        read_message(b"NWHS" + data)
        read_message(data)
    except ProtocolError as exc:
        error = exc
    assert error is None or error.layer == "negotiate"


@settings(max_examples=400)
@given(
    version=st.sampled_from([1, 2]),
    kind=st.sampled_from([MessageType.HELLO, MessageType.AGREE]),
    raw=st.binary(max_size=300),
    mutation=st.tuples(st.integers(0, 200), st.integers(1, 255)),
)
def test_fuzz_decode_hello(
    version: int, kind: MessageType, raw: bytes, mutation: tuple[int, int]
) -> None:
    mutated = bytearray(encode_hello(CLIENT.hello(version), version)[8:])
    index, mask = mutation
    mutated[index % len(mutated)] ^= mask
    for candidate in (raw, bytes(mutated), body(*MINIMAL) + raw):
        error: ProtocolError | None = None
        try:
            decode_hello(version, candidate, kind)
        except DecodeError as exc:
            error = exc
        assert error is None or error.layer == "negotiate"


@settings(max_examples=200)
@given(raw=st.binary(max_size=64))
def test_fuzz_refuse_and_retry(raw: bytes) -> None:
    for decoder in (decode_refuse, decode_retry):
        error: ProtocolError | None = None
        try:
            decoder(raw)
        except DecodeError as exc:
            error = exc
        assert error is None or error.layer == "negotiate"
