"""The resumable-session wire format, version 1 (see ``docs/rpc.md``, "Resumable sessions").

One frame per channel message; the first byte is the kind; integers are QUIC
varints; a session id is 16 bytes::

    OPEN     0x21  version:u8                    client: start a new session
    RESUME   0x22  version:u8  id[16]  received  client: reattach session ``id``
    WELCOME  0x23  id[16]  received  grace_ms    server: attached; replay after ``received``
    EXPIRED  0x24  id[16]                        server: no such session (grace passed)
    DATA     0x25  seq  payload...               one application message
    FIN      0x26  seq                           end of the sender's stream (takes a seq)
    ACK      0x27  received                      every seq up to ``received`` arrived
    PING     0x28  token
    PONG     0x29  token

``received`` is the highest sequence number delivered in order (0: none);
sequence numbers start at 1 on each side of a session.

Rules of this file: :func:`decode` raises only
:class:`~netweave.errors.DecodeError` (``layer="resume"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from ..errors import DecodeError
from ._varint import decode_varint, encode_varint

__all__ = [
    "Ack",
    "Data",
    "Expired",
    "Fin",
    "Open",
    "ResumeFrame",
    "Resume",
    "SessionPing",
    "SessionPong",
    "Welcome",
    "decode",
    "encode",
]

VERSION: Final = 1
ID_SIZE: Final = 16


@final
@dataclass(frozen=True, slots=True)
class Open:
    version: int = VERSION


@final
@dataclass(frozen=True, slots=True)
class Resume:
    session_id: bytes
    received: int
    version: int = VERSION


@final
@dataclass(frozen=True, slots=True)
class Welcome:
    session_id: bytes
    received: int
    grace_ms: int


@final
@dataclass(frozen=True, slots=True)
class Expired:
    session_id: bytes


@final
@dataclass(frozen=True, slots=True)
class Data:
    seq: int
    payload: bytes


@final
@dataclass(frozen=True, slots=True)
class Fin:
    seq: int


@final
@dataclass(frozen=True, slots=True)
class Ack:
    received: int


@final
@dataclass(frozen=True, slots=True)
class SessionPing:
    token: int


@final
@dataclass(frozen=True, slots=True)
class SessionPong:
    token: int


ResumeFrame = Open | Resume | Welcome | Expired | Data | Fin | Ack | SessionPing | SessionPong


def encode(frame: ResumeFrame) -> bytes:
    """The bytes of one frame."""
    v = encode_varint
    if isinstance(frame, Data):
        return b"\x25" + v(frame.seq) + frame.payload
    if isinstance(frame, Ack):
        return b"\x27" + v(frame.received)
    if isinstance(frame, Fin):
        return b"\x26" + v(frame.seq)
    if isinstance(frame, SessionPing):
        return b"\x28" + v(frame.token)
    if isinstance(frame, SessionPong):
        return b"\x29" + v(frame.token)
    if isinstance(frame, Open):
        return bytes((0x21, frame.version))
    if isinstance(frame, Resume):
        _check_id(frame.session_id)
        return bytes((0x22, frame.version)) + frame.session_id + v(frame.received)
    if isinstance(frame, Welcome):
        _check_id(frame.session_id)
        return b"\x23" + frame.session_id + v(frame.received) + v(frame.grace_ms)
    _check_id(frame.session_id)
    return b"\x24" + frame.session_id


def _check_id(session_id: bytes) -> None:
    if len(session_id) != ID_SIZE:
        raise ValueError(f"a session id is {ID_SIZE} bytes, not {len(session_id)}")


def _int(data: bytes, pos: int) -> tuple[int, int]:
    return decode_varint(data, pos, layer="resume")


def _end(data: bytes, pos: int, kind: str) -> None:
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} unexpected bytes after {kind}", layer="resume")


def _session_id(data: bytes, pos: int) -> tuple[bytes, int]:
    end = pos + ID_SIZE
    if end > len(data):
        raise DecodeError("frame ends inside a session id", layer="resume")
    return data[pos:end], end


def decode(data: bytes) -> ResumeFrame:
    """The frame in ``data`` (one channel message). Raises only ``DecodeError``."""
    if not data:
        raise DecodeError("empty frame", layer="resume")
    kind = data[0]
    if kind == 0x25:
        seq, pos = _int(data, 1)
        return Data(seq, data[pos:])
    if kind in (0x26, 0x27, 0x28, 0x29):
        value, pos = _int(data, 1)
        _end(data, pos, "a control frame")
        if kind == 0x26:
            return Fin(value)
        if kind == 0x27:
            return Ack(value)
        return SessionPing(value) if kind == 0x28 else SessionPong(value)
    if kind == 0x21:
        if len(data) != 2:
            raise DecodeError("OPEN is exactly two bytes", layer="resume")
        return Open(data[1])
    if kind == 0x22:
        if len(data) < 2:
            raise DecodeError("frame ends inside RESUME", layer="resume")
        session_id, pos = _session_id(data, 2)
        received, pos = _int(data, pos)
        _end(data, pos, "RESUME")
        return Resume(session_id, received, data[1])
    if kind == 0x23:
        session_id, pos = _session_id(data, 1)
        received, pos = _int(data, pos)
        grace_ms, pos = _int(data, pos)
        _end(data, pos, "WELCOME")
        return Welcome(session_id, received, grace_ms)
    if kind == 0x24:
        session_id, pos = _session_id(data, 1)
        _end(data, pos, "EXPIRED")
        return Expired(session_id)
    raise DecodeError(f"unknown session frame kind {kind:#04x}", layer="resume")
