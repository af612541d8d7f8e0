"""A retry budget: retries may add at most a fraction of recent traffic.

Rules of this file: sans-IO, every method takes ``now`` (a loop time). Counts
live in a fixed ring of time buckets covering the window, so memory is
bounded whatever the traffic.
"""

from __future__ import annotations

import math
from typing import final

from ..errors import UsageError

__all__ = ["RetryBudget"]


@final
class RetryBudget:
    """Allows a retry while retries in the last ``window`` seconds stay below
    ``ratio`` times the requests in that window, plus ``min_retries`` (so a quiet
    client can still retry at all).

    One budget is meant to be shared by every caller of one service: when the
    service is down, retries stop at ``ratio`` extra load instead of multiplying it.
    Time is bucketed into ``buckets`` slices of the window; a request or retry
    counts until its slice leaves the window.
    """

    __slots__ = (
        "_bucket_span",
        "_epoch",
        "_requests",
        "_retries",
        "min_retries",
        "ratio",
        "window",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        window: float = 10.0,
        min_retries: int = 10,
        buckets: int = 10,
    ) -> None:
        if not ratio >= 0 or not window > 0 or min_retries < 0 or buckets < 1:
            raise UsageError(
                "RetryBudget needs ratio >= 0, window > 0, min_retries >= 0 and buckets >= 1"
            )
        self.ratio = ratio
        self.window = window
        self.min_retries = min_retries
        self._bucket_span = window / buckets
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._epoch: int | None = None  # index of the newest bucket, in bucket spans

    def _advance(self, now: float) -> int:
        """Rotate out buckets that left the window; return the current slot."""
        epoch = math.floor(now / self._bucket_span)
        size = len(self._requests)
        if self._epoch is None:
            self._epoch = epoch
        elif epoch > self._epoch:
            for step in range(min(epoch - self._epoch, size)):
                slot = (self._epoch + 1 + step) % size
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._epoch = epoch
        # A time earlier than the newest bucket (clocks never go back on a loop,
        # but callers may pass stale readings) counts into the newest bucket.
        return self._epoch % size

    def record_request(self, now: float) -> None:
        """Count one original request (not a retry)."""
        self._requests[self._advance(now)] += 1

    def allowance(self, now: float) -> float:
        """How many more retries the budget grants right now (may be fractional)."""
        self._advance(now)
        granted = self.ratio * sum(self._requests) + self.min_retries
        return max(0.0, granted - sum(self._retries))

    def try_spend(self, now: float) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) if spent."""
        slot = self._advance(now)
        if self.allowance(now) < 1:
            return False
        self._retries[slot] += 1
        return True

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, window={self.window}, "
            f"requests={sum(self._requests)}, retries={sum(self._retries)})"
        )
