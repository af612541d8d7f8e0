"""How command-line arguments become messages, and replies become lines of text.

The mapping is keyed by the *top* layer of the stack — the thing the channel
hands messages to — and is this small table:

==================================  ===========  =================================
top layer                           format       argument -> message -> printed line
==================================  ===========  =================================
``raw`` or no codec (``lp4`` alone)  ``bytes``    UTF-8 bytes of the argument;
                                                 replies decoded as UTF-8, other
                                                 bytes escaped (``\\xff``)
``text``                            ``text``     the argument as ``str``; replies
                                                 printed as they are
``json``, ``msgpack``, ``cbor``     ``json``     the argument parsed as JSON;
                                                 replies printed as compact JSON
any other codec (a plug-in)         ``json``     as above
==================================  ===========  =================================

A JSON argument that does not parse is a ``UsageError`` naming the argument and
suggesting how to quote it. In JSON output, ``bytes`` inside a reply are shown as
text with non-UTF-8 bytes escaped, and values JSON has no form for (dates, CBOR
tags) as their ``str()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

from ..errors import UsageError

if TYPE_CHECKING:
    from ..stack import Stack

__all__ = ["CODEC_FORMATS", "MessageFormat", "check_encodable", "message_format"]


@final
@dataclass(frozen=True, slots=True)
class MessageFormat:
    """One row of the mapping: how to read arguments and print replies."""

    name: str
    #: ``parse(argument, position)`` -> the message to send (position counts from 1).
    parse: Callable[[str, int], Any]
    #: ``render(reply)`` -> the text to print for one reply.
    render: Callable[[Any], str]


def _bytes_text(data: bytes | bytearray | memoryview) -> str:
    return bytes(data).decode("utf-8", "backslashreplace")


def _parse_bytes(argument: str, position: int) -> bytes:
    return argument.encode("utf-8", "surrogateescape")


def _render_bytes(reply: Any) -> str:
    if isinstance(reply, bytes | bytearray | memoryview):
        return _bytes_text(reply)
    return str(reply)


def _parse_text(argument: str, position: int) -> str:
    return argument


def _render_text(reply: Any) -> str:
    return reply if isinstance(reply, str) else str(reply)


def _parse_json(argument: str, position: int) -> Any:
    try:
        return json.loads(argument)
    except json.JSONDecodeError as exc:
        shown = argument if len(argument) <= 40 else argument[:37] + "..."
        raise UsageError(
            f"message {position} ({shown!r}) is not valid JSON ({exc.msg} at column "
            f"{exc.colno}); quote it for the shell, e.g. '{{\"key\": 1}}', and write a "
            f"string as '\"text\"'"
        ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(value)
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def _render_json(reply: Any) -> str:
    return json.dumps(reply, separators=(",", ":"), ensure_ascii=False, default=_json_default)


BYTES: Final = MessageFormat("bytes", _parse_bytes, _render_bytes)
TEXT: Final = MessageFormat("text", _parse_text, _render_text)
JSON: Final = MessageFormat("json", _parse_json, _render_json)

#: Codec name (as in a stack spec) -> format. Codecs not listed here use ``JSON``.
CODEC_FORMATS: Final[Mapping[str, MessageFormat]] = {
    "raw": BYTES,
    "text": TEXT,
    "json": JSON,
    "msgpack": JSON,
    "cbor": JSON,
}


def message_format(stack: Stack) -> MessageFormat:
    """The format for messages of ``stack``, chosen by its top layer (see the table).

    A stack whose top layer yields frames (``lp4`` alone, or a compression layer
    on top) carries bytes, so it uses the ``bytes`` format.
    """
    top = stack.layers[-1]
    if top.upper_kind != "object":
        return BYTES
    return CODEC_FORMATS.get(top.name, JSON)


def check_encodable(stack: Stack, messages: Sequence[Any]) -> None:
    """Raise the top layer's ``UsageError`` now for a message it cannot encode.

    Runs the top layer alone, on a fresh clone, so nothing is sent and no
    stateful layer below is touched; the error names the message's position.
    """
    top = stack.layers[-1].clone()
    for position, message in enumerate(messages, start=1):
        try:
            top.encode(message)
        except UsageError as exc:
            raise UsageError(f"message {position}: {exc}") from exc
