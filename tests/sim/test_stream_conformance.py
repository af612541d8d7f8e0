"""The stream conformance suite on simulated TCP, through netweave's own ``tcp://`` transport."""

from __future__ import annotations

from typing import Any

from netkit import World, simulated

from netweave.endpoints import parse_endpoint
from netweave.testing import StreamConformance
from netweave.transports import StreamConnection, StreamTransport


async def open_sim_pair(
    world: World, options: str = ""
) -> tuple[StreamConnection, StreamConnection]:
    """Listen on host "server", connect from the calling host ("client"), accept."""
    endpoint, transport = parse_endpoint(f"tcp://0.0.0.0:0{options}")
    assert isinstance(transport, StreamTransport)
    listener = await world.spawn("server", transport.listen(endpoint))
    try:
        port = listener.url.rsplit(":", 1)[1].split("?")[0]
        target, _ = parse_endpoint(f"tcp://server:{port}{options}")
        client = await transport.connect(target)
        server = await world.spawn("server", listener.accept())
    finally:
        await listener.close()
    return client, server


class SimulatedTcp(StreamConformance):
    # Everything the simulated path buffers is well under 1 MiB.
    bulk_size = 1024 * 1024
    backpressure_limit = 2 * 1024 * 1024
    world: Any

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await open_sim_pair(self.world)


@simulated()
class TestSimulatedTcp(SimulatedTcp):
    """Two hosts, 1 ms links, no faults."""


@simulated(seed=11, loss=0.05, reorder=0.05, duplicate=0.01, jitter=0.0005)
class TestSimulatedTcpOverLossyLinks(SimulatedTcp):
    """5% loss, reordering and duplication: TCP hides all of it."""


@simulated(seed=13, bandwidth=10_000_000, queue_limit=30_000, latency=0.02)
class TestSimulatedTcpOverASlowLink(SimulatedTcp):
    """10 Mbit/s with a small queue and 20 ms latency: tail drops and serialisation delay."""

    bulk_size = 256 * 1024


@simulated(hosts=("solo",))
class TestSimulatedTcpLoopback(StreamConformance):
    """Both ends on one host, over loopback."""

    bulk_size = 1024 * 1024
    backpressure_limit = 2 * 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        endpoint, transport = parse_endpoint("tcp://127.0.0.1:0")
        assert isinstance(transport, StreamTransport)
        listener = await transport.listen(endpoint)
        try:
            target, _ = parse_endpoint(listener.url)
            client = await transport.connect(target)
            server = await listener.accept()
        finally:
            await listener.close()
        return client, server
