"""Simulation: spawning host mains, crash and restart, scheduled actions, runs, failures."""

from __future__ import annotations

import asyncio
import random  # determinism: ok (served by the simulation under test)
import time  # determinism: ok (served by the simulation under test)

import pytest

from netweave.errors import DeadlineExceeded, UsageError
from netweave.sim import (
    Deadlock,
    HostFailed,
    Simulation,
    SimulationError,
    SimulationLimitExceeded,
    UnhandledError,
    current_host,
)


@pytest.fixture
def sim() -> Simulation:
    return Simulation(seed=1)


async def sleeper(log: list[str], delay: float = 10.0) -> None:
    name = current_host.get()
    log.append(f"{name} start {asyncio.get_running_loop().time()}")
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        log.append(f"{name} cancelled {asyncio.get_running_loop().time()}")
        raise
    log.append(f"{name} done {asyncio.get_running_loop().time()}")


def test_spawned_mains_run_as_their_host(sim: Simulation) -> None:
    sim.add_host("a")
    seen: list[str | None] = []

    async def main() -> None:
        seen.append(current_host.get())
        child = asyncio.create_task(asyncio.sleep(1))
        assert child in sim.host_tasks("a")
        await child

    task = sim.spawn("a", main)
    assert task.get_name().startswith("a:")
    sim.run()
    assert seen == ["a"]
    assert task.done()
    assert sim.host_tasks("a") == []
    sim.close()


def test_crash_cancels_the_host_and_restart_runs_its_mains_again(sim: Simulation) -> None:
    log: list[str] = []
    sim.add_host("a")
    sim.add_host("b")
    first = sim.spawn("a", sleeper, log)
    sim.spawn("b", sleeper, log, 3.0)
    sim.at(2, sim.crash, "a")
    sim.at(5, sim.restart, "a")
    sim.run(until=20)
    assert first.cancelled()
    assert log == [
        "a start 0.0",
        "b start 0.0",
        "a cancelled 2.0",
        "b done 3.0",
        "a start 5.0",
        "a done 15.0",
    ]
    assert sim.host_tasks("a") == []
    sim.close()


def test_crash_and_restart_return_the_tasks(sim: Simulation) -> None:
    log: list[str] = []
    sim.add_host("a")
    sim.spawn("a", sleeper, log)
    sim.spawn("a", sleeper, log, 100.0)
    sim.run(until=1)
    assert len(sim.host_tasks("a")) == 2
    assert sim.crash("a") == 2
    with pytest.raises(UsageError, match="crashed"):
        sim.spawn("a", sleeper, log)
    restarted = sim.restart("a")
    assert [t.get_name() for t in restarted] == ["a:sleeper", "a:sleeper"]
    sim.run(until=2)
    assert sim.host_tasks("a") == restarted
    sim.close()


def test_a_failing_main_fails_the_run_at_once(sim: Simulation) -> None:
    sim.add_host("a")
    sim.add_host("b")
    log: list[str] = []

    async def broken() -> None:
        await asyncio.sleep(4)
        raise AssertionError("invariant violated")

    sim.spawn("a", broken)
    sim.spawn("b", sleeper, log)
    with pytest.raises(HostFailed, match="invariant violated") as info:
        sim.run(until=100)
    assert info.value.host == "a"
    assert isinstance(info.value.__cause__, AssertionError)
    assert sim.now == 4
    sim.run(until=100)  # the failure is reported once; the world can go on
    assert "b done 10.0" in log
    sim.close()


def test_actions_at_times_and_their_failures(sim: Simulation) -> None:
    order: list[tuple[float, str]] = []
    sim.at(3, lambda: order.append((sim.now, "at 3")))
    sim.after(1, lambda: order.append((sim.now, "after 1")))

    async def later() -> None:
        await asyncio.sleep(1)
        order.append((sim.now, "async action"))

    sim.at(4, later)
    sim.run()
    assert order == [(1, "after 1"), (3, "at 3"), (5, "async action")]
    with pytest.raises(UsageError, match="past"):
        sim.at(1, print)

    sim.at(6, lambda: 1 / 0)
    with pytest.raises(SimulationError, match="ZeroDivisionError"):
        sim.run()
    sim.close()


def test_run_until_a_condition(sim: Simulation) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1)
            ticks.append(sim.now)

    sim.add_host("a")
    sim.spawn("a", ticker)
    sim.run_until(lambda: len(ticks) == 3)
    assert sim.now == 3
    with pytest.raises(DeadlineExceeded):
        sim.run_until(lambda: False, timeout=2.5)
    assert sim.now == 5.5
    sim.crash("a")
    with pytest.raises(Deadlock, match="went quiet"):
        sim.run_until(lambda: False)
    sim.close()


def test_run_main_is_the_driver(sim: Simulation) -> None:
    async def driver() -> str:
        assert current_host.get() is None
        await asyncio.sleep(7)
        return "done"

    assert sim.run_main(driver) == "done"
    assert sim.now == 7

    async def stuck() -> None:
        await asyncio.Event().wait()

    with pytest.raises(Deadlock, match="stuck"):
        sim.run_main(stuck())
    sim.close()


def test_run_main_is_stopped_by_a_host_failure(sim: Simulation) -> None:
    sim.add_host("a")

    async def broken() -> None:
        await asyncio.sleep(1)
        raise ValueError("bad host")

    async def driver() -> None:
        sim.spawn("a", broken)
        await asyncio.sleep(100)

    with pytest.raises(HostFailed, match="bad host"):
        sim.run_main(driver)
    assert sim.now == 1
    sim.close()


class _Signal(BaseException):
    """Stands for a test framework's outcome (pytest.skip raises a BaseException)."""


def test_a_main_raising_a_base_exception_ends_the_run_with_it_unwrapped(
    sim: Simulation,
) -> None:
    sim.add_host("a")

    async def skipping() -> None:
        await asyncio.sleep(1)
        raise _Signal("not here")

    sim.spawn("a", skipping)
    with pytest.raises(_Signal, match="not here"):
        sim.run()
    assert sim.now == 1
    sim.close()


def test_unhandled_callback_errors_fail_the_run(sim: Simulation) -> None:
    def boom() -> None:
        raise KeyError("in a callback")

    sim.loop.call_later(2, boom)
    with pytest.raises(UnhandledError, match="Exception in callback") as info:
        sim.run()
    assert isinstance(info.value.__cause__, KeyError)
    sim.close()


def test_unhandled_errors_can_be_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    sim = Simulation(seed=0, fail_on_unhandled=False)
    sim.loop.call_later(2, lambda: 1 / 0)
    sim.run()
    assert "ZeroDivisionError" in caplog.text
    sim.close()


def test_limits(sim: Simulation) -> None:
    limited = Simulation(seed=0, max_time=30)

    async def forever() -> None:
        while True:  # noqa: ASYNC110  (never ends, on purpose)
            await asyncio.sleep(7)

    limited.add_host("a")
    limited.spawn("a", forever)
    with pytest.raises(SimulationLimitExceeded, match="max_time=30"):
        limited.run()
    limited.close()
    sim.close()


def test_clocks_and_randomness_are_served_while_running() -> None:
    def world(seed: int) -> list[object]:
        seen: list[object] = []

        async def main() -> None:
            await asyncio.sleep(3)
            seen.extend([time.time(), time.monotonic(), random.random()])

        with Simulation(seed=seed, epoch=1000) as sim:
            sim.add_host("a", clock_skew=0.5)
            sim.spawn("a", main)
            sim.run()
        return seen

    first = world(5)
    assert first[:2] == [1003.5, 3.0]
    assert world(5) == first
    assert world(6)[2] != first[2]
    assert time.time() > 1_600_000_000  # restored


def test_a_closed_simulation_refuses_work(sim: Simulation) -> None:
    sim.close()
    sim.close()
    with pytest.raises(UsageError, match="closed"):
        sim.run()
    with pytest.raises(UsageError, match="closed"):
        sim.spawn("a", sleeper, [])


def test_tracing_can_be_turned_off() -> None:
    sim = Simulation(seed=0, trace=False)
    with pytest.raises(UsageError, match="trace=False"):
        sim.trace_hash()
    sim.close()


def test_a_main_must_be_async(sim: Simulation) -> None:
    sim.add_host("a")
    with pytest.raises(UsageError, match="async function"):
        sim.spawn("a", lambda: None)  # type: ignore[arg-type, return-value]
    sim.close()


def test_run_until_names_the_tasks_that_wait_forever(sim: Simulation) -> None:
    async def waiter() -> None:
        await asyncio.Event().wait()

    sim.add_host("b")
    sim.spawn("b", waiter)
    with pytest.raises(Deadlock) as info:
        sim.run_until(lambda: False)
    assert len(info.value.blocked) == 1
    assert "(host 'b'): waiter at" in info.value.blocked[0]
    assert "await asyncio.Event().wait()" in str(info.value)
    sim.close()
