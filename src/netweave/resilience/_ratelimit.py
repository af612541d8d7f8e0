"""A token-bucket rate limiter: a sans-IO core and an async ``acquire``.

Rules of this file: the bucket holds at most ``burst`` tokens and refills at
``rate`` tokens per second of loop time. The core never reads a clock; every
method takes ``now``. Waiting callers *reserve* their tokens up front (the
balance may go negative), so they are served in arrival order and nobody
starves; a waiter that is cancelled, or gives up because of its deadline,
hands its reservation back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, final

from ..errors import DeadlineExceeded, UsageError
from ._deadline import current_deadline
from ._events import RateLimited

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["TokenBucket"]


@final
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        observer: Observer | None = None,
        name: str = "rate-limit",
    ) -> None:
        if not rate > 0 or not burst >= 1:
            raise UsageError(f"TokenBucket needs rate > 0 and burst >= 1 (got {rate}, {burst})")
        self.rate = float(rate)
        self.burst = float(burst)
        self.observer = observer
        self.name = name
        self._tokens = float(burst)
        self._stamp: float | None = None

    # -- sans-IO core -----------------------------------------------------------

    def _refill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
            return
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now

    def _check(self, tokens: float) -> None:
        if not 0 < tokens <= self.burst:
            raise UsageError(
                f"{self.name}: cannot take {tokens} tokens at once; a request must ask for "
                f"more than 0 and at most the burst size ({self.burst})"
            )

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative while reservations are pending)."""
        self._refill(now)
        return self._tokens

    def try_take(self, now: float, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if they are there now; ``False`` (nothing taken) otherwise."""
        self._check(tokens)
        self._refill(now)
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    def reserve(self, now: float, tokens: float = 1.0) -> float:
        """Take ``tokens`` now, going into debt if needed; return how many seconds
        the caller must wait before using them (0 when they were there)."""
        self._check(tokens)
        self._refill(now)
        self._tokens -= tokens
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def refund(self, now: float, tokens: float) -> None:
        """Give back a reservation that will not be used (capped at ``burst``)."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + tokens)

    # -- async wrapper ----------------------------------------------------------

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until ``tokens`` may be used.

        Raises ``DeadlineExceeded`` at once, without waiting, if the wait would
        end after the current deadline; ``UsageError`` if ``tokens`` exceeds the
        burst size.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        delay = self.reserve(now, tokens)
        if delay <= 0:
            return
        deadline = current_deadline()
        if deadline is not None and now + delay > deadline.when:
            self.refund(now, tokens)
            raise DeadlineExceeded(
                f"{self.name}: {tokens} tokens would be available only in {delay:.3f} s, "
                "after the deadline"
            )
        if self.observer is not None:
            self.observer(RateLimited(self.name, tokens, delay))
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.refund(loop.time(), tokens)
            raise

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst})"
