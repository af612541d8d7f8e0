"""Command-line tool building blocks: the echo server, the ``send`` client, the
argument/reply mapping, negotiation from the command line and event-loop
selection. The ``netweave`` command line (:mod:`netweave.cli`) is a thin layer
over these; benchmarks run :func:`echo_message` through ``netweave serve echo``.
"""

from ._echo import echo, echo_message, serve_until
from ._loops import LOOP_CHOICES, LoopName, loop_factory
from ._messages import CODEC_FORMATS, MessageFormat, check_encodable, message_format
from ._negotiated import (
    Negotiation,
    TlsFiles,
    describe_channel,
    exchange_negotiated,
    prepare_negotiation,
    serve_negotiated_until,
)
from ._send import exchange, exchange_with

__all__ = [
    "CODEC_FORMATS",
    "LOOP_CHOICES",
    "LoopName",
    "MessageFormat",
    "Negotiation",
    "TlsFiles",
    "check_encodable",
    "describe_channel",
    "echo",
    "echo_message",
    "exchange",
    "exchange_negotiated",
    "exchange_with",
    "loop_factory",
    "message_format",
    "prepare_negotiation",
    "serve_negotiated_until",
    "serve_until",
]
