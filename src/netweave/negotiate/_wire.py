"""The negotiation wire format: messages, their envelope, and the fields of a hello.

Documented byte by byte in ``docs/negotiation.md``; golden-byte tested. Rules of
this file:

* The envelope is frozen for every wire version, past and future: magic
  ``NWHS``, the wire version (one byte), the message type (one byte), the body
  length (two bytes, big endian, at most :data:`MAX_BODY`), the body. So any
  peer can skip a message in a version it does not know, and answer it.
* ``REFUSE`` and ``RETRY`` bodies are frozen too; ``HELLO`` and ``AGREE``
  bodies are fields ``tag (1 byte), length (2 bytes), value`` in ascending tag
  order, each tag at most once. A tag unknown to the message's wire version is
  skipped (so a version may grow fields without breaking its readers).
* Decoding raises only :class:`~netweave.errors.DecodeError` or
  ``FrameTooLarge`` with ``layer="negotiate"``; nothing is buffered beyond one
  envelope header plus :data:`MAX_BODY` bytes.
* Everything here is pure and deterministic, and uses the standard library only.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ..errors import DecodeError, FrameTooLarge, UsageError

__all__ = [
    "FIELDS",
    "MAGIC",
    "MAX_BODY",
    "SUPPORTED_WIRE_VERSIONS",
    "WHAT_CODES",
    "Hello",
    "Message",
    "MessageType",
    "decode_hello",
    "decode_refuse",
    "decode_retry",
    "encode_hello",
    "encode_refuse",
    "encode_retry",
    "read_message",
    "valid_name",
]

#: The first four bytes of every negotiation message.
MAGIC: Final = b"NWHS"
#: Hello wire versions this implementation speaks, oldest first.
SUPPORTED_WIRE_VERSIONS: Final = (1, 2)
#: The largest message body accepted (hellos are small).
MAX_BODY: Final = 8192
#: The largest REFUSE reason, in bytes of UTF-8.
MAX_REASON: Final = 1024

_HEADER: Final = struct.Struct(">4sBBH")
_LAYER: Final = "negotiate"
_NAME: Final = re.compile(r"[a-z][a-z0-9_+.-]{0,63}")


class MessageType(IntEnum):
    """The message types: the second byte after the magic's version byte."""

    HELLO = 1  #: client to server: what the client offers
    AGREE = 2  #: server to client: what was agreed
    REFUSE = 3  #: either way: why negotiation failed (then the sender closes)
    RETRY = 4  #: server to client: "I do not speak that wire version; these I do"


class Tag(IntEnum):
    """Field tags of HELLO and AGREE bodies (``docs/negotiation.md`` has the table)."""

    PROTOCOL = 0x01
    VERSIONS = 0x02
    FRAMINGS = 0x03
    CODECS = 0x04
    COMPRESSION = 0x05
    MAX_FRAME = 0x06
    LEVELS = 0x07
    HEARTBEAT = 0x08
    FEATURES = 0x09
    REQUIRED = 0x0A
    TLS = 0x0B


#: The field tags each wire version defines.
FIELDS: Final[dict[int, frozenset[Tag]]] = {
    1: frozenset(Tag(t) for t in range(0x01, 0x07)),
    2: frozenset(Tag(t) for t in range(0x01, 0x0C)),
}

#: REFUSE reason codes and the ``NegotiationFailed.what`` each stands for.
WHAT_CODES: Final[dict[int, str]] = {
    1: "wire",
    2: "protocol",
    3: "version",
    4: "framing",
    5: "codec",
    6: "compression",
    7: "max_frame",
    8: "feature",
    9: "tls",
    10: "malformed",
}
_CODE_OF: Final = {what: code for code, what in WHAT_CODES.items()}


def valid_name(name: str) -> bool:
    """Whether ``name`` may be sent as a layer or feature name: lowercase ASCII,
    starting with a letter, at most 64 characters of ``a-z 0-9 _ + . -``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Hello:
    """The content of a HELLO (lists in preference order) or an AGREE (one choice each).

    Fields after ``max_frame`` exist from wire version 2; in a version-1
    message they keep their defaults. ``tls`` is ``0`` never / ``1`` optional /
    ``2`` required in a HELLO, and ``0`` off / ``1`` on in an AGREE.
    """

    protocol: str
    versions: tuple[int, ...]
    framings: tuple[str, ...]
    codecs: tuple[str, ...]
    compression: tuple[str, ...]
    max_frame: int
    levels: tuple[tuple[str, int], ...] = ()
    heartbeat_ms: int = 0
    features: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    tls: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    """One envelope: wire ``version``, message ``type`` and raw ``body``."""

    version: int
    type: MessageType
    body: bytes


# ---------------------------------------------------------------------------
# Envelope
# ---------------------------------------------------------------------------


def _envelope(version: int, kind: MessageType, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise UsageError(
            f"negotiation message body of {len(body)} bytes is over the maximum of {MAX_BODY}; "
            "offer fewer or shorter names"
        )
    return _HEADER.pack(MAGIC, version, kind, len(body)) + body


def read_message(buffer: bytes | bytearray) -> tuple[Message, int] | None:
    """Parse the message at the start of ``buffer``: ``(message, bytes used)``, or
    ``None`` while it is incomplete. ``DecodeError`` for a wrong magic or an unknown
    message type, ``FrameTooLarge`` for a body over :data:`MAX_BODY` (both known
    from the 8-byte header, before the body is buffered)."""
    have = len(buffer)
    if have < 4:
        if bytes(buffer[:have]) != MAGIC[:have]:
            raise _not_ours(bytes(buffer[:have]))
        return None
    if bytes(buffer[:4]) != MAGIC:
        raise _not_ours(bytes(buffer[:4]))
    if have < _HEADER.size:
        return None
    _, version, kind, length = _HEADER.unpack_from(buffer)
    if kind not in MessageType._value2member_map_:
        raise DecodeError(f"unknown negotiation message type {kind}", layer=_LAYER)
    if length > MAX_BODY:
        raise FrameTooLarge(layer=_LAYER, size=length, limit=MAX_BODY)
    end = _HEADER.size + length
    if have < end:
        return None
    return Message(version, MessageType(kind), bytes(buffer[_HEADER.size : end])), end


def _not_ours(start: bytes) -> DecodeError:
    return DecodeError(
        f"the peer does not speak netweave negotiation: expected the magic {MAGIC!r}, "
        f"got {start!r}",
        layer=_LAYER,
    )


# ---------------------------------------------------------------------------
# REFUSE and RETRY (frozen bodies)
# ---------------------------------------------------------------------------


def encode_refuse(version: int, what: str, reason: str) -> bytes:
    """A REFUSE: the reason code of ``what``, then ``reason`` in UTF-8 (cut to 1 KiB)."""
    text = reason.encode("utf-8")[:MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
    return _envelope(version, MessageType.REFUSE, bytes([_CODE_OF.get(what, 0)]) + text)


def decode_refuse(body: bytes) -> tuple[str, str]:
    """``(what, reason)`` from a REFUSE body; an unknown code gives ``what="unknown"``."""
    if not body:
        raise DecodeError("empty REFUSE: it must hold a reason code", layer=_LAYER)
    try:
        reason = body[1:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"REFUSE reason is not UTF-8: {exc}", layer=_LAYER) from exc
    if len(body) - 1 > MAX_REASON or not reason.isprintable():
        raise DecodeError("REFUSE reason is too long or holds control characters", layer=_LAYER)
    return WHAT_CODES.get(body[0], "unknown"), reason


def encode_retry(version: int, versions: tuple[int, ...]) -> bytes:
    """A RETRY listing the wire ``versions`` the sender speaks (one byte each)."""
    return _envelope(version, MessageType.RETRY, bytes(versions))


def decode_retry(body: bytes) -> tuple[int, ...]:
    """The wire versions listed by a RETRY body (non-empty, no zero, no repeats)."""
    versions = tuple(body)
    if not versions or 0 in versions or len(set(versions)) != len(versions):
        raise DecodeError(
            f"RETRY must list distinct wire versions from 1 to 255, got {body.hex()}",
            layer=_LAYER,
        )
    return versions


# ---------------------------------------------------------------------------
# HELLO and AGREE bodies
# ---------------------------------------------------------------------------


def _names(values: tuple[str, ...]) -> bytes:
    out = bytearray()
    for value in values:
        raw = value.encode("ascii")
        out.append(len(raw))
        out += raw
    return bytes(out)


def _field(tag: Tag, value: bytes) -> bytes:
    return struct.pack(">BH", tag, len(value)) + value


def encode_hello(hello: Hello, version: int, kind: MessageType = MessageType.HELLO) -> bytes:
    """A HELLO (or, with ``kind=AGREE``, an AGREE) in wire ``version``.

    Fields the version does not define must hold their defaults (``UsageError``
    otherwise: project the offer to the version first). Empty version-2 lists
    and zero values are left out.
    """
    fields = FIELDS.get(version)
    if fields is None:
        raise UsageError(f"cannot encode hello wire version {version}")
    optional = {
        Tag.LEVELS: hello.levels,
        Tag.HEARTBEAT: hello.heartbeat_ms,
        Tag.FEATURES: hello.features,
        Tag.REQUIRED: hello.required,
        Tag.TLS: hello.tls,
    }
    for tag, value in optional.items():
        if value and tag not in fields:
            raise UsageError(f"hello wire version {version} has no field {tag.name.lower()}")
    protocol = hello.protocol.encode("utf-8")
    body = [
        _field(Tag.PROTOCOL, protocol),
        _field(Tag.VERSIONS, struct.pack(f">{len(hello.versions)}H", *hello.versions)),
        _field(Tag.FRAMINGS, _names(hello.framings)),
        _field(Tag.CODECS, _names(hello.codecs)),
        _field(Tag.COMPRESSION, _names(hello.compression)),
        _field(Tag.MAX_FRAME, struct.pack(">I", hello.max_frame)),
    ]
    if hello.levels:
        levels = b"".join(
            _names((name,)) + struct.pack(">b", level) for name, level in hello.levels
        )
        body.append(_field(Tag.LEVELS, levels))
    if hello.heartbeat_ms:
        body.append(_field(Tag.HEARTBEAT, struct.pack(">I", hello.heartbeat_ms)))
    if hello.features:
        body.append(_field(Tag.FEATURES, _names(hello.features)))
    if hello.required:
        body.append(_field(Tag.REQUIRED, _names(hello.required)))
    if hello.tls:
        body.append(_field(Tag.TLS, bytes([hello.tls])))
    return _envelope(version, kind, b"".join(body))


def _bad(message: str) -> DecodeError:
    return DecodeError(message, layer=_LAYER)


def _decode_names(tag: Tag, value: bytes, *, allow_empty: bool) -> tuple[str, ...]:
    names: list[str] = []
    pos = 0
    while pos < len(value):
        size = value[pos]
        raw = value[pos + 1 : pos + 1 + size]
        if len(raw) != size:
            raise _bad(f"field {tag.name.lower()}: a name runs past the end of the field")
        name = raw.decode("ascii", "replace")
        if not valid_name(name):
            raise _bad(f"field {tag.name.lower()}: {raw!r} is not a valid name")
        names.append(name)
        pos += 1 + size
    if not names and not allow_empty:
        raise _bad(f"field {tag.name.lower()} is empty")
    if len(set(names)) != len(names):
        raise _bad(f"field {tag.name.lower()} repeats a name")
    return tuple(names)


def _decode_u32(tag: Tag, value: bytes) -> int:
    if len(value) != 4:
        raise _bad(f"field {tag.name.lower()} must be 4 bytes, not {len(value)}")
    number: int = struct.unpack(">I", value)[0]
    return number


def _decode_levels(value: bytes) -> tuple[tuple[str, int], ...]:
    levels: list[tuple[str, int]] = []
    pos = 0
    while pos < len(value):
        size = value[pos]
        end = pos + 1 + size
        if end + 1 > len(value):
            raise _bad("field levels: an entry runs past the end of the field")
        (name,) = _decode_names(Tag.LEVELS, value[pos:end], allow_empty=False)
        levels.append((name, struct.unpack(">b", value[end : end + 1])[0]))
        pos = end + 1
    if len({name for name, _ in levels}) != len(levels):
        raise _bad("field levels names an algorithm twice")
    return tuple(levels)


def decode_hello(version: int, body: bytes, kind: MessageType = MessageType.HELLO) -> Hello:
    """The :class:`Hello` in a HELLO or AGREE ``body`` of wire ``version``.

    ``DecodeError`` for a malformed body: fields out of order or repeated, a
    field running past the body, a missing required field, bad names or
    values. An AGREE must hold exactly one version, framing, codec and
    compression, and no required-features field.
    """
    fields = FIELDS.get(version)
    if fields is None:
        raise _bad(f"cannot decode hello wire version {version}")
    values: dict[Tag, bytes] = {}
    pos = 0
    last = 0
    while pos < len(body):
        if len(body) - pos < 3:
            raise _bad("a field header runs past the end of the body")
        tag, length = struct.unpack_from(">BH", body, pos)
        value = body[pos + 3 : pos + 3 + length]
        if len(value) != length:
            raise _bad(f"field {tag} runs past the end of the body")
        if tag <= last:
            raise _bad(f"field {tag} is out of order or repeated (fields go in ascending order)")
        last = tag
        pos += 3 + length
        if tag in fields:
            values[Tag(tag)] = value
    for required in (Tag.PROTOCOL, Tag.VERSIONS, Tag.FRAMINGS, Tag.CODECS, Tag.COMPRESSION):
        if required not in values:
            raise _bad(f"the {kind.name} has no {required.name.lower()} field")
    if Tag.MAX_FRAME not in values:
        raise _bad(f"the {kind.name} has no max_frame field")
    try:
        protocol = values[Tag.PROTOCOL].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"protocol name is not UTF-8: {exc}") from exc
    if not protocol or len(values[Tag.PROTOCOL]) > 255 or not protocol.isprintable():
        raise _bad("protocol name must be 1 to 255 bytes of printable UTF-8")
    raw_versions = values[Tag.VERSIONS]
    if not raw_versions or len(raw_versions) % 2:
        raise _bad("field versions must hold one or more 2-byte numbers")
    versions = struct.unpack(f">{len(raw_versions) // 2}H", raw_versions)
    if len(set(versions)) != len(versions):
        raise _bad("field versions repeats a version")
    max_frame = _decode_u32(Tag.MAX_FRAME, values[Tag.MAX_FRAME])
    if max_frame == 0:
        raise _bad("max_frame must be at least 1")
    tls = 0
    if Tag.TLS in values:
        if len(values[Tag.TLS]) != 1 or values[Tag.TLS][0] > (
            1 if kind == MessageType.AGREE else 2
        ):
            raise _bad(f"field tls holds {values[Tag.TLS].hex()}, not a valid mode")
        tls = values[Tag.TLS][0]
    hello = Hello(
        protocol=protocol,
        versions=versions,
        framings=_decode_names(Tag.FRAMINGS, values[Tag.FRAMINGS], allow_empty=False),
        codecs=_decode_names(Tag.CODECS, values[Tag.CODECS], allow_empty=False),
        compression=_decode_names(Tag.COMPRESSION, values[Tag.COMPRESSION], allow_empty=False),
        max_frame=max_frame,
        levels=_decode_levels(values.get(Tag.LEVELS, b"")),
        heartbeat_ms=_decode_u32(Tag.HEARTBEAT, values[Tag.HEARTBEAT])
        if Tag.HEARTBEAT in values
        else 0,
        features=_decode_names(Tag.FEATURES, values.get(Tag.FEATURES, b""), allow_empty=True),
        required=_decode_names(Tag.REQUIRED, values.get(Tag.REQUIRED, b""), allow_empty=True),
        tls=tls,
    )
    if kind == MessageType.AGREE:
        _check_agree_shape(hello)
    return hello


def _check_agree_shape(hello: Hello) -> None:
    for what, chosen in (
        ("versions", hello.versions),
        ("framings", hello.framings),
        ("codecs", hello.codecs),
        ("compression", hello.compression),
    ):
        if len(chosen) != 1:
            raise _bad(f"an AGREE must choose exactly one of {what}, not {len(chosen)}")
    if hello.required:
        raise _bad("an AGREE has no required-features field")
    if len(hello.levels) > 1 or any(name != hello.compression[0] for name, _ in hello.levels):
        raise _bad("an AGREE may give a level only for the chosen compression")
