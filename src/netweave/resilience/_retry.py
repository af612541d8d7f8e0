"""Retry policies: exponential backoff with full jitter, a retry budget, and a
clear line between errors worth retrying and errors that are not.

Rules of this file: randomness comes only from the injected ``random.Random``;
time only from the running loop. A retry never sleeps past the current
deadline (:func:`~netweave.resilience.current_deadline`): if the next attempt
could not start before it, the policy gives up at once with
``DeadlineExceeded`` instead of sleeping in vain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar, final

from ..errors import (
    CircuitOpen,
    DeadlineExceeded,
    ProtocolError,
    TransportError,
    UsageError,
)
from ._budget import RetryBudget
from ._deadline import Deadline, current_deadline
from ._events import RetryGaveUp, RetryScheduled

if TYPE_CHECKING:
    from random import Random

    from ..observe import Observer

__all__ = ["RetryPolicy"]

T = TypeVar("T")

#: Errors retried by default: the network or the peer failed us.
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (TransportError,)
#: Errors never retried by default: our own mistakes, garbage from the peer,
#: and a breaker that asks us to back off.
DEFAULT_NEVER_RETRY: tuple[type[BaseException], ...] = (UsageError, ProtocolError, CircuitOpen)


@final
class RetryPolicy:
    """Runs an async operation up to ``max_attempts`` times.

    Between attempts it sleeps a *full-jitter* backoff: a uniform draw from
    ``[0, min(max_delay, base_delay * multiplier ** (attempt - 1))]`` taken from
    ``rng``. Which errors are retried:

    1. an instance of ``never_retry`` — never;
    2. an error with a boolean ``retryable`` attribute (such as
       :class:`~netweave.errors.Overloaded`) — as that attribute says;
    3. an instance of ``retry_on`` — yes;
    4. ``DeadlineExceeded`` raised by the per-attempt ``attempt_timeout`` while
       the overall deadline still has time — yes;
    5. anything else — no, it propagates at once.

    Giving up: after ``max_attempts`` the last error is re-raised unchanged; when
    ``budget`` has no retry left, likewise; when the next attempt could not start
    before the current deadline, ``DeadlineExceeded`` is raised with the last
    error as its cause. Cancellation is never retried. Each retry emits
    :class:`RetryScheduled`, each give-up :class:`RetryGaveUp`.

    A policy holds no per-call state, so one policy may serve many concurrent calls.
    """

    def __init__(
        self,
        *,
        rng: Random,
        max_attempts: int = 3,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
        multiplier: float = 2.0,
        retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
        never_retry: tuple[type[BaseException], ...] = DEFAULT_NEVER_RETRY,
        attempt_timeout: float | None = None,
        budget: RetryBudget | None = None,
        observer: Observer | None = None,
        name: str = "retry",
    ) -> None:
        if max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1, not {max_attempts}")
        if not (base_delay >= 0 and max_delay >= 0 and multiplier >= 1):
            raise UsageError("backoff needs base_delay >= 0, max_delay >= 0 and multiplier >= 1")
        if attempt_timeout is not None and not attempt_timeout > 0:
            raise UsageError(f"attempt_timeout must be positive, not {attempt_timeout}")
        self.rng = rng
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.multiplier = multiplier
        self.retry_on = retry_on
        self.never_retry = never_retry
        self.attempt_timeout = attempt_timeout
        self.budget = budget
        self.observer = observer
        self.name = name

    def backoff_cap(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        # Cap the exponent so huge attempt counts cannot overflow a float.
        return min(self.max_delay, self.base_delay * self.multiplier ** min(exponent, 64))

    def backoff(self, attempt: int) -> float:
        """A full-jitter delay after failed attempt ``attempt``: uniform in ``[0, cap]``."""
        return self.rng.uniform(0.0, self.backoff_cap(attempt))

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt (rules 1-3 of the class docstring)."""
        if isinstance(error, self.never_retry):
            return False
        flag = getattr(error, "retryable", None)
        if isinstance(flag, bool):
            return flag
        return isinstance(error, self.retry_on)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation()`` with retries and return its first successful result."""
        loop = asyncio.get_running_loop()
        if self.budget is not None:
            self.budget.record_request(loop.time())
        attempt = 0
        while True:
            attempt += 1
            try:
                if self.attempt_timeout is None:
                    return await operation()
                async with Deadline.after(self.attempt_timeout):
                    return await operation()
            except Exception as error:
                retryable = self.is_retryable(error) or self._attempt_timed_out(error)
                if not retryable:
                    self._gave_up(attempt, "not-retryable", error)
                    raise
                if attempt >= self.max_attempts:
                    self._gave_up(attempt, "attempts", error)
                    raise
                now = loop.time()
                delay = self.backoff(attempt)
                deadline = current_deadline()
                if deadline is not None and now + delay >= deadline.when:
                    self._gave_up(attempt, "deadline", error)
                    raise DeadlineExceeded(
                        f"{self.name}: attempt {attempt} failed ({type(error).__name__}: "
                        f"{error}) and the next one could not start before the deadline"
                    ) from error
                if self.budget is not None and not self.budget.try_spend(now):
                    self._gave_up(attempt, "budget", error)
                    raise
                if self.observer is not None:
                    self.observer(RetryScheduled(self.name, attempt, delay, type(error).__name__))
            await asyncio.sleep(delay)

    def _attempt_timed_out(self, error: BaseException) -> bool:
        if self.attempt_timeout is None or not isinstance(error, DeadlineExceeded):
            return False
        overall = current_deadline()
        return overall is None or not overall.expired

    def _gave_up(self, attempts: int, reason: str, error: BaseException) -> None:
        if self.observer is not None:
            self.observer(RetryGaveUp(self.name, attempts, reason, type(error).__name__))

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
            f"max_delay={self.max_delay}, multiplier={self.multiplier})"
        )
