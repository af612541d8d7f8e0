"""``quic://`` inside the simulator: the same transport over simulated UDP, on virtual time.

Two hosts, "client" and "server"; the stream suite runs as the client's main,
with the server's listener on the server host. The lossy classes put 5% loss,
reordering and jitter on the link; QUIC's recovery hides all of it, and the
same seed replays the same run (the same trace hash).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from test_quic_support import Pem, UsesPem, connect, listen, quic_pem

import netweave
from netweave.errors import ConnectFailed, ConnectionBroken, PeerUnresponsive
from netweave.sim import Simulation
from netweave.testing import DatagramConformance, StreamConformance
from netweave.testing._streams import receive_exactly
from netweave.transports import DatagramEndpoint, QuicConnection, StreamConnection

__all__ = ["quic_pem"]  # the fixture, imported so pytest finds it

C = TypeVar("C")
LOSSY: dict[str, Any] = {"latency": 0.005, "jitter": 0.001, "loss": 0.05, "reorder": 0.05}


def simulated(*, seed: int = 7, **link: Any) -> Callable[[type[C]], type[C]]:
    """Run every ``async def test_*`` of a class as host "client"'s main in a fresh
    two-host :class:`Simulation` (``self.sim``); ``link`` configures the link."""

    def decorate(cls: type[C]) -> type[C]:
        for name in dir(cls):
            method = getattr(cls, name)
            if name.startswith("test_") and inspect.iscoroutinefunction(method):
                setattr(cls, name, _in_simulation(method, seed, link))
        return cls

    return decorate


def _in_simulation(
    method: Callable[..., Coroutine[Any, Any, None]], seed: int, link: dict[str, Any]
) -> Callable[..., None]:
    @functools.wraps(method)
    def test(self: Any) -> None:
        run_simulated(seed, link, lambda sim: method(self), self)

    del test.__wrapped__  # pytest must see a plain function, not the coroutine
    return test


def run_simulated(
    seed: int,
    link: dict[str, Any],
    main: Callable[[Simulation], Coroutine[Any, Any, Any]],
    holder: Any = None,
) -> Simulation:
    """Run ``main(sim)`` as the client's main until it is done; return the closed simulation."""
    with Simulation(seed=seed, max_time=3600) as sim:
        sim.add_host("server")
        sim.add_host("client")
        if link:
            sim.link("client", "server", **link)
        if holder is not None:
            holder.sim = sim

        async def client_main() -> Any:
            return await main(sim)

        task = sim.spawn("client", client_main)
        sim.run_until(task.done)
        task.result()
    return sim


async def sim_listen(sim: Simulation, url: str) -> Any:
    """Listen on host "server"."""
    return await sim.spawn("server", listen, url)


async def sim_pair(
    sim: Simulation, pem: Pem, options: str = ""
) -> tuple[StreamConnection, StreamConnection]:
    listener = await sim_listen(sim, pem.server("0.0.0.0:0", options))
    try:
        port = listener.url.rsplit(":", 1)[1]
        client = await connect(pem.client(f"quic://server:{port}", options))
        server = await sim.spawn("server", listener.accept)
    finally:
        await listener.close()
    return client, server


class SimulatedQuic(UsesPem, StreamConformance):
    # The listener's UDP socket is bound to 0.0.0.0: its local address is the wildcard.
    mirrored_addresses = False
    bulk_size = 512 * 1024
    backpressure_limit = 2 * 1024 * 1024
    timeout = 120.0  # virtual seconds: free
    options = ""
    sim: Simulation

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await sim_pair(self.sim, self.pem, self.options)


@simulated()
class TestSimulatedQuic(SimulatedQuic):
    """1 ms links, no faults."""


@simulated(seed=11, **LOSSY)
class TestSimulatedQuicOverALossyLink(SimulatedQuic):
    """5% loss, reordering and jitter, both ways (256 KiB stream windows)."""

    options = "&read_high_water=256k"
    backpressure_limit = 1024 * 1024


@simulated(seed=12, bandwidth=20_000_000, queue_limit=60_000, latency=0.02, loss=0.01)
class TestSimulatedQuicOverASlowLink(SimulatedQuic):
    """20 Mbit/s, a small queue (tail drops), 20 ms latency and 1% loss."""

    bulk_size = 256 * 1024
    options = "&read_high_water=256k"
    backpressure_limit = 1024 * 1024


@simulated(seed=21, latency=0.005, jitter=0.001, reorder=0.05)
class TestSimulatedQuicDatagrams(UsesPem, DatagramConformance):
    """QUIC datagrams over simulated UDP (no loss: the suite expects every datagram)."""

    preserves_order = False
    sim: Simulation

    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        client, server = await sim_pair(self.sim, self.pem)
        for end in (client, server):
            connection = end.extra("quic_connection")
            assert isinstance(connection, QuicConnection)
        return client.extra("quic_connection").datagrams, server.extra("quic_connection").datagrams

    async def test_addresses(self) -> None:
        async with self.connected() as (client, server):
            assert client.remote is not None
            assert server.remote == client.local_address


# ---------------------------------------------------------------------------
# Byte-exact transfers, messages, determinism
# ---------------------------------------------------------------------------


async def _transfer(sim: Simulation, pem: Pem, size: int, seed: int) -> float:
    """Move ``size`` random bytes each way at once; return the virtual time it took."""
    client, server = await sim_pair(sim, pem)
    rng = random.Random(seed)
    up, down = rng.randbytes(size), rng.randbytes(size)
    start = asyncio.get_running_loop().time()

    async def send_all(end: StreamConnection, data: bytes) -> None:
        for offset in range(0, len(data), 50_000):
            await end.send(data[offset : offset + 50_000])
        await end.send_eof()

    async with asyncio.TaskGroup() as group:
        group.create_task(send_all(client, up))
        group.create_task(send_all(server, down))
        got_up = group.create_task(receive_exactly(server, size))
        got_down = group.create_task(receive_exactly(client, size))
    assert got_up.result() == up
    assert got_down.result() == down
    assert await client.receive() == b""
    assert await server.receive() == b""
    took = asyncio.get_running_loop().time() - start
    await server.close()
    await client.close()
    return took


def test_a_large_transfer_over_a_lossy_link_is_byte_exact(quic_pem: Pem) -> None:
    took: list[float] = []

    async def main(sim: Simulation) -> None:
        took.append(await _transfer(sim, quic_pem, 768 * 1024, seed=3))

    sim = run_simulated(31, LOSSY, main)
    dropped = [event for event in sim.trace.events if getattr(event, "reason", "") == "loss"]
    assert len(dropped) > 20, "the link should have lost packets"
    assert 0 < took[0] < 60


def test_the_same_seed_replays_the_same_run(quic_pem: Pem) -> None:
    def once(seed: int) -> tuple[str, float]:
        took: list[float] = []

        async def main(sim: Simulation) -> None:
            took.append(await _transfer(sim, quic_pem, 200 * 1024, seed=4))

        sim = run_simulated(seed, LOSSY, main)
        return sim.trace_hash(), took[0]

    first, again, other = once(41), once(41), once(42)
    assert first == again
    assert other[0] != first[0]


def test_connect_and_serve_over_a_lossy_link(quic_pem: Pem) -> None:
    replies: list[Any] = []

    async def echo(channel: netweave.Channel[Any]) -> None:
        async for message in channel:
            await channel.send({"echo": message})

    async def main(sim: Simulation) -> None:
        url = quic_pem.server("0.0.0.0:0")
        server = await sim.spawn("server", netweave.serve, url, "lp4,json", echo)
        port = server.url.rsplit(":", 1)[1]
        channel = await netweave.connect(quic_pem.client(f"quic://server:{port}"), "lp4,json")
        async with channel:
            for index in range(50):
                await channel.send({"n": index, "pad": "x" * (index * 40)})
                replies.append(await channel.receive())
        await server.close()

    run_simulated(51, LOSSY, main)
    assert replies == [{"echo": {"n": i, "pad": "x" * (i * 40)}} for i in range(50)]


# ---------------------------------------------------------------------------
# Timeouts, on virtual time
# ---------------------------------------------------------------------------


def test_the_idle_timeout_ends_a_silent_connection(quic_pem: Pem) -> None:
    async def main(sim: Simulation) -> None:
        client, server = await sim_pair(sim, quic_pem, "&idle_timeout=5")
        await client.send(b"hi")
        assert await receive_exactly(server, 2) == b"hi"
        start = asyncio.get_running_loop().time()
        sim.crash("server")  # nothing more comes from it
        with pytest.raises(PeerUnresponsive, match="idle timeout"):
            await client.receive()
        assert 5 <= asyncio.get_running_loop().time() - start < 7
        with pytest.raises(PeerUnresponsive):
            await client.send(b"x")
        assert client.is_closing
        await client.close()

    run_simulated(61, {}, main)


def test_a_silent_peer_fails_the_connect_after_connect_timeout(quic_pem: Pem) -> None:
    async def main(sim: Simulation) -> None:
        sim.partition("client", "server")
        start = asyncio.get_running_loop().time()
        with pytest.raises(ConnectFailed, match="timed out after 3"):
            await connect(quic_pem.client("quic://server:4433", "&connect_timeout=3"))
        assert asyncio.get_running_loop().time() - start == pytest.approx(3, abs=0.01)

    run_simulated(62, {}, main)


def test_nobody_listening_fails_the_connect(quic_pem: Pem) -> None:
    async def main(sim: Simulation) -> None:
        with pytest.raises(ConnectFailed, match="quic://server:4433"):
            await connect(quic_pem.client("quic://server:4433", "&connect_timeout=3"))

    run_simulated(63, {}, main)


def test_a_crashed_peer_breaks_the_connection_for_every_stream(quic_pem: Pem) -> None:
    async def main(sim: Simulation) -> None:
        client, _ = await sim_pair(sim, quic_pem, "&idle_timeout=4")
        connection = client.extra("quic_connection")
        other = await connection.open_stream()
        sim.crash("server")
        for stream in (client, other):
            with pytest.raises(ConnectionBroken):
                await stream.receive()
        await other.close()
        await client.close()

    run_simulated(64, LOSSY, main)


def test_a_listener_serves_at_most_max_connections(quic_pem: Pem) -> None:
    async def main(sim: Simulation) -> None:
        listener = await sim_listen(sim, quic_pem.server("0.0.0.0:0", "&max_connections=1"))
        url = quic_pem.client(f"quic://server:{listener.url.rsplit(':', 1)[1]}")
        first = await connect(url)
        with pytest.raises(ConnectFailed, match="timed out"):
            await connect(url + "&connect_timeout=2")
        assert listener.refused_connections >= 1
        await first.close()  # its connection ends (its stream never accepted): room for one more
        second = await connect(url)
        await second.send(b"in")
        accepted = await sim.spawn("server", listener.accept)
        assert await receive_exactly(accepted, 2) == b"in"
        for end in (second, accepted, listener):
            await end.close()

    run_simulated(65, {}, main)


def test_a_crashed_client_host_ends_the_servers_connection(quic_pem: Pem) -> None:
    """The server's connection notices through its idle timeout; its listener lives on."""

    async def main(sim: Simulation) -> None:
        sim.add_host("other")
        listener = await sim_listen(sim, quic_pem.server("0.0.0.0:0", "&idle_timeout=3"))
        url = quic_pem.client(f"quic://server:{listener.url.rsplit(':', 1)[1]}")

        async def doomed() -> None:
            stream = await connect(url)
            await stream.send(b"x")
            await asyncio.sleep(3600)

        sim.spawn("other", doomed)
        server = await sim.spawn("server", listener.accept)
        assert await receive_exactly(server, 1) == b"x"
        sim.crash("other")
        with pytest.raises(PeerUnresponsive):
            await server.receive()
        assert listener.connections == 0
        fresh = await connect(url)
        await fresh.close()
        await server.close()
        await listener.close()

    run_simulated(66, {}, main)
