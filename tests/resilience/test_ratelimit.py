from __future__ import annotations

import asyncio

import pytest

from netweave.errors import DeadlineExceeded, UsageError
from netweave.observe import RecordingObserver
from netweave.resilience import Deadline, RateLimited, TokenBucket


def test_sans_io_refill_and_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=4)
    assert all(bucket.try_take(0.0) for _ in range(4))
    assert not bucket.try_take(0.0)
    assert not bucket.try_take(0.4)  # 0.8 tokens
    assert bucket.try_take(0.5)  # 1 token
    assert bucket.available(100.0) == 4.0  # capped at burst
    assert bucket.try_take(100.0, 4)
    assert bucket.reserve(100.0, 2) == pytest.approx(1.0)  # debt of 2 at 2/s
    assert bucket.available(100.0) == -2.0
    bucket.refund(100.0, 2)
    assert bucket.available(100.0) == 0.0


def test_bad_requests() -> None:
    with pytest.raises(UsageError):
        TokenBucket(rate=0, burst=1)
    bucket = TokenBucket(rate=1, burst=2)
    with pytest.raises(UsageError):
        bucket.try_take(0.0, 3)
    with pytest.raises(UsageError):
        bucket.reserve(0.0, 0)


async def test_acquire_paces_callers_in_order() -> None:
    loop = asyncio.get_running_loop()
    observer = RecordingObserver()
    bucket = TokenBucket(rate=10.0, burst=2, observer=observer)
    done: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        await bucket.acquire()
        done.append((i, loop.time()))

    start = loop.time()
    await asyncio.gather(*(caller(i) for i in range(6)))
    assert [i for i, _ in done] == list(range(6))
    offsets = [t - start for _, t in done]
    assert offsets == [pytest.approx(x) for x in (0.0, 0.0, 0.1, 0.2, 0.3, 0.4)]
    assert len(observer.of_type(RateLimited)) == 4


async def test_acquire_refuses_a_wait_past_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate=1.0, burst=1)
    await bucket.acquire()
    start = loop.time()
    with pytest.raises(DeadlineExceeded):
        async with Deadline.after(0.5):
            await bucket.acquire()
    assert loop.time() == start  # refused at once, no waiting
    assert bucket.available(loop.time()) == pytest.approx(0.0)  # reservation handed back


async def test_cancelled_waiter_refunds() -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate=1.0, burst=1)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.25)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.available(loop.time()) == pytest.approx(0.25)
