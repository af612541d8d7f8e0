"""Observability: typed events, observers, and exporters.

Every netweave component takes an optional ``observer`` (any callable taking one
:class:`Event`) and emits typed events through it.
"""

from ._events import (
    BytesReceived,
    BytesSent,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    MessageReceived,
    MessageSent,
    ProtocolViolation,
)
from ._observers import (
    LoggingObserver,
    Observer,
    RecordingObserver,
    event_to_dict,
    fanout,
    loop_time,
)
from ._prometheus import MetricsServer, PrometheusObserver, serve_metrics

__all__ = [
    "BytesReceived",
    "BytesSent",
    "ConnectionClosed",
    "ConnectionOpened",
    "Event",
    "LoggingObserver",
    "MessageReceived",
    "MessageSent",
    "MetricsServer",
    "Observer",
    "PrometheusObserver",
    "ProtocolViolation",
    "RecordingObserver",
    "event_to_dict",
    "fanout",
    "loop_time",
    "serve_metrics",
]
