"""``netweave demo``: echo servers and clients over three transports, in one process.

:func:`run_demo` starts an echo server and a client on each leg of
:func:`default_legs` — TCP loopback with ``lp4,json``, UDP loopback with
``msgpack`` (``json`` when msgpack is not installed) and ``mem://demo`` with
``line,text`` — sends a few messages, checks that every reply equals what was
sent, and returns a :class:`DemoReport`. The command line only renders it.

Every number in the report comes from events recorded by a
:class:`~netweave.observe.RecordingObserver`: messages from ``MessageSent`` /
``MessageReceived``, bytes from the transports' ``BytesSent`` /
``BytesReceived`` (on both the client's and the server's side, which must
agree), and the first frame from a :class:`WireChunk` event emitted by a tap
layer at the very bottom of the client's stack, so it holds exactly the bytes
handed to the transport (for TCP, with its 4-byte length prefix).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, Self, final

from .client import connect
from .errors import MissingDependency, NetweaveError
from .layers import Layer, UnitKind
from .observe import (
    BytesReceived,
    BytesSent,
    Event,
    MessageReceived,
    MessageSent,
    Observer,
    RecordingObserver,
)
from .server import serve
from .stack import Stack
from .tools import echo

__all__ = [
    "DemoLeg",
    "DemoReport",
    "LegReport",
    "WireChunk",
    "default_legs",
    "run_demo",
]

#: How many bytes of each unit a :class:`WireChunk` keeps.
CHUNK_KEEP: Final = 64
#: The default bound on each leg (connect, every message, close).
LEG_TIMEOUT: Final = 5.0


@final
@dataclass(frozen=True, slots=True)
class WireChunk(Event):
    """Bytes handed to (``"sent"``) or received from (``"received"``) the transport.

    ``data`` holds at most the first :data:`CHUNK_KEEP` bytes; ``size`` is the
    full length of the unit.
    """

    direction: Literal["sent", "received"]
    data: bytes
    size: int


class _Tap(Layer[bytes, bytes]):
    """Passes units through unchanged, reporting each one as a :class:`WireChunk`."""

    def __init__(self, observer: Observer, source: str) -> None:
        self.name = "tap"
        self.observer = observer
        self._source = source

    def clone(self) -> Self:
        assert self.observer is not None
        return type(self)(self.observer, self._source)

    def encode(self, unit: bytes) -> bytes:
        if self.observer is not None:
            self.observer(WireChunk(self._source, "sent", bytes(unit[:CHUNK_KEEP]), len(unit)))
        return unit

    def decode(self, data: bytes) -> list[bytes]:
        if self.observer is not None:
            self.observer(WireChunk(self._source, "received", bytes(data[:CHUNK_KEEP]), len(data)))
        return [data]


@final
class _StreamTap(_Tap):
    lower_kind: ClassVar[UnitKind] = "stream"
    upper_kind: ClassVar[UnitKind] = "stream"


@final
class _FrameTap(_Tap):
    lower_kind: ClassVar[UnitKind] = "frame"
    upper_kind: ClassVar[UnitKind] = "frame"


def _tapped(stack: Stack, observer: Observer, source: str) -> Stack:
    """``stack`` with a tap layer below its bottom layer (same spec text)."""
    tap: _Tap = (
        _StreamTap(observer, source)
        if stack.lower_kind == "stream"
        else _FrameTap(observer, source)
    )
    return Stack([tap, *stack.layers], spec=stack.spec)


@final
@dataclass(frozen=True, slots=True)
class DemoLeg:
    """One transport to demonstrate: where the server listens, its stack, what to send."""

    url: str
    stack: str
    messages: tuple[Any, ...]

    @property
    def transport(self) -> str:
        """The URL scheme."""
        return self.url.split("://", 1)[0]


def default_legs() -> list[DemoLeg]:
    """TCP with ``lp4,json``, UDP with ``msgpack`` (or ``json``), memory with ``line,text``."""
    try:
        Stack.parse("msgpack")
        udp_stack = "msgpack"
    except MissingDependency:
        udp_stack = "json"
    return [
        DemoLeg(
            "tcp://127.0.0.1:0",
            "lp4,json",
            ({"hello": "tcp"}, [1, 2, 3], "three messages"),
        ),
        DemoLeg(
            "udp://127.0.0.1:0",
            udp_stack,
            ({"hello": "udp", "n": 2}, [True, None, 1.5], "datagrams"),
        ),
        DemoLeg("mem://demo", "line,text", ("hello memory", "second line", "last")),
    ]


@final
@dataclass(frozen=True, slots=True)
class LegReport:
    """What happened on one leg, all counts taken from recorded events."""

    transport: str
    url: str
    stack: str
    messages: tuple[Any, ...]
    replies: tuple[Any, ...]
    messages_sent: int
    messages_received: int
    #: Bytes the client's transport sent / received.
    bytes_sent: int
    bytes_received: int
    #: The same, seen by the server's transport.
    server_bytes_sent: int
    server_bytes_received: int
    #: The first unit the client handed to its transport (at most CHUNK_KEEP bytes).
    first_frame: bytes
    first_frame_size: int
    error: str | None = None

    @property
    def problems(self) -> list[str]:
        """Why this leg failed; empty when it succeeded."""
        if self.error is not None:
            return [self.error]  # the counts below would only restate it
        out: list[str] = []
        count = len(self.messages)
        if self.replies != self.messages:
            out.append(
                f"replies {list(self.replies)!r} differ from messages {list(self.messages)!r}"
            )
        if self.messages_sent != count or self.messages_received != count:
            out.append(
                f"observer saw {self.messages_sent} messages sent and "
                f"{self.messages_received} received, expected {count} each"
            )
        if self.bytes_sent == 0 or self.bytes_received == 0:
            out.append("observer saw no bytes on the wire")
        if (self.bytes_sent, self.bytes_received) != (
            self.server_bytes_received,
            self.server_bytes_sent,
        ):
            out.append(
                f"client sent {self.bytes_sent} and received {self.bytes_received} bytes, "
                f"but the server received {self.server_bytes_received} "
                f"and sent {self.server_bytes_sent}"
            )
        if not self.first_frame:
            out.append("no frame was seen leaving the client")
        return out

    @property
    def ok(self) -> bool:
        """True when every reply matched and the counts of both sides agree."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``first_frame`` as hex)."""
        return {
            "transport": self.transport,
            "url": self.url,
            "stack": self.stack,
            "messages": list(self.messages),
            "replies": list(self.replies),
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "server_bytes_sent": self.server_bytes_sent,
            "server_bytes_received": self.server_bytes_received,
            "first_frame_hex": self.first_frame.hex(),
            "first_frame_size": self.first_frame_size,
            "ok": self.ok,
            "problems": self.problems,
        }


@final
@dataclass(frozen=True, slots=True)
class DemoReport:
    """Every leg's report; ``ok`` when every leg succeeded."""

    legs: tuple[LegReport, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when there was at least one leg and every leg succeeded."""
        return bool(self.legs) and all(leg.ok for leg in self.legs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"ok": self.ok, "legs": [leg.to_dict() for leg in self.legs]}


async def run_demo(
    legs: Sequence[DemoLeg] | None = None, *, timeout: float = LEG_TIMEOUT
) -> DemoReport:
    """Run each leg in turn (``default_legs()`` when ``None``) and report.

    A leg that fails — a netweave error, or not finishing within ``timeout``
    seconds — is reported with its ``error`` rather than raised, so one broken
    transport does not hide the others.
    """
    chosen = default_legs() if legs is None else list(legs)
    return DemoReport(tuple([await _run_leg(leg, timeout) for leg in chosen]))


async def _run_leg(leg: DemoLeg, timeout: float) -> LegReport:
    client = RecordingObserver(limit=10_000)
    server_side = RecordingObserver(limit=10_000)
    replies: list[Any] = []
    url = leg.url
    error: str | None = None
    try:
        async with asyncio.timeout(timeout):
            template = Stack.parse(leg.stack)
            client_stack = _tapped(template, client, f"demo client {leg.transport}")
            async with serve(leg.url, template, echo, observer=server_side) as server:
                url = server.url
                channel = await connect(url, client_stack, observer=client)
                async with channel:
                    for message in leg.messages:
                        await channel.send(message)
                        replies.append(await channel.receive())
    except NetweaveError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except TimeoutError:
        error = f"did not finish within {timeout:g} s"
    sent_chunks = [c for c in client.of_type(WireChunk) if c.direction == "sent"]
    first = sent_chunks[0] if sent_chunks else None
    return LegReport(
        transport=leg.transport,
        url=url,
        stack=leg.stack,
        messages=leg.messages,
        replies=tuple(replies),
        messages_sent=len(client.of_type(MessageSent)),
        messages_received=sum(e.count for e in client.of_type(MessageReceived)),
        bytes_sent=sum(e.count for e in client.of_type(BytesSent)),
        bytes_received=sum(e.count for e in client.of_type(BytesReceived)),
        server_bytes_sent=sum(e.count for e in server_side.of_type(BytesSent)),
        server_bytes_received=sum(e.count for e in server_side.of_type(BytesReceived)),
        first_frame=b"" if first is None else first.data,
        first_frame_size=0 if first is None else first.size,
        error=error,
    )
