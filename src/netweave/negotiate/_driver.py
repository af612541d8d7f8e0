"""Running the handshake over a connection: :func:`client`, :func:`server`, and their
URL-level forms :func:`connect` and :func:`serve`.

Rules of this file:

* The driver only moves bytes between a connection and a sans-IO machine, and
  arms one timer: the whole negotiation (and the TLS upgrade, when agreed)
  must finish within ``handshake_timeout`` seconds of the running loop, or the
  connection is aborted and ``PeerUnresponsive`` raised.
* Everything checkable without the peer is checked before the first byte is
  sent: every name the offer lists must build (``InvalidStackSpec``,
  ``MissingDependency``), and TLS offers need a context (``UsageError``).
* On failure the REFUSE (if any) is flushed and the connection closed
  gracefully; then the error is raised: ``NegotiationFailed`` when the sides
  disagree (the same reason on both), ``DecodeError`` when the peer sent a
  malformed message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

from ..endpoints import parse_endpoint
from ..errors import (
    ConnectionBroken,
    InvalidStackSpec,
    NegotiationFailed,
    PeerUnresponsive,
    ProtocolError,
    UsageError,
)
from ..layers import Codec, FrameTransform, Framing
from ..registry import SpecItem, default_registry
from ..server import serve as _serve
from ..stack import Channel, Stack, StreamChannel
from ..transports import StreamConnection, StreamTransport, start_tls
from ._agree import NONE, Agreement, Offer
from ._machine import ClientHandshake, Handshake, ServerHandshake

if TYPE_CHECKING:
    from ..observe import Observer
    from ..registry import Registry
    from ..server import _Serving

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "NegotiatedChannel",
    "NegotiatedHandler",
    "build_stack",
    "client",
    "connect",
    "offer_from_spec",
    "serve",
    "server",
]

logger = logging.getLogger("netweave.negotiate")

T = TypeVar("T")

#: Seconds the whole negotiation (with a TLS upgrade) may take.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0


def _spec_text(item: SpecItem, overrides: dict[str, str]) -> str:
    params = {**item.params, **overrides}
    return ":".join([item.name, *(f"{key}={params[key]}" for key in sorted(params))])


def build_stack(
    offer: Offer,
    agreement: Agreement,
    *,
    registry: Registry | None = None,
    observer: Observer | None = None,
) -> Stack:
    """The stack an agreement calls for, with this side's local parameters:
    framing (``max`` = the agreed maximum), compression (agreed level, same
    maximum; left out when ``none``), codec."""
    framing = _spec_text(
        offer.item("framing", agreement.framing), {"max": str(agreement.max_frame)}
    )
    parts = [framing]
    if agreement.compression != NONE:
        overrides = {"max": str(agreement.max_frame)}
        if agreement.compression_level is not None:
            overrides["level"] = str(agreement.compression_level)
        parts.append(_spec_text(offer.item("compression", agreement.compression), overrides))
    parts.append(_spec_text(offer.item("codec", agreement.codec), {}))
    return Stack.parse(",".join(parts), registry=registry, observer=observer)


def offer_from_spec(
    protocol: str, spec: str, *, registry: Registry | None = None, **fields: Any
) -> Offer:
    """An :class:`Offer` written as a stack spec whose items may list alternatives,
    best first, separated by ``|``: ``"lp4,zstd:level=3|lz4|none,msgpack|json"``.

    Each alternative is sorted by what its layer is (framing, compression, or
    codec; ``none`` is "no compression"), so the spec reads like the stack it
    negotiates; ``fields`` are the other :class:`Offer` arguments
    (``versions``, ``features``, ``tls``...). Meant for command lines. Raises
    ``InvalidStackSpec`` for unknown names or a layer that fits none of the three
    places, ``MissingDependency`` for a missing extra.
    """
    reg = registry if registry is not None else default_registry()
    kinds: dict[str, list[str]] = {"framings": [], "compression": [], "codecs": []}
    for alternatives in spec.split(","):
        for raw in alternatives.split("|"):
            text = raw.strip()
            if text == NONE:
                kinds["compression"].append(NONE)
                continue
            (layer,) = reg.build_layers(text)
            if isinstance(layer, Framing):
                kinds["framings"].append(text)
            elif isinstance(layer, FrameTransform):
                kinds["compression"].append(text)
            elif isinstance(layer, Codec):
                kinds["codecs"].append(text)
            else:
                raise InvalidStackSpec(
                    f"{text!r} in {spec!r} is neither a framing, a compression nor a codec, "
                    f"so it cannot be negotiated"
                )
    offer_fields: dict[str, Any] = {key: value for key, value in kinds.items() if value}
    offer_fields.update(fields)
    return Offer(protocol, **offer_fields)


def _check_buildable(offer: Offer, registry: Registry | None) -> None:
    """Build every offered layer once, so a typo or a missing extra fails before any I/O."""
    reg = registry if registry is not None else default_registry()
    texts = [_spec_text(item, {"max": str(offer.max_frame)}) for item in offer.items("framing")]
    texts += [
        _spec_text(item, {"max": str(offer.max_frame)})
        for item in offer.items("compression")
        if item.name != NONE
    ]
    texts += [_spec_text(item, {}) for item in offer.items("codec")]
    for text in texts:
        reg.build_layers(text)


@final
class NegotiatedChannel(Channel[T]):
    """A :class:`~netweave.stack.StreamChannel` built from an :class:`Agreement`.

    Sends and receives like any channel; adds :attr:`agreement` (and
    :meth:`has_feature`), the underlying :attr:`connection` (a
    :class:`~netweave.transports.TlsConnection` when TLS was agreed) and
    :attr:`peer_certificate`.
    """

    __slots__ = ("_agreement", "_channel")

    def __init__(self, channel: StreamChannel[T], agreement: Agreement) -> None:
        self._channel = channel
        self._agreement = agreement

    @property
    def agreement(self) -> Agreement:
        """What both sides agreed."""
        return self._agreement

    def has_feature(self, name: str) -> bool:
        """Whether feature ``name`` was agreed."""
        return self._agreement.has_feature(name)

    @property
    def channel(self) -> StreamChannel[T]:
        """The channel carrying the messages."""
        return self._channel

    @property
    def connection(self) -> StreamConnection:
        """The connection under the agreed stack (TLS-wrapped when TLS was agreed)."""
        return self._channel.connection

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified TLS certificate, or ``None`` (no TLS, or none presented)."""
        cert: dict[str, Any] | None = self.connection.extra("peercert")
        return cert

    @property
    def stack(self) -> Stack:
        return self._channel.stack

    @property
    def remote_address(self) -> str:
        return self._channel.remote_address

    async def send(self, message: T) -> None:
        await self._channel.send(message)

    async def receive(self) -> T:
        return await self._channel.receive()

    async def send_eof(self) -> None:
        """End our sending side; the peer's ``receive`` sees ``EndOfStream``."""
        await self._channel.send_eof()

    async def close(self) -> None:
        await self._channel.close()

    def abort(self) -> None:
        self._channel.abort()

    def __repr__(self) -> str:
        return f"<NegotiatedChannel {self._agreement.describe()}>"


@final
class _Replay(StreamConnection):
    """``inner`` with ``head`` (bytes that arrived with the last negotiation message)
    returned first by ``receive``."""

    def __init__(self, inner: StreamConnection, head: bytes) -> None:
        self._inner = inner
        self._head = head

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send(data)

    async def receive(self, max_bytes: int | None = None) -> bytes:
        if not self._head or self._inner.is_closing:
            return await self._inner.receive(max_bytes)
        if max_bytes is not None and max_bytes < 1:
            raise UsageError(f"max_bytes must be at least 1, got {max_bytes}")
        size = len(self._head) if max_bytes is None else max_bytes
        chunk, self._head = self._head[:size], self._head[size:]
        return chunk

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def close(self) -> None:
        self._head = b""
        await self._inner.close()

    def abort(self) -> None:
        self._head = b""
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


async def _negotiate(
    conn: StreamConnection,
    machine: Handshake,
    *,
    tls_context: ssl.SSLContext | None,
    server_hostname: str | None,
    handshake_timeout: float | None,
    registry: Registry | None,
    observer: Observer | None,
) -> NegotiatedChannel[Any]:
    offer = machine.offer
    server_side = isinstance(machine, ServerHandshake)
    try:
        async with asyncio.timeout(handshake_timeout):
            while True:
                out = machine.data_to_send()
                if out:
                    await conn.send(out)
                if machine.state != "running":
                    break
                chunk = await conn.receive()
                if chunk:
                    machine.receive_data(chunk)
                else:
                    machine.end_of_input()
            agreement = machine.agreement
            if agreement is None:
                error = machine.error
                assert error is not None
                await conn.close()
                raise error
            connection: StreamConnection = conn
            if machine.leftover:
                connection = _Replay(conn, machine.leftover)
            if agreement.tls:
                assert tls_context is not None
                connection = await start_tls(
                    connection,
                    tls_context,
                    server_side=server_side,
                    server_hostname=server_hostname,
                    handshake_timeout=None,
                )
    except TimeoutError:
        conn.abort()
        raise PeerUnresponsive(
            f"negotiation with {conn.remote_address} did not finish within "
            f"{handshake_timeout} s; the peer was cut off"
        ) from None
    except (NegotiationFailed, ProtocolError):
        raise
    except BaseException:
        conn.abort()
        raise
    stack = build_stack(offer, agreement, registry=registry, observer=observer)
    return NegotiatedChannel(StreamChannel(connection, stack, observer=observer), agreement)


def _prepare(offer: Offer, tls_context: ssl.SSLContext | None, registry: Registry | None) -> None:
    if not isinstance(offer, Offer):
        raise UsageError(f"expected an Offer, not {offer!r}")
    if offer.tls != "never" and tls_context is None:
        raise UsageError(
            f"the offer allows TLS (tls={offer.tls!r}), so pass tls_context= "
            f"(see netweave.layers.tls_client_context / tls_server_context)"
        )
    _check_buildable(offer, registry)


async def client(
    conn: StreamConnection,
    offer: Offer,
    *,
    tls_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    registry: Registry | None = None,
    observer: Observer | None = None,
) -> NegotiatedChannel[Any]:
    """Negotiate as the client over ``conn``; return the channel the agreement calls for.

    When TLS is agreed, the connection is upgraded with ``tls_context``
    (checking ``server_hostname``) before the channel is built. Raises
    ``NegotiationFailed`` naming what did not match (``side="remote"`` when the
    server refused), ``DecodeError`` for a malformed answer, ``TlsError`` for a
    failed upgrade, ``PeerUnresponsive`` after ``handshake_timeout`` seconds;
    ``conn`` is closed on any failure.
    """
    _prepare(offer, tls_context, registry)
    if tls_context is not None and tls_context.check_hostname and not server_hostname:
        raise UsageError(
            "the TLS context checks host names, so pass server_hostname= (the name on the "
            "server's certificate)"
        )
    return await _negotiate(
        conn,
        ClientHandshake(offer),
        tls_context=tls_context,
        server_hostname=server_hostname,
        handshake_timeout=handshake_timeout,
        registry=registry,
        observer=observer,
    )


async def server(
    conn: StreamConnection,
    policy: Offer,
    *,
    tls_context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    registry: Registry | None = None,
    observer: Observer | None = None,
) -> NegotiatedChannel[Any]:
    """Negotiate as the server over ``conn`` (``policy``'s preferences win); return the
    channel the agreement calls for. Raises as :func:`client` does; a refused
    client gets the reason before the connection is closed."""
    _prepare(policy, tls_context, registry)
    return await _negotiate(
        conn,
        ServerHandshake(policy),
        tls_context=tls_context,
        server_hostname=None,
        handshake_timeout=handshake_timeout,
        registry=registry,
        observer=observer,
    )


async def connect(
    url: str,
    offer: Offer,
    *,
    tls_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    registry: Registry | None = None,
    observer: Observer | None = None,
) -> NegotiatedChannel[Any]:
    """Connect to a stream ``url`` and negotiate as the client (see :func:`client`).

    ``server_hostname`` defaults to the URL's host for a TLS upgrade.
    """
    endpoint, transport = parse_endpoint(url, registry=registry)
    if not isinstance(transport, StreamTransport):
        raise UsageError(
            f"{url}: negotiation needs a byte stream (tcp, unix, tls, mem), not datagrams"
        )
    _prepare(offer, tls_context, registry)
    conn = await transport.connect(endpoint, observer=observer)
    return await client(
        conn,
        offer,
        tls_context=tls_context,
        server_hostname=server_hostname or endpoint.host or None,
        handshake_timeout=handshake_timeout,
        registry=registry,
        observer=observer,
    )


#: A handler for :func:`serve`: called with each negotiated channel.
NegotiatedHandler = Callable[[NegotiatedChannel[Any]], Awaitable[None]]


def serve(
    url: str,
    policy: Offer,
    handler: NegotiatedHandler,
    *,
    tls_context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    registry: Registry | None = None,
    observer: Observer | None = None,
) -> _Serving:
    """Like :func:`netweave.serve`, negotiating with each client first: ``handler``
    gets a :class:`NegotiatedChannel`. Clients that fail negotiation are logged
    (``netweave.negotiate``, level INFO) and closed; the handler never sees them.
    Use as ``async with negotiate.serve(...) as server`` or ``await``."""
    _prepare(policy, tls_context, registry)

    async def run(channel: Channel[Any]) -> None:
        assert isinstance(channel, StreamChannel)
        try:
            negotiated = await server(
                channel.connection,
                policy,
                tls_context=tls_context,
                handshake_timeout=handshake_timeout,
                registry=registry,
                observer=observer,
            )
        except (NegotiationFailed, ProtocolError, ConnectionBroken) as exc:
            logger.info("negotiation with %s failed: %s", channel.remote_address, exc)
            return
        try:
            await handler(negotiated)
        finally:
            await negotiated.close()  # sends TLS close_notify when TLS was agreed

    # The placeholder stack is never used: every connection gets the agreed stack.
    return _serve(url, "lp4,raw", run, observer=observer, registry=registry)
