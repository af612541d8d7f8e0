"""Command-line tool building blocks: the echo server, the ``send`` client, the
argument/reply mapping and event-loop selection. The ``netweave`` command line
(:mod:`netweave.cli`) is a thin layer over these; benchmarks use :func:`echo`.
"""

from ._echo import echo, serve_until
from ._loops import LOOP_CHOICES, LoopName, loop_factory
from ._messages import CODEC_FORMATS, MessageFormat, check_encodable, message_format
from ._send import exchange

__all__ = [
    "CODEC_FORMATS",
    "LOOP_CHOICES",
    "LoopName",
    "MessageFormat",
    "check_encodable",
    "echo",
    "exchange",
    "loop_factory",
    "message_format",
    "serve_until",
]
