"""A circuit breaker: stop calling a failing peer, then probe it before trusting it again.

Rules of this file: the state machine is the table below; the sans-IO core
takes ``now``; :meth:`CircuitBreaker.call` reads the running loop's clock.

==========  ===================================  ==========
state       event                                next state
==========  ===================================  ==========
closed      success                              closed (failure count reset)
closed      failure, count < threshold           closed
closed      failure, count reaches threshold     open
open        ``reset_timeout`` elapsed            half-open
half-open   probe admitted                       half-open (no other call admitted)
half-open   probe succeeded                      closed
half-open   probe failed                         open (timer restarts)
half-open   probe abandoned (cancelled)          half-open (probe slot free again)
==========  ===================================  ==========
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar, final

from ..errors import CircuitOpen, DeadlineExceeded, TransportError, UsageError
from ._events import BreakerStateChanged

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["BreakerState", "CircuitBreaker"]

T = TypeVar("T")


class BreakerState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


def _default_failure(error: BaseException) -> bool:
    if isinstance(error, TransportError | DeadlineExceeded):
        return True
    return getattr(error, "retryable", False) is True  # e.g. Overloaded


@final
class CircuitBreaker:
    """Closed / open / half-open, with exactly one probe in half-open.

    ``failure_threshold`` consecutive failures open the breaker; after
    ``reset_timeout`` seconds it lets one probe call through; the probe's outcome
    closes or reopens it. ``is_failure(error)`` decides which errors count
    against the peer (default: transport errors, deadlines and errors marked
    ``retryable`` such as ``Overloaded``); other errors count as successes, since
    the peer answered. Every transition emits :class:`BreakerStateChanged`.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        is_failure: Callable[[BaseException], bool] = _default_failure,
        observer: Observer | None = None,
        name: str = "breaker",
    ) -> None:
        if failure_threshold < 1 or not reset_timeout > 0:
            raise UsageError("CircuitBreaker needs failure_threshold >= 1 and reset_timeout > 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.is_failure = is_failure
        self.observer = observer
        self.name = name
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    # -- sans-IO core -----------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        """The state at loop time ``now`` (an open breaker turns half-open when due)."""
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.reset_timeout:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success (reset when the breaker closes)."""
        return self._failures

    def retry_after(self, now: float) -> float:
        """Seconds until an open breaker admits a probe (0 when it would admit one now)."""
        if self.state(now) is BreakerState.OPEN:
            return self._opened_at + self.reset_timeout - now
        return 0.0

    def try_acquire(self, now: float) -> bool:
        """Ask to make one call. ``True`` admits it (report its outcome with
        :meth:`record_success`, :meth:`record_failure` or :meth:`record_abandoned`);
        ``False`` means fail fast."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self, now: float) -> None:
        """An admitted call succeeded (or failed in a way that is not the peer's)."""
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN and self._probing:
            self._probing = False
            self._move(BreakerState.CLOSED)

    def record_failure(self, now: float) -> None:
        """An admitted call failed in a way that counts against the peer."""
        if self._state is BreakerState.HALF_OPEN and self._probing:
            self._probing = False
            self._open(now)
            return
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(now)

    def record_abandoned(self) -> None:
        """An admitted call ended without an outcome (cancelled): free the probe slot."""
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        previous = self._state
        if previous is state:
            return
        self._state = state
        if state is BreakerState.CLOSED:
            self._failures = 0
        if self.observer is not None:
            self.observer(BreakerStateChanged(self.name, previous.value, state.value))

    # -- async wrapper ----------------------------------------------------------

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation()`` through the breaker.

        Raises ``CircuitOpen`` (with ``retry_after``) without running it when the
        breaker is open, or half-open with its probe already out. Otherwise
        returns or raises what the operation does, recording the outcome.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self.try_acquire(now):
            wait = self.retry_after(now)
            raise CircuitOpen(
                f"{self.name}: circuit open after {self._failures or self.failure_threshold} "
                f"consecutive failures; calls fail fast for another {wait:.3f} s",
                retry_after=wait,
            )
        try:
            result = await operation()
        except asyncio.CancelledError:
            self.record_abandoned()
            raise
        except Exception as error:
            if self.is_failure(error):
                self.record_failure(loop.time())
            else:
                self.record_success(loop.time())
            raise
        self.record_success(loop.time())
        return result

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"
