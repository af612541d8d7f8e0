"""Negotiation: a hello/agree exchange that runs before application messages.

The client states what it supports (:class:`Offer`: protocol name, versions,
framings, codecs, compression and levels, maximum frame size, heartbeat,
feature flags, TLS); the server, whose preferences win, answers with the
:class:`Agreement` (or refuses, with a reason both sides report in the same
words as :class:`~netweave.errors.NegotiationFailed`). The channel's stack is
then built from the agreement, after a TLS upgrade when both sides agreed to
one::

    offer = Offer("chat", versions=[2, 1], codecs=["msgpack", "json"],
                  compression=["zstd", "none"], features={"receipts"})
    channel = await negotiate.connect("tcp://127.0.0.1:9000", offer)
    if channel.agreement.has_feature("receipts"): ...

    async with negotiate.serve("tcp://127.0.0.1:9000", policy, handler) as server: ...

The wire format is versioned and documented in ``docs/negotiation.md``; the
sans-IO core (:class:`ClientHandshake`, :class:`ServerHandshake`,
:func:`agree`, the ``encode_*``/``decode_*`` functions) does no I/O and can be
driven by hand.
"""

from ._agree import NONE, Agreement, Offer, TlsMode, agree, check_agreement
from ._driver import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    NegotiatedChannel,
    NegotiatedHandler,
    build_stack,
    client,
    connect,
    offer_from_spec,
    serve,
    server,
)
from ._machine import ClientHandshake, Handshake, ServerHandshake
from ._wire import (
    MAGIC,
    MAX_BODY,
    SUPPORTED_WIRE_VERSIONS,
    Hello,
    Message,
    MessageType,
    decode_hello,
    decode_refuse,
    decode_retry,
    encode_hello,
    encode_refuse,
    encode_retry,
    read_message,
)

__all__ = [
    "Agreement",
    "ClientHandshake",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Handshake",
    "Hello",
    "MAGIC",
    "MAX_BODY",
    "Message",
    "MessageType",
    "NONE",
    "NegotiatedChannel",
    "NegotiatedHandler",
    "Offer",
    "SUPPORTED_WIRE_VERSIONS",
    "ServerHandshake",
    "TlsMode",
    "agree",
    "build_stack",
    "check_agreement",
    "client",
    "connect",
    "decode_hello",
    "decode_refuse",
    "decode_retry",
    "encode_hello",
    "encode_refuse",
    "encode_retry",
    "offer_from_spec",
    "read_message",
    "serve",
    "server",
]
