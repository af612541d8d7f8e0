from __future__ import annotations

import asyncio
from typing import cast

import pytest

from netweave.errors import Overloaded, UsageError
from netweave.resilience import InFlight, graceful_shutdown
from netweave.server import Server


class FakeServer:
    """Records the order of shutdown steps, as a real server would see them."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    async def stop_accepting(self) -> None:
        self.steps.append(("stop_accepting", asyncio.get_running_loop().time()))

    async def close(self, *, grace: float = 0.0) -> None:
        self.steps.append(("close", grace))


def test_in_flight_admission() -> None:
    tracker = InFlight(limit=2, name="rpc")
    assert tracker.try_enter()
    assert tracker.try_enter()
    assert not tracker.try_enter()
    assert tracker.refused == 1
    assert "limit 2" in (tracker.refusal() or "")
    tracker.leave()
    with tracker.track():
        assert tracker.count == 2
        with pytest.raises(Overloaded), tracker.track():
            pass
    tracker.start_draining()
    tracker.leave()
    with pytest.raises(Overloaded, match="shutting down"), tracker.track():
        pass
    with pytest.raises(UsageError):
        tracker.leave()
    with pytest.raises(UsageError):
        InFlight(limit=0)


async def test_in_flight_requests_finish_then_server_closes() -> None:
    loop = asyncio.get_running_loop()
    tracker = InFlight()
    server = FakeServer()

    async def request(duration: float) -> None:
        with tracker.track():
            await asyncio.sleep(duration)

    requests = [asyncio.create_task(request(d)) for d in (1.0, 2.0, 3.0)]
    await asyncio.sleep(0)
    start = loop.time()
    finished = await graceful_shutdown(cast(Server, server), timeout=10.0, drain=[tracker])
    assert finished
    assert loop.time() - start == pytest.approx(3.0)
    assert server.steps[0] == ("stop_accepting", start)
    assert server.steps[1][0] == "close"
    assert server.steps[1][1] == pytest.approx(7.0)  # what is left of the deadline
    await asyncio.gather(*requests)


async def test_shutdown_never_waits_past_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    tracker = InFlight()
    server = FakeServer()
    release = asyncio.Event()

    async def stuck() -> None:
        with tracker.track():
            await release.wait()

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    start = loop.time()
    finished = await graceful_shutdown(cast(Server, server), timeout=2.0, drain=[tracker])
    assert not finished
    assert loop.time() - start == pytest.approx(2.0)
    assert server.steps[1] == ("close", 0.0)
    release.set()
    await task


async def test_no_drainables_gives_handlers_the_whole_grace() -> None:
    server = FakeServer()
    assert await graceful_shutdown(cast(Server, server), timeout=4.0)
    assert server.steps[1] == ("close", 4.0)
    with pytest.raises(UsageError):
        await graceful_shutdown(cast(Server, server), timeout=-1.0)


async def test_wait_drained_before_draining_waits_for_the_start() -> None:
    tracker = InFlight()
    waiter = asyncio.create_task(tracker.wait_drained())
    await asyncio.sleep(1.0)
    assert not waiter.done()
    tracker.start_draining()
    await asyncio.wait_for(waiter, 1.0)
