"""Typed events that netweave components emit through an observer.

Rules of this file: events are small frozen dataclasses; they carry no
timestamp (the observer stamps them with the running loop's clock, so the
simulator's trace gets virtual time for free); ``source`` is a short label of
the emitting component, such as ``"tcp 127.0.0.1:40000->127.0.0.1:9000"``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = [
    "BytesReceived",
    "BytesSent",
    "ConnectionClosed",
    "ConnectionOpened",
    "Event",
    "MessageReceived",
    "MessageSent",
    "ProtocolViolation",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""

    source: str

    @property
    def kind(self) -> str:
        """The event's type name in snake case, as used in logs and traces."""
        return _snake(type(self).__name__)


@dataclass(frozen=True, slots=True)
class ConnectionOpened(Event):
    """A connection or endpoint was established (``role`` is client or server)."""

    transport: str
    local: str
    remote: str
    role: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """A connection ended. ``reason`` is ``local-close``, ``local-abort``, ``peer-eof``,
    ``peer-reset`` or ``protocol-error``; ``error`` holds the error text when there was one."""

    reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BytesSent(Event):
    """``count`` bytes were handed to the operating system (or the simulated network)."""

    count: int


@dataclass(frozen=True, slots=True)
class BytesReceived(Event):
    """``count`` bytes arrived from the peer."""

    count: int


@dataclass(frozen=True, slots=True)
class MessageSent(Event):
    """A channel encoded one message into ``size`` bytes on the wire."""

    size: int


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A channel decoded one message (``count`` messages for a bulk decode)."""

    count: int


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """A layer rejected the peer's input."""

    layer: str
    message: str


@functools.cache
def _snake(name: str) -> str:
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
