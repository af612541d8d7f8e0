"""The tests in this folder and in ``tests/session`` run on ``netweave.sim.SimLoop``."""

from __future__ import annotations

import asyncio

from netweave.sim import SimLoop


async def test_tests_here_run_on_the_simulator_loop() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, SimLoop)
    start = loop.time()
    await asyncio.sleep(3600)
    # An hour of virtual time passes at once, exactly.
    assert loop.time() == start + 3600
