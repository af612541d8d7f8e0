"""Events that resilience components emit through an observer.

Rules of this file: like every netweave event these are small frozen
dataclasses without timestamps (the observer stamps them with the loop clock);
``source`` is the component's ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..observe import Event

__all__ = [
    "BreakerStateChanged",
    "PoolWaited",
    "RateLimited",
    "RetryGaveUp",
    "RetryScheduled",
]


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed with ``error`` (its type name); the next one starts
    after ``delay`` seconds."""

    attempt: int
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """No further attempt: ``reason`` is ``attempts`` (all used), ``budget`` (the retry
    budget was spent), ``deadline`` (the next attempt would start after the deadline)
    or ``not-retryable``. ``error`` is the last error's type name."""

    attempts: int
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(Event):
    """A circuit breaker moved from ``previous`` to ``state`` (``closed``, ``open``,
    ``half-open``)."""

    previous: str
    state: str


@dataclass(frozen=True, slots=True)
class PoolWaited(Event):
    """A checkout waited ``waited`` seconds for a free connection; ``outcome`` is
    ``acquired``, ``timeout``, ``cancelled`` or ``closed``. ``waiting`` counts the waiters left."""

    waited: float
    outcome: str
    waiting: int


@dataclass(frozen=True, slots=True)
class RateLimited(Event):
    """A rate limiter made a caller wait ``delay`` seconds for ``tokens`` tokens."""

    tokens: float
    delay: float
