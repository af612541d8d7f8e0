"""``netweave demo``: echo servers and clients over several transports, in one process.

:func:`run_demo` starts an echo server and a client on each leg of
:func:`default_legs` — TCP loopback with ``lp4,json``, UDP loopback with
``msgpack`` (``json`` when msgpack is not installed), ``mem://demo`` with
``line,text``, and a *negotiated* leg over TCP loopback: the client and the
server negotiate the protocol version, the stack (compression, codec), the
maximum frame, feature flags and a TLS upgrade, with a certificate made at run
time by ``trustme`` — then send a few messages, check that every reply equals
what was sent, and return a :class:`DemoReport`. The command line only renders
it. Without trustme the negotiated leg is left out and the report says so in
one line of :attr:`DemoReport.notes`.

Every number in the report comes from events recorded by a
:class:`~netweave.observe.RecordingObserver`: messages from ``MessageSent`` /
``MessageReceived``, bytes from the transports' ``BytesSent`` /
``BytesReceived`` (on both the client's and the server's side, which must
agree), and the first frame from a :class:`WireChunk` event emitted by a tap
layer at the very bottom of the client's stack, so it holds exactly the bytes
handed to the transport (for TCP, with its 4-byte length prefix). On the
negotiated leg that tap shows the frame before encryption, and a second tap
under TLS shows the same frame on the wire, encrypted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, Self, final

from . import negotiate
from .client import connect
from .endpoints import parse_endpoint
from .errors import EndOfStream, MissingDependency, NetweaveError
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
from .stack import Stack, StreamChannel
from .tools import echo
from .transports import StreamConnection, StreamTransport

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
#: What the negotiated leg needs and how to get it.
TRUSTME_MISSING: Final = (
    "the negotiated, compressed, encrypted leg needs trustme (it makes the demo's "
    "certificate): pip install 'netweave[demo]'"
)


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
class _WireTap(StreamConnection):
    """A connection passed through unchanged, reporting what crosses it as
    :class:`WireChunk` events whose source ends in the current ``phase``."""

    def __init__(self, inner: StreamConnection, observer: Observer, source: str) -> None:
        self._inner = inner
        self._observer = observer
        self._source = source
        #: ``"handshake"`` (hello and TLS handshake) until set to ``"data"``.
        self.phase = "handshake"

    def _report(self, direction: Literal["sent", "received"], data: bytes) -> None:
        if data:
            chunk = bytes(data[:CHUNK_KEEP])
            self._observer(WireChunk(f"{self._source} {self.phase}", direction, chunk, len(data)))

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self._report("sent", bytes(data))
        await self._inner.send(data)

    async def receive(self, max_bytes: int | None = None) -> bytes:
        data = await self._inner.receive(max_bytes)
        self._report("received", data)
        return data

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def close(self) -> None:
        await self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    @property
    def local_address(self) -> str:
        return self._inner.local_address

    @property
    def remote_address(self) -> str:
        return self._inner.remote_address

    @property
    def is_closing(self) -> bool:
        return self._inner.is_closing

    def extra(self, name: str, default: Any = None) -> Any:
        return self._inner.extra(name, default)


@final
@dataclass(frozen=True, slots=True)
class DemoLeg:
    """One transport to demonstrate: where the server listens, its stack, what to send.

    A negotiated leg names its ``protocol``: ``stack`` is then the client's offer
    and ``server_stack`` the server's policy (stack specs whose items list
    alternatives, best first), and the two negotiate a TLS upgrade.
    """

    url: str
    stack: str
    messages: tuple[Any, ...]
    protocol: str | None = None
    server_stack: str | None = None

    @property
    def transport(self) -> str:
        """The URL scheme."""
        return self.url.split("://", 1)[0]

    @property
    def name(self) -> str:
        """``negotiated`` for a negotiated leg, else the URL scheme."""
        return "negotiated" if self.protocol is not None else self.transport


def _installed(spec: str) -> bool:
    try:
        Stack.parse(spec)
    except MissingDependency:
        return False
    return True


def _trustme_installed() -> bool:
    try:
        importlib.import_module("trustme")
    except ImportError:
        return False
    return True


def negotiated_leg() -> DemoLeg:
    """The negotiated leg: TCP loopback, offers built from the installed codecs and
    compressors (the server prefers zstd, then lz4, then zlib; msgpack, then json)."""
    compressors = [name for name in ("zstd", "lz4") if _installed(name)] + ["zlib"]
    codecs = ["msgpack", "json"] if _installed("msgpack") else ["json"]
    # The client lists them the other way round: the server's preferences win.
    return DemoLeg(
        "tcp://127.0.0.1:0",
        f"lp4,{'|'.join(reversed(compressors))}|none,{'|'.join(reversed(codecs))}",
        (
            {"hello": "negotiated", "note": "compressed, then encrypted " * 12},
            [1, 2, 3],
            "three messages",
        ),
        protocol="demo",
        server_stack=f"lp4,{'|'.join(compressors)}|none,{'|'.join(codecs)}",
    )


def default_legs() -> list[DemoLeg]:
    """TCP with ``lp4,json``, UDP with ``msgpack`` (or ``json``), memory with ``line,text``,
    and :func:`negotiated_leg` when trustme is installed."""
    udp_stack = "msgpack" if _installed("msgpack") else "json"
    legs = [
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
    if _trustme_installed():
        legs.append(negotiated_leg())
    return legs


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
    #: ``negotiated`` for the negotiated leg, else the transport.
    name: str = ""
    #: Negotiated leg: what both sides agreed (``Agreement`` fields), and the offers.
    agreement: dict[str, Any] | None = None
    offers: dict[str, str] | None = None
    #: Negotiated leg: the TLS version, cipher suite and the server's certificate names.
    tls: dict[str, Any] | None = None
    #: Negotiated leg: the first frame as the agreed stack made it, before encryption
    #: (``first_frame`` is then the first TLS record on the wire).
    plain_frame: bytes = b""
    plain_frame_size: int = 0
    #: Negotiated leg: bytes of the hello and TLS handshake, client->server and back.
    handshake_bytes: tuple[int, int] = (0, 0)

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
        if self.agreement is not None:
            if not self.agreement.get("tls") or not self.tls:
                out.append("TLS was not agreed and set up")
            if not self.plain_frame or self.plain_frame == self.first_frame:
                out.append("the frame on the wire is not the encrypted plaintext frame")
        return out

    @property
    def ok(self) -> bool:
        """True when every reply matched and the counts of both sides agree."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``first_frame`` as hex)."""
        extra: dict[str, Any] = {}
        if self.agreement is not None:
            extra = {
                "agreement": self.agreement,
                "offers": self.offers,
                "tls": self.tls,
                "plain_frame_hex": self.plain_frame.hex(),
                "plain_frame_size": self.plain_frame_size,
                "handshake_bytes": list(self.handshake_bytes),
            }
        return {
            "name": self.name or self.transport,
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
            **extra,
        }


@final
@dataclass(frozen=True, slots=True)
class DemoReport:
    """Every leg's report; ``ok`` when every leg succeeded."""

    legs: tuple[LegReport, ...] = field(default_factory=tuple)
    #: One line each about legs that were left out (and how to get them).
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there was at least one leg and every leg succeeded."""
        return bool(self.legs) and all(leg.ok for leg in self.legs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.ok,
            "legs": [leg.to_dict() for leg in self.legs],
            "notes": list(self.notes),
        }


async def run_demo(
    legs: Sequence[DemoLeg] | None = None, *, timeout: float = LEG_TIMEOUT
) -> DemoReport:
    """Run each leg in turn (``default_legs()`` when ``None``) and report.

    A leg that fails — a netweave error, or not finishing within ``timeout``
    seconds — is reported with its ``error`` rather than raised, so one broken
    transport does not hide the others. With the default legs and no trustme,
    :attr:`DemoReport.notes` says that the negotiated leg was left out and how
    to get it.
    """
    notes: tuple[str, ...] = ()
    if legs is None:
        chosen = default_legs()
        if not any(leg.protocol for leg in chosen):
            notes = (TRUSTME_MISSING,)
    else:
        chosen = list(legs)
    reports = []
    for leg in chosen:
        run = _run_leg if leg.protocol is None else _run_negotiated_leg
        reports.append(await run(leg, timeout))
    return DemoReport(tuple(reports), notes)


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
        name=leg.name,
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


def _demo_tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Client and server TLS contexts for a CA made now by trustme: the server presents a
    certificate for 127.0.0.1 issued by it; the client trusts that CA alone."""
    try:
        trustme = importlib.import_module("trustme")
    except ImportError:
        raise MissingDependency("the demo's encrypted leg", "trustme", "demo") from None
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return client, server


def _agreement_dict(agreement: negotiate.Agreement) -> dict[str, Any]:
    fields = dataclasses.asdict(agreement)
    fields["features"] = sorted(agreement.features)
    return fields


def _tls_dict(channel: negotiate.NegotiatedChannel[Any]) -> dict[str, Any] | None:
    version = channel.connection.extra("tls_version")
    if not version:
        return None
    name, _protocol, bits = channel.connection.extra("cipher")
    cert = channel.peer_certificate or {}
    return {
        "version": version,
        "cipher": name,
        "bits": bits,
        "server_names": [value for _kind, value in cert.get("subjectAltName", ())],
    }


def _first(chunks: list[WireChunk], source: str) -> WireChunk | None:
    return next((c for c in chunks if c.source == source and c.direction == "sent"), None)


async def _run_negotiated_leg(leg: DemoLeg, timeout: float) -> LegReport:
    """Negotiate (with a TLS upgrade) over TCP loopback, then echo ``leg.messages``.

    The server's policy wants protocol version 2 or 1, a 64 KiB maximum frame,
    features ``receipts`` and ``typing``, and requires TLS; the client offers
    versions 1 and 2, feature ``receipts`` and TLS if the server wants it. At the
    end each side sends its ``close_notify`` and reads the other's, so both
    sides' byte counts cover the same bytes.
    """
    assert leg.protocol is not None
    assert leg.server_stack is not None
    client = RecordingObserver(limit=10_000)
    server_side = RecordingObserver(limit=10_000)
    source = f"demo client {leg.name}"
    replies: list[Any] = []
    url = leg.url
    error: str | None = None
    agreement: dict[str, Any] | None = None
    tls: dict[str, Any] | None = None
    stack = leg.stack
    try:
        async with asyncio.timeout(timeout):
            client_tls, server_tls = _demo_tls()
            policy = negotiate.offer_from_spec(
                leg.protocol,
                leg.server_stack,
                versions=[2, 1],
                max_frame=64 * 1024,
                features={"receipts", "typing"},
                tls="required",
            )
            offer = negotiate.offer_from_spec(
                leg.protocol, leg.stack, versions=[1, 2], features={"receipts"}, tls="optional"
            )
            async with negotiate.serve(
                leg.url, policy, echo, tls_context=server_tls, observer=server_side
            ) as server:
                url = server.url
                endpoint, transport = parse_endpoint(url)
                assert isinstance(transport, StreamTransport)
                wire = _WireTap(
                    await transport.connect(endpoint, observer=client), client, f"{source} wire"
                )
                negotiated = await negotiate.client(
                    wire, offer, tls_context=client_tls, server_hostname=endpoint.host
                )
                wire.phase = "data"
                agreed = negotiated.agreement
                agreement = _agreement_dict(agreed)
                tls = _tls_dict(negotiated)
                stack = f"{agreed.framing},{agreed.compression},{agreed.codec}"
                # The agreed stack on the agreed (encrypted) connection, with a tap below it.
                channel: StreamChannel[Any] = StreamChannel(
                    negotiated.connection,
                    _tapped(negotiated.stack.fresh(), client, f"{source} stack"),
                    observer=client,
                )
                async with channel:
                    for message in leg.messages:
                        await channel.send(message)
                        replies.append(await channel.receive())
                    await channel.send_eof()
                    try:
                        extra = await channel.receive()
                    except EndOfStream:
                        pass
                    else:
                        error = f"the server sent {extra!r} after the last reply"
    except NetweaveError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except TimeoutError:
        error = f"did not finish within {timeout:g} s"
    chunks = client.of_type(WireChunk)
    first = _first(chunks, f"{source} wire data")
    plain = _first(chunks, f"{source} stack")
    handshake = [c for c in chunks if c.source == f"{source} wire handshake"]
    return LegReport(
        name=leg.name,
        transport=leg.transport,
        url=url,
        stack=stack,
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
        agreement=agreement,
        offers={"client": leg.stack, "server": leg.server_stack},
        tls=tls,
        plain_frame=b"" if plain is None else plain.data,
        plain_frame_size=0 if plain is None else plain.size,
        handshake_bytes=(
            sum(c.size for c in handshake if c.direction == "sent"),
            sum(c.size for c in handshake if c.direction == "received"),
        ),
    )
