"""Transports: the only place netweave does I/O.

Contracts live in :mod:`netweave.transports.base`; implementations register
under URL schemes (``tcp``, ``udp``, ``unix``, ``mem``, ``tls``, ``quic``) in the
registry.
"""

from ._mem import MemoryStreamConnection
from ._quic import QuicConnection, QuicDatagrams, QuicListener, QuicStream, QuicTransport
from ._tls import TlsConnection, start_tls
from ._tls_transport import TlsListener, TlsTransport
from .base import (
    Address,
    DatagramEndpoint,
    DatagramTransport,
    Listener,
    StreamConnection,
    StreamTransport,
    Transport,
)

__all__ = [
    "Address",
    "DatagramEndpoint",
    "DatagramTransport",
    "Listener",
    "MemoryStreamConnection",
    "QuicConnection",
    "QuicDatagrams",
    "QuicListener",
    "QuicStream",
    "QuicTransport",
    "StreamConnection",
    "StreamTransport",
    "TlsConnection",
    "TlsListener",
    "TlsTransport",
    "Transport",
    "start_tls",
]
