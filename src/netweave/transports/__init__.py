"""Transports: the only place netweave does I/O.

Contracts live in :mod:`netweave.transports.base`; implementations register
under URL schemes (``tcp``, ``udp``, ``unix``, ``mem``) in the registry.
"""

from ._mem import MemoryStreamConnection
from ._tls import TlsConnection, TlsListener, TlsTransport, start_tls
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
    "StreamConnection",
    "StreamTransport",
    "TlsConnection",
    "TlsListener",
    "TlsTransport",
    "Transport",
    "start_tls",
]
