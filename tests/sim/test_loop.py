"""SimLoop semantics: ordering, virtual time, asyncio compatibility, limits, deadlocks."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import threading
from collections.abc import Callable, Coroutine, Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave.errors import UsageError
from netweave.sim import Deadlock, SimLoop, SimulationLimitExceeded, current_host


@pytest.fixture
def loop() -> Iterator[SimLoop]:
    sim_loop = SimLoop()
    yield sim_loop
    finish(sim_loop)


def finish(loop: SimLoop) -> None:
    """Cancel what is left (after a deadlock, say), let it unwind, close."""
    assert loop.shutdown() == 0


def run(loop: SimLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return loop.run_until_complete(coro)


# -- ordering ------------------------------------------------------------------------


def test_ready_callbacks_run_first_in_first_out(loop: SimLoop) -> None:
    seen: list[int] = []
    for i in range(10):
        loop.call_soon(seen.append, i)
    loop.run_until_idle()
    assert seen == list(range(10))


def test_equal_deadlines_run_in_scheduling_order(loop: SimLoop) -> None:
    seen: list[str] = []
    # Mixed APIs, all landing on t = 2 s exactly, scheduled in this order.
    loop.call_at_ns(2_000_000_000, seen.append, "a")
    loop.call_later(2.0, seen.append, "b")
    loop.call_at(2.0, seen.append, "c")
    loop.call_at_ns(1_000_000_000, seen.append, "early")
    loop.call_at_ns(2_000_000_000, seen.append, "d")
    loop.run_until_idle()
    assert seen == ["early", "a", "b", "c", "d"]
    assert loop.time_ns() == 2_000_000_000


def test_ready_callbacks_run_before_timers_due_now(loop: SimLoop) -> None:
    seen: list[str] = []

    def first() -> None:
        loop.call_later(0, seen.append, "timer")
        loop.call_soon(seen.append, "soon")

    loop.call_soon(first)
    loop.run_until_idle()
    assert seen == ["soon", "timer"]
    assert loop.time_ns() == 0


def test_clock_jumps_to_the_next_timer(loop: SimLoop) -> None:
    times: list[int] = []

    async def main() -> None:
        for delay in (5, 0.25, 3600):
            await asyncio.sleep(delay)
            times.append(loop.time_ns())

    run(loop, main())
    assert times == [5_000_000_000, 5_250_000_000, 3_605_250_000_000]


def test_time_is_integer_nanoseconds(loop: SimLoop) -> None:
    async def main() -> None:
        await asyncio.sleep(1e-9)
        assert loop.time_ns() == 1
        for _ in range(1000):
            await asyncio.sleep(0.001)
        assert loop.time_ns() == 1_000_000_001
        await asyncio.sleep(1e-12)  # a positive delay always moves the clock
        assert loop.time_ns() == 1_000_000_002

    run(loop, main())
    assert loop.time() == 1_000_000_002 / 1e9


@settings(max_examples=200, deadline=None)
@given(when=st.floats(min_value=0.0, max_value=1e8, allow_nan=False))
def test_call_at_fires_at_the_first_nanosecond_not_before_when(when: float) -> None:
    loop = SimLoop()
    fired: list[float] = []
    loop.call_at(when, lambda: fired.append(loop.time()))
    loop.run_until_idle()
    ns = loop.time_ns()
    assert fired == [loop.time()]
    assert loop.time() == ns / 10**9  # exact division, as the loop's clock does it
    assert ns == math.ceil(Fraction(when) * 10**9)
    assert loop.time() >= when
    loop.close()


def test_a_week_long_sleep_finishes_at_once(loop: SimLoop) -> None:
    week = 7 * 24 * 3600

    async def main() -> float:
        await asyncio.sleep(week)
        return loop.time()

    assert run(loop, main()) == week
    assert loop.steps < 10


def test_cancelled_timers_never_run_and_the_heap_is_compacted(loop: SimLoop) -> None:
    seen: list[int] = []
    handles = [loop.call_later(10 + i, seen.append, i) for i in range(1000)]
    for handle in handles[:900]:
        handle.cancel()
    assert loop.timer_entries < 200  # compacted, not 1000 entries with 900 dead
    loop.run_until_idle()
    assert seen == list(range(900, 1000))
    assert loop.timer_entries == 0


def test_a_cancelled_timer_does_not_move_the_clock(loop: SimLoop) -> None:
    loop.call_later(100, lambda: None).cancel()
    loop.call_later(1, lambda: None)
    loop.run_until_idle()
    assert loop.time() == 1


def test_infinite_delays_never_fire(loop: SimLoop) -> None:
    handle = loop.call_later(math.inf, pytest.fail)
    loop.call_at(math.inf, pytest.fail)
    assert loop.run_until_idle()
    assert loop.time() == 0
    handle.cancel()
    with pytest.raises(ValueError, match="NaN"):
        loop.call_later(math.nan, print)


# -- asyncio compatibility -------------------------------------------------------------


def test_timeout_and_wait_for_fire_at_their_deadline(loop: SimLoop) -> None:
    async def main() -> list[float]:
        marks = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(10)
        marks.append(loop.time())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.5)
        marks.append(loop.time())
        assert await asyncio.wait_for(asyncio.sleep(1, "done"), 2) == "done"
        marks.append(loop.time())
        return marks

    assert run(loop, main()) == [2.5, 3.0, 4.0]


def test_gather_and_taskgroup(loop: SimLoop) -> None:
    async def child(delay: float, fail: bool = False) -> float:
        await asyncio.sleep(delay)
        if fail:
            raise KeyError(delay)
        return delay

    async def main() -> None:
        assert await asyncio.gather(child(3), child(1), child(2)) == [3, 1, 2]
        assert loop.time() == 3
        tasks = []

        async def grouped() -> None:
            async with asyncio.TaskGroup() as group:
                tasks.append(group.create_task(child(100)))
                group.create_task(child(1, fail=True))

        with pytest.raises(ExceptionGroup) as info:
            await grouped()
        assert tasks[0].cancelled()
        assert info.group_contains(KeyError)
        assert loop.time() == 4

    run(loop, main())


def test_async_generators_are_closed_by_shutdown_asyncgens(loop: SimLoop) -> None:
    closed: list[bool] = []

    async def numbers() -> Any:
        try:
            for i in range(10):
                yield i
                await asyncio.sleep(1)
        finally:
            closed.append(True)

    async def main() -> None:
        agen = numbers()
        assert await agen.__anext__() == 0
        main.agen = agen  # type: ignore[attr-defined]  # keep it alive, unfinished

    run(loop, main())
    assert closed == []
    run(loop, loop.shutdown_asyncgens())
    assert closed == [True]


def test_runner_with_loop_factory() -> None:
    async def main() -> float:
        await asyncio.sleep(60)
        return asyncio.get_running_loop().time()

    with asyncio.Runner(loop_factory=SimLoop) as runner:
        assert runner.run(main()) == 60
        assert isinstance(runner.get_loop(), asyncio.AbstractEventLoop)


def test_run_in_executor_runs_inline(loop: SimLoop) -> None:
    def work(a: int, b: int) -> int:
        assert threading.current_thread() is threading.main_thread()
        return a + b

    def broken() -> None:
        raise LookupError("nope")

    async def main() -> None:
        assert await loop.run_in_executor(None, work, 2, 3) == 5
        assert await asyncio.to_thread(work, 4, 5) == 9
        with pytest.raises(LookupError):
            await loop.run_in_executor(None, broken)
        assert loop.time() == 0

    run(loop, main())


def test_task_factory_and_names(loop: SimLoop) -> None:
    made: list[str] = []

    def factory(lp: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def work() -> int:
        return 7

    async def main() -> int:
        return await asyncio.create_task(work(), name="worker")

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    assert run(loop, main()) == 7
    assert made == [
        "test_task_factory_and_names.<locals>.main",
        "test_task_factory_and_names.<locals>.work",
    ]


def test_exception_handler_api(loop: SimLoop, caplog: pytest.LogCaptureFixture) -> None:
    contexts: list[dict[str, Any]] = []

    def boom() -> None:
        raise ZeroDivisionError("in callback")

    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(boom)
    loop.run_until_idle()
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert "Exception in callback" in contexts[0]["message"]

    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(boom)
        loop.run_until_idle()
    assert "Exception in callback" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_debug_mode_checks_callbacks(loop: SimLoop) -> None:
    async def coro() -> None:
        pass

    loop.set_debug(True)
    assert loop.get_debug()
    with pytest.raises(TypeError):
        loop.call_soon(coro)  # type: ignore[arg-type]
    seen: list[int] = []
    loop.call_later(1, seen.append, 1).cancel()
    loop.call_later(2, seen.append, 2)
    loop.run_until_idle()
    assert seen == [2]


def test_futures_follow_the_debug_flag_also_once_closed(loop: SimLoop) -> None:
    assert loop.create_future().get_loop() is loop
    assert not loop.get_debug()
    assert "created at" not in repr(loop.create_future())
    loop.set_debug(True)
    assert loop.get_debug()
    assert "created at" in repr(loop.create_future())  # debug futures note their origin
    loop.set_debug(False)
    loop.close()
    assert not loop.get_debug()
    assert loop.create_future().get_loop() is loop  # as asyncio's loops do


def test_call_soon_threadsafe_refuses_other_threads(loop: SimLoop) -> None:
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            loop.call_soon_threadsafe(print)
        except UsageError as exc:
            errors.append(exc)

    async def main() -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=10)

    run(loop, main())
    assert len(errors) == 1
    assert "single-threaded" in str(errors[0])


def test_stop_close_and_reentry(loop: SimLoop) -> None:
    seen: list[int] = []

    def stopper() -> None:
        seen.append(1)
        loop.stop()
        loop.call_soon(seen.append, 2)

    loop.call_soon(stopper)
    loop.run_forever()
    assert seen == [1]
    loop.run_until_idle()
    assert seen == [1, 2]

    async def nested() -> None:
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_until_complete(coro)
        coro.close()
        with pytest.raises(RuntimeError, match="running"):
            loop.close()

    run(loop, nested())
    loop.close()
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


# -- driving a run ---------------------------------------------------------------------


def test_run_until_time_and_condition(loop: SimLoop) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1)
            ticks.append(loop.time())

    task = loop.create_task(ticker())
    assert loop.run_until_time_ns(3_500_000_000)
    assert ticks == [1, 2, 3]
    assert loop.time_ns() == 3_500_000_000
    assert loop.run_until_condition(lambda: len(ticks) >= 5) == "condition"
    assert loop.time() == 5
    assert loop.run_until_condition(lambda: False, until_ns=7_000_000_000) == "until"
    assert ticks[-1] == 7
    task.cancel()
    assert loop.run_until_idle()
    assert task.cancelled()


def test_step_limit() -> None:
    loop = SimLoop(max_steps=1000)

    async def spin() -> None:
        while True:  # noqa: ASYNC110  (a busy loop, on purpose)
            await asyncio.sleep(0)

    with pytest.raises(SimulationLimitExceeded, match="step limit") as info:
        loop.run_until_complete(spin())
    assert info.value.limit == "steps"
    assert loop.steps == 1000
    finish_limited(loop)


def test_time_limit() -> None:
    loop = SimLoop(max_time=10)

    async def forever() -> None:
        while True:  # noqa: ASYNC110  (never ends, on purpose)
            await asyncio.sleep(3)

    with pytest.raises(SimulationLimitExceeded, match="max_time=10") as info:
        loop.run_until_complete(forever())
    assert info.value.limit == "time"
    assert loop.time() == 10
    finish_limited(loop)


def finish_limited(loop: SimLoop) -> None:
    assert loop.shutdown() == 0
    assert loop.is_closed()


def test_shutdown_gives_up_on_tasks_that_refuse_to_die() -> None:
    loop = SimLoop()

    async def stubborn() -> None:
        for _ in range(100):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)

    loop.create_task(stubborn())
    loop.run_until_time_ns(500_000_000)  # started, and asleep
    assert loop.shutdown(budget=10) == 1
    assert loop.is_closed()


# -- deadlocks -----------------------------------------------------------------------


def test_deadlock_names_every_blocked_task(loop: SimLoop) -> None:
    event = asyncio.Event()

    async def waiter() -> None:
        await event.wait()

    async def main() -> None:
        side = asyncio.create_task(waiter(), name="the-waiter")
        await asyncio.sleep(5)
        assert not side.done()
        await loop.create_future()

    with pytest.raises(Deadlock) as info:
        run(loop, main())
    message = str(info.value)
    assert "deadlock at simulated time 5.000000000 s" in message
    assert "the-waiter" in message
    assert "await event.wait()" in message
    assert "await loop.create_future()" in message
    assert len(info.value.blocked) == 2
    assert "main" in info.value.blocked[0]  # the main task comes first


def test_infinite_sleep_is_a_deadlock(loop: SimLoop) -> None:
    with pytest.raises(Deadlock, match="sleep"):
        run(loop, asyncio.sleep(math.inf))


def test_run_forever_with_nothing_to_do_is_a_deadlock(loop: SimLoop) -> None:
    with pytest.raises(Deadlock, match="run_forever"):
        loop.run_forever()


def test_idle_and_until_runs_are_not_deadlocks(loop: SimLoop) -> None:
    async def stuck() -> None:
        await loop.create_future()

    loop.create_task(stuck())
    assert loop.run_until_idle()
    assert loop.run_until_time_ns(10**12)
    assert loop.time() == 1000


# -- hosts -----------------------------------------------------------------------------


def in_host(name: str, fn: Callable[[], Any]) -> Any:
    ctx = contextvars.copy_context()
    ctx.run(current_host.set, name)
    return ctx.run(fn)


def test_cancel_host_cancels_its_tasks_and_timers_only(loop: SimLoop) -> None:
    fired: list[str] = []
    cancelled: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    a = in_host("a", lambda: loop.create_task(worker("a")))
    b = in_host("b", lambda: loop.create_task(worker("b")))
    in_host("a", lambda: loop.call_later(5, fired.append, "a-timer"))
    loop.call_later(5, fired.append, "driver-timer")
    loop.run_until_time_ns(1_000_000_000)
    assert loop.host_tasks("a") == [a]
    assert loop.host_of_task(b) == "b"

    assert loop.cancel_host("a") == 1
    loop.run_until_time_ns(10_000_000_000)
    assert cancelled == ["a"]
    assert a.cancelled()
    assert not b.done()
    assert fired == ["driver-timer"]
    assert loop.host_tasks("a") == []
    b.cancel()


# -- refused APIs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda lp: lp.add_reader(0, print), "file descriptors"),
        (lambda lp: lp.add_writer(0, print), "file descriptors"),
        (lambda lp: lp.add_signal_handler(2, print), "signals"),
    ],
)
def test_refused_sync_apis(loop: SimLoop, call: Callable[[SimLoop], Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        call(loop)
    assert loop.remove_reader(0) is False
    assert loop.remove_signal_handler(2) is False


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda lp: lp.sock_recv(None, 1), "real sockets"),
        (lambda lp: lp.sock_connect(None, ("127.0.0.1", 1)), "real sockets"),
        (lambda lp: lp.subprocess_exec(asyncio.SubprocessProtocol, "ls"), "process"),
        (lambda lp: lp.subprocess_shell(asyncio.SubprocessProtocol, "ls"), "process"),
        (lambda lp: lp.create_unix_server(asyncio.Protocol, "/tmp/x"), "file descriptors"),
        (lambda lp: lp.connect_read_pipe(asyncio.Protocol, None), "file descriptors"),
        (lambda lp: lp.create_connection(asyncio.Protocol, "a", 1, ssl=True), "OpenSSL"),
        (lambda lp: lp.create_connection(asyncio.Protocol, "a", 1), "Simulation"),
        (lambda lp: lp.create_server(asyncio.Protocol, "a", 1), "Simulation"),
        (lambda lp: lp.getaddrinfo("a", 1), "Simulation"),
        (lambda lp: lp.create_datagram_endpoint(asyncio.DatagramProtocol, "/p"), "Unix"),
    ],
)
def test_refused_async_apis(loop: SimLoop, call: Callable[[SimLoop], Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        run(loop, call(loop))


def test_subprocesses_through_asyncio_are_refused(loop: SimLoop) -> None:
    with pytest.raises(UsageError, match="process"):
        run(loop, asyncio.create_subprocess_exec("true"))
