from __future__ import annotations

import asyncio
import random

import pytest

from netweave.errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    DeadlineExceeded,
    PoolExhausted,
    RemoteError,
    UsageError,
)
from netweave.observe import RecordingObserver
from netweave.resilience import Deadline, Pool, PoolWaited


class FakeConn:
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.closed = False
        self.borrowed = False
        self.healthy = True

    async def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"FakeConn({self.ident})"


class Factory:
    """Makes FakeConns, optionally slowly or failing, as the seeded rng says."""

    def __init__(
        self, rng: random.Random | None = None, fail: float = 0.0, delay: float = 0.0
    ) -> None:
        self.rng = rng
        self.fail = fail
        self.delay = delay
        self.made: list[FakeConn] = []

    async def __call__(self) -> FakeConn:
        if self.delay:
            span = self.delay if self.rng is None else self.rng.uniform(0, self.delay)
            await asyncio.sleep(round(span, 2))
        if self.rng is not None and self.rng.random() < self.fail:
            raise ConnectFailed("refused (injected)")
        conn = FakeConn(len(self.made))
        self.made.append(conn)
        return conn

    @property
    def live(self) -> list[FakeConn]:
        return [c for c in self.made if not c.closed]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_reuse_and_bounds() -> None:
    factory = Factory()
    async with Pool(factory, max_size=2) as pool:
        async with pool.checkout() as a:
            pass
        async with pool.checkout() as b:
            assert b is a  # reused
        a1 = await pool.acquire()
        a2 = await pool.acquire()
        assert (pool.size, pool.in_use, pool.idle) == (2, 2, 0)
        pool.release(a1)
        pool.release(a2)
        assert (pool.size, pool.in_use, pool.idle) == (2, 0, 2)
        with pytest.raises(UsageError):
            pool.release(a1)
    await settle()
    assert factory.live == []
    with pytest.raises(ClosedResourceError):
        await pool.acquire()


async def test_error_in_block_discards_but_remote_error_keeps() -> None:
    factory = Factory()
    async with Pool(factory, max_size=1) as pool:
        with pytest.raises(RemoteError):
            async with pool.checkout() as first:
                raise RemoteError("app said no")
        borrowed: list[FakeConn] = []

        async def fail_with_it() -> None:
            async with pool.checkout() as second:
                borrowed.append(second)
                raise ConnectionBroken("reset")

        with pytest.raises(ConnectionBroken):
            await fail_with_it()
        assert borrowed == [first]
        await settle()
        assert first.closed
        async with pool.checkout() as third:
            assert third is not first
        assert pool.discarded == 1


async def test_waiter_gets_the_released_connection_first_come_first_served() -> None:
    loop = asyncio.get_running_loop()
    observer = RecordingObserver()
    async with Pool(Factory(), max_size=1, observer=observer) as pool:
        held = await pool.acquire()
        order: list[int] = []

        async def wait(i: int) -> None:
            async with pool.checkout():
                order.append(i)
                await asyncio.sleep(1.0)

        tasks = [asyncio.create_task(wait(i)) for i in range(3)]
        await asyncio.sleep(0.5)
        assert pool.waiting == 3
        start = loop.time()
        pool.release(held)
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        assert loop.time() - start == pytest.approx(3.0)
        assert [e.outcome for e in observer.of_type(PoolWaited)] == ["acquired"] * 3


async def test_waiting_is_bounded_by_timeout_and_deadline() -> None:
    loop = asyncio.get_running_loop()
    async with Pool(Factory(), max_size=1) as pool:
        held = await pool.acquire()
        start = loop.time()
        with pytest.raises(PoolExhausted):
            await pool.acquire(timeout=2.0)
        assert loop.time() - start == pytest.approx(2.0)
        start = loop.time()
        with pytest.raises(DeadlineExceeded):
            async with Deadline.after(1.5):
                await pool.acquire(timeout=10.0)
        assert loop.time() - start == pytest.approx(1.5)
        assert pool.waiting == 0
        pool.release(held)
        assert pool.idle == 1


async def test_cancelled_waiter_that_was_already_handed_a_connection_passes_it_on() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        held = await pool.acquire()
        first = asyncio.create_task(pool.acquire())
        second = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.1)
        pool.release(held)  # handed to `first`, which has not run yet
        first.cancel()  # ... and is cancelled before it could take it
        with pytest.raises(asyncio.CancelledError):
            await first
        got = await asyncio.wait_for(second, timeout=1.0)
        assert got is held
        pool.release(got)
        assert (pool.size, pool.in_use, pool.idle) == (1, 0, 1)


async def test_health_check_replaces_dead_connections() -> None:
    factory = Factory()

    async def check(conn: FakeConn) -> bool:
        return conn.healthy

    async with Pool(factory, max_size=2, health_check=check) as pool:
        async with pool.checkout() as a:
            pass
        a.healthy = False
        async with pool.checkout() as b:
            assert b is not a
        await settle()
        assert a.closed
        assert pool.size == 1

        async def raising(conn: FakeConn) -> bool:
            raise ConnectionBroken("check failed")

    async with Pool(factory, max_size=1, health_check=raising) as pool2:
        async with pool2.checkout() as c:
            pass
        async with pool2.checkout() as d:
            assert d is not c


async def test_idle_connections_are_evicted() -> None:
    factory = Factory()
    async with Pool(factory, max_size=3, idle_timeout=10.0) as pool:
        conns = [await pool.acquire() for _ in range(3)]
        for conn in conns:
            pool.release(conn)
            await asyncio.sleep(4.0)
        # released at t=0, 4, 8; at t=12 the first has been idle 12 s
        assert pool.idle == 2
        await asyncio.sleep(10.0)
        assert pool.idle == 0
        assert pool.size == 0
        await settle()
        assert factory.live == []


async def test_factory_failure_frees_the_slot() -> None:
    calls = 0

    async def factory() -> FakeConn:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectFailed("refused")
        return FakeConn(calls)

    async with Pool(factory, max_size=1) as pool:
        with pytest.raises(ConnectFailed):
            await pool.acquire()
        assert pool.size == 0
        conn = await pool.acquire(timeout=1.0)
        pool.release(conn)


async def test_close_fails_waiters_and_closes_returned_connections() -> None:
    factory = Factory()
    pool = Pool(factory, max_size=1)
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.1)
    await pool.close()
    with pytest.raises(ClosedResourceError):
        await waiter
    pool.release(held)
    await pool.close()
    assert held.closed
    assert pool.size == 0


@pytest.mark.parametrize("seed", range(8))
async def test_thousand_checkouts_with_cancellations_and_failures_leak_nothing(seed: int) -> None:
    rng = random.Random(seed)

    def tick(most: int) -> float:
        # Times on a 10 ms grid, so releases, timeouts and cancellations often land
        # in the same loop iteration: the races a pool must survive.
        return rng.randint(0, most) / 100

    factory = Factory(rng=random.Random(seed + 1000), fail=0.1, delay=0.03)

    async def check(conn: FakeConn) -> bool:
        await asyncio.sleep(tick(1))
        return rng.random() > 0.05

    pool = Pool(factory, max_size=5, health_check=check, idle_timeout=0.5)
    outcomes: dict[str, int] = {}

    async def one(i: int) -> None:
        try:
            async with pool.checkout(timeout=rng.choice([None, 0.05, 0.2, 1.0])) as conn:
                assert not conn.borrowed, "one connection handed to two borrowers"
                assert not conn.closed
                conn.borrowed = True
                try:
                    await asyncio.sleep(tick(10))
                    if rng.random() < 0.1:
                        raise ConnectionBroken("injected failure")
                finally:
                    conn.borrowed = False
            # Right after a release (which may hand the connection to a waiter that
            # has not run yet), cancel some other checkout: the hardest race.
            if rng.random() < 0.2:
                victim = rng.choice(tasks)
                if victim is not asyncio.current_task():
                    victim.cancel()
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except (ConnectFailed, ConnectionBroken, PoolExhausted) as exc:
            key = type(exc).__name__
            outcomes[key] = outcomes.get(key, 0) + 1

    tasks: list[asyncio.Task[None]] = []
    for i in range(1000):
        task = asyncio.create_task(one(i))
        tasks.append(task)
        if rng.random() < 0.15:
            asyncio.get_running_loop().call_later(tick(10), task.cancel)
        assert pool.size <= pool.max_size
        await asyncio.sleep(tick(2))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    await settle()
    # Nothing leaked: every connection still open is idle in the pool, and no more.
    assert pool.in_use == 0
    assert pool.waiting == 0
    assert pool.size == pool.idle
    assert len(factory.live) == pool.size
    assert outcomes.get("ok", 0) > 300
    assert cancelled > 0
    await pool.close()
    assert factory.live == []
    assert pool.size == 0
