"""The datagram conformance suite on simulated UDP, through netweave's own ``udp://`` transport."""

from __future__ import annotations

from typing import Any

from netkit import simulated

from netweave.endpoints import parse_endpoint
from netweave.testing import DatagramConformance
from netweave.transports import DatagramEndpoint, DatagramTransport


class SimulatedUdp(DatagramConformance):
    world: Any

    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        endpoint, transport = parse_endpoint("udp://0.0.0.0:0")
        assert isinstance(transport, DatagramTransport)
        server = await self.world.spawn("server", transport.bind(endpoint))
        port = server.url.rsplit(":", 1)[1]
        target, _ = parse_endpoint(f"udp://server:{port}")
        client = await transport.connect(target)
        return client, server


@simulated()
class TestSimulatedUdp(SimulatedUdp):
    """Two hosts, 1 ms links, no faults."""


@simulated(seed=5, jitter=0.002, reorder=0.3, mtu=576)
class TestSimulatedUdpReorderingSmallMtu(SimulatedUdp):
    """Reordering and a 576-byte MTU (large datagrams travel as fragments); no loss."""

    preserves_order = False


@simulated(hosts=("solo",))
class TestSimulatedUdpLoopback(DatagramConformance):
    """Both ends on one host, over loopback."""

    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        endpoint, transport = parse_endpoint("udp://127.0.0.1:0")
        assert isinstance(transport, DatagramTransport)
        server = await transport.bind(endpoint)
        target, _ = parse_endpoint(server.url)
        client = await transport.connect(target)
        return client, server
