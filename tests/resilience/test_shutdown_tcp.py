"""Graceful shutdown of a real TCP server (real loop; no timers are waited on)."""

from __future__ import annotations

import asyncio

import pytest

import netweave
from netweave.errors import ConnectFailed
from netweave.resilience import InFlight, graceful_shutdown

REAL_LOOP = True


async def test_stop_accepting_then_finish_in_flight_then_close() -> None:
    tracker = InFlight()
    gate = asyncio.Event()
    started = asyncio.Event()

    async def handler(channel: netweave.Channel[bytes]) -> None:
        async for message in channel:
            with tracker.track():
                started.set()
                await gate.wait()
                await channel.send(b"done " + message)

    server = await netweave.serve("tcp://127.0.0.1:0", "lp4,raw", handler)
    channel = await netweave.connect(server.url, "lp4,raw")
    await channel.send(b"job")
    await started.wait()
    shutdown = asyncio.create_task(graceful_shutdown(server, timeout=30.0, drain=[tracker]))
    for _ in range(100):  # the shutdown task stops the listener within a few loop steps
        if tracker.draining:
            break
        await asyncio.sleep(0)
    assert tracker.draining
    with pytest.raises(ConnectFailed):
        await netweave.connect(server.url, "lp4,raw")
    gate.set()
    assert await channel.receive() == b"done job"
    await channel.close()
    assert await shutdown is True
    assert server.connections == 0
