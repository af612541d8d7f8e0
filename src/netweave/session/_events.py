"""Events that session components emit through an observer.

Rules of this file: small frozen dataclasses without timestamps (the observer
stamps them with the loop clock); ``source`` is the component's ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..observe import Event

__all__ = [
    "CallFinished",
    "CongestionChanged",
    "InFlightChanged",
    "PeerSilent",
    "Retransmitted",
    "RttSampled",
    "SessionResumed",
]


@dataclass(frozen=True, slots=True)
class RttSampled(Event):
    """A new RTT sample ``rtt`` (seconds) and the estimator's ``srtt``, ``rttvar``, ``rto``."""

    rtt: float
    srtt: float
    rttvar: float
    rto: float


@dataclass(frozen=True, slots=True)
class Retransmitted(Event):
    """Segment ``seq`` was sent again (``transmission`` counts from 2). ``reason`` is
    ``rto`` (the retransmission timer expired), ``loss`` (later segments were
    acknowledged, so this one is deemed lost) or ``probe`` (a zero-window probe)."""

    seq: int
    transmission: int
    reason: str


@dataclass(frozen=True, slots=True)
class CongestionChanged(Event):
    """The congestion window became ``cwnd`` bytes after ``cause`` (``loss``, ``rto``, or
    ``undo`` when a reduction proved spurious);
    ``ssthresh`` is the new slow-start threshold."""

    cwnd: int
    ssthresh: int
    cause: str


@dataclass(frozen=True, slots=True)
class CallFinished(Event):
    """An RPC call to ``method`` ended after ``seconds``; ``outcome`` is ``ok`` or the
    error's type name (``DeadlineExceeded``, ``RemoteError``...). ``role`` is
    ``client`` or ``server``."""

    method: str
    seconds: float
    outcome: str
    role: str


@dataclass(frozen=True, slots=True)
class InFlightChanged(Event):
    """RPC calls in flight on one connection became ``count`` (a queue depth)."""

    count: int
    role: str


@dataclass(frozen=True, slots=True)
class PeerSilent(Event):
    """The peer sent nothing for ``silent`` seconds, over the ``limit``; the
    connection is being cut. ``stage`` is ``handshake`` or ``idle``."""

    silent: float
    limit: float
    stage: str


@dataclass(frozen=True, slots=True)
class SessionResumed(Event):
    """A resumable session got a new connection after ``attempts`` tries and
    ``downtime`` seconds; ``replayed`` messages were sent again."""

    session: str
    attempts: int
    replayed: int
    downtime: float
