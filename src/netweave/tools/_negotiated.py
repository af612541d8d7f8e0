"""Negotiation from the command line: ``--negotiate PROTOCOL`` and the TLS upgrade.

With ``--negotiate``, the ``--stack`` spec lists alternatives, best first
(``lp4,zstd|lz4|none,msgpack|json``; see :func:`netweave.negotiate.offer_from_spec`):
``serve echo`` answers each client with the first of its own alternatives the
client also offers, ``send`` negotiates before its first message. ``--tls``
(implied by any of ``--tls-cert``, ``--tls-key``, ``--tls-ca``) makes the TLS
upgrade after the agreement *required*: the certificate options mean what
``tls://``'s ``cert``, ``key`` and ``ca`` mean (``docs/tls.md``).

:func:`prepare_negotiation` checks everything it can before any I/O — a stream
URL, the spec's names, the certificate files, a message format shared by every
codec alternative — and raises ``UsageError`` (or ``InvalidStackSpec``,
``MissingDependency``) naming the fix.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, final

from .. import negotiate
from ..endpoints import parse_endpoint
from ..errors import NetweaveError, UsageError
from ..layers import tls_client_context, tls_server_context
from ..negotiate import NegotiatedChannel, Offer
from ..server import serve
from ..stack import Channel, Stack, StreamChannel
from ..transports import StreamConnection, StreamTransport
from ._echo import echo
from ._messages import MessageFormat, check_encodable, message_format
from ._send import exchange_with

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = [
    "Negotiation",
    "TlsFiles",
    "describe_channel",
    "exchange_negotiated",
    "prepare_negotiation",
    "serve_negotiated_until",
]


@final
@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for the TLS upgrade after negotiation (``--tls-cert/--tls-key/--tls-ca``).

    ``cert``/``key``: our certificate (required to serve; mutual TLS when sending).
    ``ca``: the CAs to trust (sending: the server's issuer, the system's CAs when
    absent; serving: clients must present a certificate it issued).
    """

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    def __bool__(self) -> bool:
        return any((self.cert, self.key, self.ca))


@final
@dataclass(frozen=True, slots=True)
class Negotiation:
    """Everything one side needs to negotiate: its offer, the TLS context for the
    upgrade (``None``: no TLS), and how messages are read and printed."""

    offer: Offer
    tls_context: ssl.SSLContext | None
    format: MessageFormat

    def parse_messages(self, arguments: Sequence[str]) -> list[Any]:
        """The command-line ``arguments`` as messages; ``UsageError`` for one that does not
        parse, or that one of the offered codecs cannot carry."""
        parsed = [self.format.parse(text, position) for position, text in enumerate(arguments, 1)]
        for codec in self.offer.codecs:
            check_encodable(Stack.parse(codec), parsed)
        return parsed


def _encrypted(transport: StreamTransport) -> bool:
    """Whether the transport runs TLS itself (it takes certificate options: tls, quic)."""
    return {"cert", "ca"} <= set(transport.options)


def _format(offer: Offer) -> MessageFormat:
    formats = {codec: message_format(Stack.parse(codec)) for codec in offer.codecs}
    kinds = {fmt.name for fmt in formats.values()}
    if len(kinds) > 1:
        listed = ", ".join(f"{codec} ({fmt.name})" for codec, fmt in formats.items())
        raise UsageError(
            f"the offered codecs read messages differently: {listed}; offer codecs of one "
            f"kind (json, msgpack and cbor go together) so MESSAGE means the same whatever "
            f"is agreed"
        )
    return next(iter(formats.values()))


def prepare_negotiation(
    protocol: str,
    spec: str,
    url: str,
    *,
    side: Literal["client", "server"],
    tls: bool = False,
    files: TlsFiles | None = None,
) -> Negotiation:
    """Check ``url``, ``spec`` and the TLS settings, and build the side's :class:`Negotiation`.

    ``tls`` (or any of ``files``) requires the TLS upgrade. Raises ``UsageError`` for
    a datagram URL, for TLS over a transport that is already encrypted, for a
    server without its certificate, for files that cannot be loaded, and for codec
    alternatives that read messages differently; ``InvalidEndpoint``,
    ``InvalidStackSpec`` and ``MissingDependency`` as the URL and spec call for.
    """
    chosen = files if files is not None else TlsFiles()
    endpoint, transport = parse_endpoint(url)
    if not isinstance(transport, StreamTransport):
        raise UsageError(
            f"--negotiate needs a byte stream (tcp://, unix://, tls://, quic://), "
            f"not {endpoint.scheme}://"
        )
    wants_tls = tls or bool(chosen)
    context: ssl.SSLContext | None = None
    if wants_tls:
        if _encrypted(transport):
            raise UsageError(
                f"{endpoint.scheme}:// is encrypted already: drop --tls and the --tls-* "
                f"options (certificates go in the URL, ?cert=...&key=... or ?ca=...), or "
                f"use tcp:// to upgrade to TLS after negotiating"
            )
        if side == "server":
            if chosen.cert is None:
                raise UsageError(
                    "the TLS upgrade needs the server's certificate: add "
                    "--tls-cert server.pem --tls-key server.key"
                )
            context = tls_server_context(cert=chosen.cert, key=chosen.key, ca=chosen.ca)
        else:
            context = tls_client_context(ca=chosen.ca, cert=chosen.cert, key=chosen.key)
    offer = negotiate.offer_from_spec(protocol, spec, tls="required" if wants_tls else "never")
    return Negotiation(offer, context, _format(offer))


def describe_channel(channel: Channel[Any]) -> str:
    """One line about a connected channel: what was agreed (negotiated channels) or its
    stack, then the TLS version and cipher when the connection is encrypted."""
    connection: StreamConnection | None = None
    if isinstance(channel, NegotiatedChannel):
        text = f"agreed {channel.agreement.describe()}"
        connection = channel.connection
    else:
        text = f"stack {channel.stack.spec}"
        if isinstance(channel, StreamChannel):
            connection = channel.connection
    if connection is not None and connection.extra("tls_version"):
        version = connection.extra("tls_version")
        cipher = connection.extra("cipher")
        text += f" ({version}, {cipher[0]})" if cipher else f" ({version})"
    return text


async def serve_negotiated_until(
    url: str,
    negotiation: Negotiation,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[str], None] | None = None,
    on_agreed: Callable[[NegotiatedChannel[Any]], None] | None = None,
    on_failed: Callable[[str, NetweaveError], None] | None = None,
    observer: Observer | None = None,
) -> None:
    """Serve :func:`~netweave.tools.echo` on ``url``, negotiating with each client first,
    until ``stop`` is set.

    ``on_agreed(channel)`` is called for each client that agreed (after the TLS
    upgrade, if any); ``on_failed(remote_address, error)`` for each that did not —
    ``NegotiationFailed`` (its reason is the one the client reports too),
    ``TlsError``, a malformed or silent peer — and that client is closed; the
    server keeps serving. Raises what :func:`netweave.serve` raises.
    """

    async def run(channel: Channel[Any]) -> None:
        assert isinstance(channel, StreamChannel)  # serve() gives these for stream URLs
        try:
            negotiated = await negotiate.server(
                channel.connection,
                negotiation.offer,
                tls_context=negotiation.tls_context,
                observer=observer,
            )
        except NetweaveError as exc:
            if on_failed is not None:
                on_failed(channel.remote_address, exc)
            return
        if on_agreed is not None:
            on_agreed(negotiated)
        try:
            await echo(negotiated)
        finally:
            await negotiated.close()  # sends TLS close_notify when TLS was agreed

    # Each connection gets the agreed stack; this one only satisfies serve()'s checks.
    async with serve(url, "lp4,raw", run, observer=observer) as server:
        if on_listening is not None:
            on_listening(server.url)
        await stop.wait()


async def exchange_negotiated(
    url: str,
    negotiation: Negotiation,
    messages: Sequence[Any],
    *,
    timeout: float,
    on_reply: Callable[[int, Any], None],
    on_connected: Callable[[Channel[Any]], None] | None = None,
    observer: Observer | None = None,
) -> None:
    """Like :func:`~netweave.tools.exchange`, negotiating (and upgrading to TLS, when
    agreed) before the first message; ``timeout`` covers that too. Raises
    ``NegotiationFailed`` with the reason both sides report when they cannot agree,
    ``TlsError`` when the upgrade fails, and what ``exchange`` raises."""

    async def open_channel() -> Channel[Any]:
        return await negotiate.connect(
            url,
            negotiation.offer,
            tls_context=negotiation.tls_context,
            handshake_timeout=None,  # the exchange's timeout bounds it
            observer=observer,
        )

    await exchange_with(
        url,
        open_channel,
        messages,
        timeout=timeout,
        on_reply=on_reply,
        on_connected=on_connected,
        step=f"connecting to and negotiating with {url}",
    )
