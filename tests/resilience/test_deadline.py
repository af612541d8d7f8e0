from __future__ import annotations

import asyncio

import pytest

from netweave.errors import DeadlineExceeded, UsageError
from netweave.resilience import Deadline, current_deadline, effective_deadline, remaining_time


def test_explicit_time_arithmetic() -> None:
    deadline = Deadline.after(2.5, now=10.0)
    assert deadline.when == 12.5
    assert deadline.remaining(11.0) == 1.5
    assert deadline.remaining(20.0) == 0.0
    assert not deadline.expired_at(12.4)
    assert deadline.expired_at(12.5)
    assert deadline.child(1.0, now=11.0).when == 12.0
    assert deadline.child(5.0, now=11.0) is deadline
    assert Deadline.at(3.0).tighter(Deadline.at(4.0)).when == 3.0
    assert Deadline.at(3.0).tighter(None).when == 3.0
    assert min(Deadline.at(5.0), Deadline.at(4.0)) == Deadline.at(4.0)


def test_bad_input_and_no_loop() -> None:
    with pytest.raises(UsageError):
        Deadline.after(-1.0, now=0.0)
    with pytest.raises(UsageError):
        Deadline(float("nan"))
    with pytest.raises(UsageError, match="running event loop"):
        Deadline.after(1.0)


async def test_block_is_cut_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(DeadlineExceeded):
        async with Deadline.after(2.0):
            await asyncio.sleep(10.0)
    assert loop.time() - start == pytest.approx(2.0)


async def test_block_that_finishes_in_time_is_untouched() -> None:
    async with Deadline.after(2.0) as deadline:
        assert current_deadline() == deadline
        await asyncio.sleep(1.0)
        assert deadline.remaining() == pytest.approx(1.0)
        assert not deadline.expired
    assert current_deadline() is None


async def test_inner_deadline_only_tightens() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with Deadline.after(5.0) as outer:
        async with Deadline.after(50.0) as inner:
            assert inner == outer  # a looser inner deadline changes nothing
            assert current_deadline() == outer
        seen: list[Deadline | None] = []

        async def tight_block() -> None:
            async with Deadline.after(1.0) as tight:
                seen.append(tight)
                seen.append(current_deadline())
                await asyncio.sleep(3.0)

        with pytest.raises(DeadlineExceeded):
            await tight_block()
        assert seen[0] == seen[1]
        assert seen[0] is not None
        assert seen[0] < outer
        assert loop.time() - start == pytest.approx(1.0)
        assert current_deadline() == outer
        assert remaining_time() == pytest.approx(4.0)
        assert remaining_time(0.5) == pytest.approx(0.5)


async def test_outer_deadline_fires_through_a_looser_inner_scope() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    reached_inner_exit = False

    async def nested() -> None:
        nonlocal reached_inner_exit
        async with Deadline.after(1.0):
            try:
                async with Deadline.after(10.0):
                    await asyncio.sleep(5.0)
            finally:
                reached_inner_exit = True

    with pytest.raises(DeadlineExceeded):
        await nested()
    assert reached_inner_exit
    assert loop.time() - start == pytest.approx(1.0)


async def test_child_tasks_inherit_and_enforce_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    seen: list[float | None] = []

    async def child() -> None:
        seen.append(remaining_time())
        async with Deadline.after(100.0):  # looser: still enforced at the parent's deadline
            await asyncio.sleep(10.0)

    start = loop.time()
    async with Deadline.after(3.0):
        task = asyncio.create_task(child())
    # The parent's block ended at once; the child still runs under the inherited deadline.
    with pytest.raises(DeadlineExceeded):
        await task
    assert seen == [pytest.approx(3.0)]
    assert loop.time() - start == pytest.approx(3.0)


async def test_effective_deadline_without_scope() -> None:
    assert effective_deadline() is None
    assert remaining_time() is None
    deadline = effective_deadline(2.0)
    assert deadline is not None
    assert deadline.remaining() == pytest.approx(2.0)


async def test_expired_deadline_cuts_at_the_first_await() -> None:
    deadline = Deadline.after(1.0)
    await asyncio.sleep(2.0)
    assert deadline.expired
    with pytest.raises(DeadlineExceeded):
        async with deadline:
            await asyncio.sleep(0)


async def test_cancellation_is_not_turned_into_a_deadline() -> None:
    async def body() -> None:
        async with Deadline.after(10.0):
            await asyncio.sleep(5.0)

    task = asyncio.create_task(body())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
