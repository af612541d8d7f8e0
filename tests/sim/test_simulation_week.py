"""A simulated week of heartbeats among three hosts, in seconds of wall time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from netweave.sim import Simulation

WEEK = 7 * 24 * 3600
HOSTS = ["a", "b", "c"]
PORT = 9999


@dataclass
class Detector(asyncio.DatagramProtocol):
    """Counts heartbeats and remembers when the last one arrived."""

    received: int = 0
    last: float = 0.0
    suspicions: list[float] = field(default_factory=list)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.last = asyncio.get_running_loop().time()


async def node(successor: str, detectors: dict[str, Detector], me: str) -> None:
    """Every second: suspect the predecessor if it has been silent 3 s, then beat."""
    loop = asyncio.get_running_loop()
    detector = Detector()
    detectors[me] = detector
    transport, _ = await loop.create_datagram_endpoint(
        lambda: detector, local_addr=("0.0.0.0", PORT)
    )
    try:
        while True:
            now = loop.time()
            if now - detector.last > 3.0 and now > 3.0:
                detector.suspicions.append(now)
            transport.sendto(b"beat", (successor, PORT))
            await asyncio.sleep(1.0)
    finally:
        transport.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_week_of_heartbeats() -> None:
    detectors: dict[str, Detector] = {}
    with Simulation(seed=9, trace=False) as sim:
        for host in HOSTS:
            sim.add_host(host)
        for i, host in enumerate(HOSTS):
            sim.spawn(host, node, HOSTS[(i + 1) % len(HOSTS)], detectors, host)
        sim.run(until=WEEK)
        assert sim.now == WEEK
    for host in HOSTS:
        assert detectors[host].received == WEEK  # one per second, the first at t=0.001
        assert detectors[host].suspicions == []
