"""netweave: pluggable networking stacks for asyncio, testable on a simulated network.

The public surface::

    channel = await netweave.connect("tcp://127.0.0.1:9000", "lp4,json")
    async with netweave.serve("tcp://127.0.0.1:9000", "lp4,json", handler) as server: ...

See ``netweave.transports`` (I/O), ``netweave.layers`` (sans-IO transforms),
``netweave.stack`` (stacks and channels), ``netweave.observe`` (events) and
``netweave.testing`` (conformance suites and test doubles).
"""

from ._version import __version__
from .client import connect
from .endpoints import Endpoint, parse_endpoint
from .errors import (
    CallCancelled,
    CircuitOpen,
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    DeadlineExceeded,
    DecodeError,
    EndOfStream,
    FrameTooLarge,
    InvalidEndpoint,
    InvalidStackSpec,
    ListenFailed,
    MethodNotFound,
    MissingDependency,
    NegotiationFailed,
    NetweaveError,
    Overloaded,
    PeerUnresponsive,
    PoolExhausted,
    ProtocolError,
    RemoteDeadlineExceeded,
    RemoteError,
    SessionExpired,
    TlsError,
    TransportError,
    TruncatedInput,
    UsageError,
)
from .messages import MessageHandler, Responder, per_message
from .registry import Registry, default_registry
from .server import Handler, Server, serve
from .stack import Channel, DatagramChannel, Stack, StreamChannel

__all__ = [
    "CallCancelled",
    "Channel",
    "CircuitOpen",
    "ClosedResourceError",
    "ConnectFailed",
    "ConnectionBroken",
    "DatagramChannel",
    "DeadlineExceeded",
    "DecodeError",
    "EndOfStream",
    "Endpoint",
    "FrameTooLarge",
    "Handler",
    "InvalidEndpoint",
    "InvalidStackSpec",
    "ListenFailed",
    "MessageHandler",
    "MethodNotFound",
    "MissingDependency",
    "NegotiationFailed",
    "NetweaveError",
    "Overloaded",
    "PeerUnresponsive",
    "PoolExhausted",
    "ProtocolError",
    "Registry",
    "RemoteDeadlineExceeded",
    "RemoteError",
    "Responder",
    "Server",
    "SessionExpired",
    "Stack",
    "StreamChannel",
    "TlsError",
    "TransportError",
    "TruncatedInput",
    "UsageError",
    "__version__",
    "connect",
    "default_registry",
    "parse_endpoint",
    "per_message",
    "serve",
]
