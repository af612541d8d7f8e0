"""Resilience: deadlines, retries, a retry budget, circuit breakers, rate limits,
connection pools and graceful shutdown.

Every piece reads time only from the running loop (so it runs unchanged under
the simulator's virtual clock) and randomness only from an injected
``random.Random``. The cores of the time-based pieces (``RetryBudget``,
``CircuitBreaker``, ``TokenBucket``) are sans-IO and take ``now`` explicitly.

One deadline flows through everything::

    async with Deadline.after(2.0):
        channel = await pool.acquire()              # waits no longer than the deadline
        reply = await retry.call(lambda: rpc.call("get", b"key"))  # sends the remaining time

See ``docs/resilience.md``.
"""

from ._breaker import BreakerState, CircuitBreaker
from ._budget import RetryBudget
from ._deadline import Deadline, current_deadline, effective_deadline, remaining_time
from ._events import BreakerStateChanged, PoolWaited, RateLimited, RetryGaveUp, RetryScheduled
from ._pool import Pool, Poolable
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._shutdown import Drainable, InFlight, graceful_shutdown

__all__ = [
    "BreakerState",
    "BreakerStateChanged",
    "CircuitBreaker",
    "Deadline",
    "Drainable",
    "InFlight",
    "Pool",
    "PoolWaited",
    "Poolable",
    "RateLimited",
    "RetryBudget",
    "RetryGaveUp",
    "RetryPolicy",
    "RetryScheduled",
    "TokenBucket",
    "current_deadline",
    "effective_deadline",
    "graceful_shutdown",
    "remaining_time",
]
