"""The RPC envelope, version 1 (see ``docs/rpc.md``; the exact bytes are a contract).

One frame per channel message (for example over ``lp4,raw``); the first byte
is the kind, integers are QUIC varints, text is UTF-8::

    HELLO    0x01  "NWRPC"  version:u8  max_in_flight:varint  idle_timeout_ms:varint
    REQUEST  0x02  id  flags:u8  [timeout_us]  [credit]  method_len  method  payload...
                   flags: 0x01 a deadline follows (microseconds left, relative),
                          0x02 a streamed response is wanted; the initial credit follows
    RESPONSE 0x03  id  payload...
    ITEM     0x04  id  payload...
    END      0x05  id
    ERROR    0x06  id  code  type_len  type  message_len  message
    CANCEL   0x07  id
    CREDIT   0x08  id  count
    PING     0x09  token
    PONG     0x0a  token
    GOAWAY   0x0b

Rules of this file: :func:`decode_frame` raises only
:class:`~netweave.errors.DecodeError` (``layer="rpc"``) and rejects anything
not exactly as above (unknown kind, reserved flags, bad UTF-8, trailing bytes
where the frame has no payload, a method name over 255 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from ..errors import DecodeError
from ._varint import decode_varint, encode_varint

__all__ = [
    "Cancel",
    "Credit",
    "End",
    "ErrorFrame",
    "Frame",
    "GoAway",
    "Hello",
    "Item",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "decode_frame",
    "encode_frame",
    "encode_request",
    "encode_request_head",
    "encode_response",
]

VERSION: Final = 1
MAGIC: Final = b"NWRPC"
MAX_METHOD: Final = 255
_DEADLINE: Final = 0x01
_STREAM: Final = 0x02

HELLO, REQUEST, RESPONSE, ITEM, END, ERROR, CANCEL, CREDIT, PING, PONG, GOAWAY = range(1, 12)


@final
@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    max_in_flight: int
    idle_timeout_ms: int


@final
@dataclass(slots=True)  # not frozen: built for every call, and frozen __init__ is slow
class Request:
    call_id: int
    method: str
    payload: bytes
    timeout_us: int | None = None
    credit: int | None = None  # set when a streamed response is wanted


@final
@dataclass(slots=True)  # not frozen: built for every call, and frozen __init__ is slow
class Response:
    call_id: int
    payload: bytes


@final
@dataclass(slots=True)  # not frozen: built for every call, and frozen __init__ is slow
class Item:
    call_id: int
    payload: bytes


@final
@dataclass(frozen=True, slots=True)
class End:
    call_id: int


@final
@dataclass(frozen=True, slots=True)
class ErrorFrame:
    call_id: int
    code: int
    remote_type: str
    message: str


@final
@dataclass(frozen=True, slots=True)
class Cancel:
    call_id: int


@final
@dataclass(frozen=True, slots=True)
class Credit:
    call_id: int
    count: int


@final
@dataclass(frozen=True, slots=True)
class Ping:
    token: int


@final
@dataclass(frozen=True, slots=True)
class Pong:
    token: int


@final
@dataclass(frozen=True, slots=True)
class GoAway:
    pass


Frame = (
    Hello | Request | Response | Item | End | ErrorFrame | Cancel | Credit | Ping | Pong | GoAway
)


def encode_request_head(method: str) -> bytes:
    """The method part of a REQUEST (length and name), for :func:`encode_request`."""
    raw = method.encode("utf-8")
    if len(raw) > MAX_METHOD:
        raise ValueError(f"method name longer than {MAX_METHOD} bytes: {method[:40]!r}")
    return encode_varint(len(raw)) + raw


def encode_request(
    call_id: int, method_head: bytes, payload: bytes, timeout_us: int | None
) -> bytes:
    """A unary REQUEST, fast: the same bytes as ``encode_frame(Request(...))``."""
    if timeout_us is None:
        return b"\x02" + encode_varint(call_id) + b"\x00" + method_head + payload
    return (
        b"\x02"
        + encode_varint(call_id)
        + b"\x01"
        + encode_varint(timeout_us)
        + method_head
        + payload
    )


def encode_response(call_id: int, payload: bytes) -> bytes:
    """A RESPONSE, fast: the same bytes as ``encode_frame(Response(...))``."""
    return b"\x03" + encode_varint(call_id) + payload


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "replace")
    return encode_varint(len(raw)) + raw


def encode_frame(frame: Frame) -> bytes:
    """The bytes of one frame."""
    v = encode_varint
    if isinstance(frame, Response):
        return b"\x03" + v(frame.call_id) + frame.payload
    if isinstance(frame, Request):
        method = frame.method.encode("utf-8")
        if len(method) > MAX_METHOD:
            raise ValueError(f"method name longer than {MAX_METHOD} bytes: {frame.method[:40]!r}")
        flags = (0 if frame.timeout_us is None else _DEADLINE) | (
            0 if frame.credit is None else _STREAM
        )
        out = bytearray(b"\x02")
        out += v(frame.call_id)
        out.append(flags)
        if frame.timeout_us is not None:
            out += v(frame.timeout_us)
        if frame.credit is not None:
            out += v(frame.credit)
        out += v(len(method))
        out += method
        out += frame.payload
        return bytes(out)
    if isinstance(frame, Item):
        return b"\x04" + v(frame.call_id) + frame.payload
    if isinstance(frame, End):
        return b"\x05" + v(frame.call_id)
    if isinstance(frame, ErrorFrame):
        return (
            b"\x06"
            + v(frame.call_id)
            + v(frame.code)
            + _text(frame.remote_type)
            + _text(frame.message)
        )
    if isinstance(frame, Cancel):
        return b"\x07" + v(frame.call_id)
    if isinstance(frame, Credit):
        return b"\x08" + v(frame.call_id) + v(frame.count)
    if isinstance(frame, Ping):
        return b"\x09" + v(frame.token)
    if isinstance(frame, Pong):
        return b"\x0a" + v(frame.token)
    if isinstance(frame, Hello):
        return (
            b"\x01"
            + MAGIC
            + bytes((frame.version,))
            + v(frame.max_in_flight)
            + v(frame.idle_timeout_ms)
        )
    return b"\x0b"


def _int(data: bytes, pos: int) -> tuple[int, int]:
    # Fast paths for the 1- and 2-byte varints that call ids mostly are.
    if pos < len(data):
        first = data[pos]
        if first < 0x40:
            return first, pos + 1
        if first < 0x80 and pos + 1 < len(data):
            return ((first & 0x3F) << 8) | data[pos + 1], pos + 2
    return decode_varint(data, pos, layer="rpc")


def _utf8(data: bytes, pos: int, what: str) -> tuple[str, int]:
    length, pos = _int(data, pos)
    end = pos + length
    if end > len(data):
        raise DecodeError(f"frame ends inside the {what}", layer="rpc")
    try:
        return data[pos:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise DecodeError(f"the {what} is not valid UTF-8", layer="rpc") from None


def _done(data: bytes, pos: int, kind: str) -> None:
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} unexpected bytes after a {kind} frame", layer="rpc")


def decode_frame(data: bytes) -> Frame:
    """The frame in ``data`` (one whole channel message). Raises only ``DecodeError``."""
    if not data:
        raise DecodeError("empty frame", layer="rpc")
    kind = data[0]
    size = len(data)
    # Fast paths: a RESPONSE, or a plain REQUEST (no deadline, no stream, short
    # method name), with a call id of one or two bytes.
    if size > 2 and kind in (RESPONSE, REQUEST):
        first = data[1]
        if first < 0x40:
            call_id, pos = first, 2
        elif first < 0x80:
            call_id, pos = ((first & 0x3F) << 8) | data[2], 3
        else:
            call_id, pos = _int(data, 1)
        if kind == RESPONSE:
            return Response(call_id, data[pos:])
        if pos + 1 < size and data[pos] == 0 and data[pos + 1] < 0x40:
            end = pos + 2 + data[pos + 1]
            if end <= size:
                try:
                    method = data[pos + 2 : end].decode("utf-8")
                except UnicodeDecodeError:
                    raise DecodeError("the method name is not valid UTF-8", layer="rpc") from None
                return Request(call_id, method, data[end:])
    if kind in (RESPONSE, ITEM):
        call_id, pos = _int(data, 1)
        payload = data[pos:]
        return Response(call_id, payload) if kind == RESPONSE else Item(call_id, payload)
    if kind == REQUEST:
        call_id, pos = _int(data, 1)
        if pos >= len(data):
            raise DecodeError("frame ends inside a REQUEST header", layer="rpc")
        flags = data[pos]
        pos += 1
        if flags & ~(_DEADLINE | _STREAM):
            raise DecodeError(f"REQUEST has reserved flag bits set: {flags:#04x}", layer="rpc")
        timeout_us = credit = None
        if flags & _DEADLINE:
            timeout_us, pos = _int(data, pos)
        if flags & _STREAM:
            credit, pos = _int(data, pos)
        length, pos = _int(data, pos)
        if length > MAX_METHOD:
            raise DecodeError(f"method name of {length} bytes (at most {MAX_METHOD})", layer="rpc")
        end = pos + length
        if end > len(data):
            raise DecodeError("frame ends inside the method name", layer="rpc")
        try:
            method = data[pos:end].decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("the method name is not valid UTF-8", layer="rpc") from None
        return Request(call_id, method, data[end:], timeout_us, credit)
    if kind in (END, CANCEL):
        call_id, pos = _int(data, 1)
        _done(data, pos, "END" if kind == END else "CANCEL")
        return End(call_id) if kind == END else Cancel(call_id)
    if kind == ERROR:
        call_id, pos = _int(data, 1)
        code, pos = _int(data, pos)
        remote_type, pos = _utf8(data, pos, "error type")
        message, pos = _utf8(data, pos, "error message")
        _done(data, pos, "ERROR")
        return ErrorFrame(call_id, code, remote_type, message)
    if kind == CREDIT:
        call_id, pos = _int(data, 1)
        count, pos = _int(data, pos)
        _done(data, pos, "CREDIT")
        return Credit(call_id, count)
    if kind in (PING, PONG):
        token, pos = _int(data, 1)
        _done(data, pos, "PING" if kind == PING else "PONG")
        return Ping(token) if kind == PING else Pong(token)
    if kind == HELLO:
        if data[1:6] != MAGIC or len(data) < 7:
            raise DecodeError("HELLO without the NWRPC magic: not a netweave RPC peer", layer="rpc")
        version = data[6]
        max_in_flight, pos = _int(data, 7)
        idle_ms, pos = _int(data, pos)
        _done(data, pos, "HELLO")
        return Hello(version, max_in_flight, idle_ms)
    if kind == GOAWAY:
        _done(data, 1, "GOAWAY")
        return GoAway()
    raise DecodeError(f"unknown frame kind {kind:#04x}", layer="rpc")
