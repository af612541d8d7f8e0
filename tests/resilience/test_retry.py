from __future__ import annotations

import asyncio
import random

import pytest

from netweave.errors import (
    CircuitOpen,
    ConnectFailed,
    DeadlineExceeded,
    Overloaded,
    RemoteError,
    UsageError,
)
from netweave.observe import RecordingObserver
from netweave.resilience import (
    Deadline,
    RetryBudget,
    RetryGaveUp,
    RetryPolicy,
    RetryScheduled,
)


class Flaky:
    """Fails with the given errors in turn, then returns ``"ok"``; records call times."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(asyncio.get_running_loop().time())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_full_jitter_is_bounded_and_seeded() -> None:
    policy = RetryPolicy(rng=random.Random(7), base_delay=0.1, max_delay=1.0, multiplier=2.0)
    assert [policy.backoff_cap(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    draws = [policy.backoff(n) for n in range(1, 200)]
    assert all(0.0 <= d <= policy.backoff_cap(n) for n, d in zip(range(1, 200), draws, strict=True))
    again = RetryPolicy(rng=random.Random(7), base_delay=0.1, max_delay=1.0)
    assert [again.backoff(n) for n in range(1, 200)] == draws
    assert len(set(draws)) > 150  # jittered, not constant
    assert policy.backoff_cap(10_000) == 1.0  # no overflow


def test_classification() -> None:
    policy = RetryPolicy(rng=random.Random(1))
    assert policy.is_retryable(ConnectFailed("refused"))
    assert policy.is_retryable(Overloaded("busy"))
    assert not policy.is_retryable(RemoteError("boom"))
    assert not policy.is_retryable(UsageError("bad"))
    assert not policy.is_retryable(CircuitOpen("open", retry_after=1.0))
    assert not policy.is_retryable(ValueError("x"))
    narrow = RetryPolicy(rng=random.Random(1), never_retry=(ConnectFailed,))
    assert not narrow.is_retryable(ConnectFailed("refused"))


def test_bad_configuration() -> None:
    with pytest.raises(UsageError):
        RetryPolicy(rng=random.Random(1), max_attempts=0)
    with pytest.raises(UsageError):
        RetryPolicy(rng=random.Random(1), multiplier=0.5)
    with pytest.raises(UsageError):
        RetryPolicy(rng=random.Random(1), attempt_timeout=0)


async def test_retries_until_success_with_the_drawn_delays() -> None:
    observer = RecordingObserver()
    policy = RetryPolicy(rng=random.Random(3), max_attempts=4, base_delay=1.0, observer=observer)
    expected = RetryPolicy(rng=random.Random(3), base_delay=1.0)
    delays = [expected.backoff(1), expected.backoff(2)]
    op = Flaky([ConnectFailed("a"), ConnectFailed("b")])
    assert await policy.call(op) == "ok"
    gaps = [b - a for a, b in zip(op.times, op.times[1:], strict=False)]
    assert gaps == [pytest.approx(d) for d in delays]
    scheduled = observer.of_type(RetryScheduled)
    assert [(e.attempt, e.error) for e in scheduled] == [(1, "ConnectFailed"), (2, "ConnectFailed")]
    assert [e.delay for e in scheduled] == pytest.approx(delays)


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    observer = RecordingObserver()
    policy = RetryPolicy(rng=random.Random(3), max_attempts=3, observer=observer)
    last = ConnectFailed("third")
    op = Flaky([ConnectFailed("1"), ConnectFailed("2"), last, ConnectFailed("4")])
    with pytest.raises(ConnectFailed) as info:
        await policy.call(op)
    assert info.value is last
    assert len(op.times) == 3
    assert observer.of_type(RetryGaveUp)[0].reason == "attempts"


async def test_non_retryable_error_propagates_at_once() -> None:
    observer = RecordingObserver()
    policy = RetryPolicy(rng=random.Random(3), observer=observer)
    op = Flaky([RemoteError("handler bug")])
    with pytest.raises(RemoteError):
        await policy.call(op)
    assert len(op.times) == 1
    assert observer.of_type(RetryGaveUp)[0].reason == "not-retryable"


async def test_never_sleeps_past_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    observer = RecordingObserver()
    policy = RetryPolicy(
        rng=random.Random(5), max_attempts=100, base_delay=1.0, max_delay=1.0, observer=observer
    )
    op = Flaky([ConnectFailed(str(i)) for i in range(100)])
    start = loop.time()
    with pytest.raises(DeadlineExceeded) as info:
        async with Deadline.after(5.0):
            await policy.call(op)
    assert isinstance(info.value.__cause__, ConnectFailed)
    assert loop.time() - start < 5.0  # gave up before the deadline instead of sleeping into it
    assert observer.of_type(RetryGaveUp)[0].reason == "deadline"
    assert 3 <= len(op.times) < 100


async def test_attempt_timeout_is_retried_but_overall_deadline_is_not() -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []

    async def slow_then_fast() -> str:
        calls.append(loop.time())
        if len(calls) < 3:
            await asyncio.sleep(10.0)
        return "done"

    policy = RetryPolicy(rng=random.Random(9), max_attempts=5, base_delay=0.0, attempt_timeout=1.0)
    assert await policy.call(slow_then_fast) == "done"
    assert len(calls) == 3
    assert calls[2] - calls[0] == pytest.approx(2.0)


async def test_budget_stops_retry_storms() -> None:
    budget = RetryBudget(ratio=0.1, window=10.0, min_retries=2)
    observer = RecordingObserver()
    policy = RetryPolicy(
        rng=random.Random(2), max_attempts=5, base_delay=0.0, budget=budget, observer=observer
    )
    failures = 0
    for _ in range(20):
        with pytest.raises(ConnectFailed):
            await policy.call(Flaky([ConnectFailed(str(i)) for i in range(10)]))
        failures += 1
    # 20 requests * 0.1 + 2 = 4 retries granted in the window, no more.
    retries = len(observer.of_type(RetryScheduled))
    assert retries == 4
    # Every call ran out of budget before it ran out of attempts.
    assert [e.reason for e in observer.of_type(RetryGaveUp)] == ["budget"] * 20
    assert failures == 20


async def test_cancellation_is_never_retried() -> None:
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(100)

    policy = RetryPolicy(rng=random.Random(1), max_attempts=5)
    task = asyncio.create_task(policy.call(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_budget_window_slides() -> None:
    budget = RetryBudget(ratio=0.5, window=10.0, min_retries=0, buckets=10)
    for _ in range(10):
        budget.record_request(0.5)
    assert budget.allowance(0.5) == 5
    assert all(budget.try_spend(1.0) for _ in range(5))
    assert not budget.try_spend(1.0)
    # The requests' bucket [0, 1) leaves the window at 10; the retries' [1, 2) at 11.
    assert budget.allowance(10.5) == 0
    for _ in range(4):
        budget.record_request(11.5)
    assert budget.allowance(11.5) == 2
    # Far in the future, everything has aged out.
    assert budget.allowance(1000.0) == 0
    with pytest.raises(UsageError):
        RetryBudget(ratio=-1)
