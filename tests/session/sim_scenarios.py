"""The session invariants as simulator scenarios, one seed at a time.

Each function builds a world on the given :class:`~netweave.sim.Simulation`,
runs it, and asserts its invariant (an ``AssertionError`` names the broken
one). ``test_sim_invariants.py`` runs a few seeds in CI; the sweeps run many,
in parallel, from the repository root::

    netweave sim sweep tests.session.sim_scenarios:rpc_under_faults --seeds 0..199 --jobs 2
    netweave sim sweep tests.session.sim_scenarios:resume_10k --seeds 0..199 --jobs 2
    netweave sim sweep tests.session.sim_scenarios:reliable_datagrams_10k --seeds 0..199 --jobs 2

A failing seed replays exactly with ``netweave sim run SCENARIO --seed N``.
Only netweave code runs on the simulated hosts; the randomness each scenario
uses comes from the simulation's seed tree.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import netweave
from netweave.errors import DeadlineExceeded
from netweave.resilience import RetryPolicy
from netweave.session import (
    CallContext,
    ReliableChannel,
    ResumingClient,
    RpcClient,
    RpcServer,
    ServerSession,
    SessionServer,
)
from netweave.sim import Simulation

PORT = 9000


def _hosts(sim: Simulation, **link: Any) -> None:
    sim.add_host("server")
    sim.add_host("client")
    sim.link("client", "server", **link)


async def _open_session(sim: Simulation, name: str, **options: Any) -> ResumingClient:
    """The first connection, retried (a lost SYN may outlast one connect timeout)."""
    rng = sim.seeds.stream(name)
    retry = RetryPolicy(rng=sim.seeds.stream(f"{name}-retry"), max_attempts=10, base_delay=0.1)
    return await retry.call(
        lambda: ResumingClient.connect(f"tcp://server:{PORT}", rng=rng, **options)
    )


# -- RPC under loss, reordering and a partition that heals --------------------------------------


@dataclass
class CallRecord:
    argument: int
    start: float
    deadline: float
    end: float
    outcome: str
    result: bytes | None


def rpc_under_faults(sim: Simulation, calls: int = 300) -> None:
    """Every call returns the right answer or fails with a deadline error, and none
    outlives its deadline: 10% loss, reordering, jitter, and a 4 s partition that heals.

    The RPC runs over a resumable session (``ResumingClient``/``SessionServer``),
    so the connections the faults break are replaced underneath the calls.
    """
    _hosts(sim, latency=0.01, jitter=0.005, loss=0.10, reorder=0.05, reorder_delay=0.02)
    records: list[CallRecord] = []
    server_rng = sim.seeds.stream("rpc-server")
    client_rng = sim.seeds.stream("rpc-client")

    async def server_main() -> None:
        rpc = RpcServer(ping_interval=None, idle_timeout=None, max_in_flight=256)

        @rpc.method()
        async def square(request: bytes, ctx: CallContext) -> bytes:
            await asyncio.sleep(server_rng.uniform(0.0, 0.05))
            return b"%d" % (int(request) ** 2)

        sessions = SessionServer(
            rpc.handle, rng=server_rng, grace=30.0, ping_interval=0.5, idle_timeout=2.0
        )
        async with sessions.serve(f"tcp://0.0.0.0:{PORT}") as server:
            await server.serve_forever()

    async def client_main() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.1)
        session = await _open_session(
            sim,
            "rpc-session",
            connect_timeout=1.0,
            handshake_timeout=1.0,
            ping_interval=0.5,
            idle_timeout=2.0,
            give_up_after=60.0,
        )
        client = RpcClient(session, ping_interval=None, idle_timeout=None)

        async def one(argument: int) -> None:
            await asyncio.sleep(client_rng.uniform(0.0, 20.0))
            timeout = client_rng.uniform(0.5, 5.0)
            start = loop.time()
            result: bytes | None = None
            try:
                result = await client.call("square", b"%d" % argument, timeout=timeout)
                outcome = "ok"
            except DeadlineExceeded:
                outcome = "deadline"
            end = loop.time()
            records.append(CallRecord(argument, start, start + timeout, end, outcome, result))

        await asyncio.gather(*(one(i) for i in range(calls)))
        await client.close()

    sim.spawn("server", server_main)
    client = sim.spawn("client", client_main)
    sim.at(5.0, sim.partition, "client", "server")
    sim.at(9.0, sim.heal)
    sim.run_until(client.done, timeout=600.0)
    client.result()
    assert len(records) == calls, f"{calls - len(records)} calls never finished"
    for record in records:
        assert record.end <= record.deadline + 1e-9, f"call outlived its deadline: {record}"
        if record.outcome == "ok":
            assert record.result == b"%d" % record.argument**2, f"wrong answer: {record}"
    answered = sum(r.outcome == "ok" for r in records)
    assert answered >= calls // 2, f"only {answered} of {calls} calls were answered"


# -- Resume: messages across repeated connection resets -------------------------------------------


def resume(sim: Simulation, messages: int = 2000, min_reconnects: int = 3) -> None:
    """Messages sent both ways across repeated connection resets (from either end)
    and 2% loss arrive exactly once and in order."""
    _hosts(sim, latency=0.005, jitter=0.002, loss=0.02)
    rng = sim.seeds.stream("resume-chaos")
    got_by_server: list[bytes] = []
    got_by_client: list[bytes] = []
    sent = [b"%d:" % i + bytes(rng.randrange(0, 200)) for i in range(messages)]

    async def echo(session: ServerSession) -> None:
        async for message in session:
            got_by_server.append(message)
            await session.send(message)
            if rng.random() < 0.002:
                session.drop_connection()  # a reset from the server's side

    async def server_main() -> None:
        sessions = SessionServer(
            echo, rng=sim.seeds.stream("resume-server"), ping_interval=0.5, idle_timeout=2.0
        )
        async with sessions.serve(f"tcp://0.0.0.0:{PORT}") as server:
            await server.serve_forever()

    async def client_main() -> None:
        await asyncio.sleep(0.1)
        client = await _open_session(
            sim,
            "resume-client",
            connect_timeout=1.0,
            handshake_timeout=1.0,
            ping_interval=0.5,
            idle_timeout=2.0,
            max_unacked=256,
        )

        async def produce() -> None:
            for message in sent:
                await client.send(message)

        async def chaos() -> None:
            while len(got_by_client) < messages:
                await asyncio.sleep(rng.uniform(0.005, 0.1))
                client.drop_connection()  # a reset from the client's side

        producer = asyncio.create_task(produce())
        resets = asyncio.create_task(chaos())
        for _ in range(messages):
            got_by_client.append(await client.receive())
        await producer
        resets.cancel()
        assert client.reconnects >= min_reconnects, (
            f"only {client.reconnects} reconnections happened"
        )
        await client.close()

    sim.spawn("server", server_main)
    client = sim.spawn("client", client_main)
    sim.run_until(client.done, timeout=3600.0)
    client.result()
    assert got_by_server == sent, "the server's stream lost, repeated or reordered messages"
    assert got_by_client == sent, "the client's stream lost, repeated or reordered messages"


def resume_10k(sim: Simulation) -> None:
    """The invariant at full size: 10,000 messages each way."""
    resume(sim, messages=10_000)


# -- Reliable datagrams under loss, duplication and reordering ------------------------------------


def reliable_datagrams(sim: Simulation, messages: int = 2000) -> None:
    """Over UDP with 20% loss, 5% duplication and reordering, every message arrives
    exactly once and in order (both directions), fragmented or not."""
    _hosts(
        sim,
        latency=0.01,
        jitter=0.002,
        loss=0.20,
        duplicate=0.05,
        reorder=0.05,
        reorder_delay=0.02,
        bandwidth=10e6,
    )
    rng = sim.seeds.stream("arq-messages")
    sent = [b"%d:" % i + bytes(rng.randrange(0, 2500)) for i in range(messages)]
    replies = [b"ack %d" % i for i in range(messages // 100)]
    got_by_server: list[bytes] = []
    got_by_client: list[bytes] = []

    async def server_main() -> None:
        async def handler(channel: netweave.Channel[Any]) -> None:
            assert isinstance(channel, netweave.DatagramChannel)
            reliable = ReliableChannel(channel)
            for reply in replies:
                await reliable.send(reply)
            async for message in reliable:
                got_by_server.append(message)
            await reliable.close()

        async with netweave.serve(f"udp://0.0.0.0:{PORT}", "raw", handler) as server:
            await server.serve_forever()

    async def client_main() -> None:
        await asyncio.sleep(0.1)
        lower = await netweave.connect(f"udp://server:{PORT}", "raw")
        assert isinstance(lower, netweave.DatagramChannel)
        reliable = ReliableChannel(lower)

        async def collect() -> None:
            for _ in replies:
                got_by_client.append(await reliable.receive())

        collector = asyncio.create_task(collect())
        for message in sent:
            await reliable.send(message)
        await collector
        await reliable.close()

    sim.spawn("server", server_main)
    client = sim.spawn("client", client_main)
    sim.run_until(lambda: client.done() and len(got_by_server) == messages, timeout=3600.0)
    client.result()
    assert got_by_server == sent, "messages lost, repeated or reordered"
    assert got_by_client == replies, "replies lost, repeated or reordered"


def reliable_datagrams_10k(sim: Simulation) -> None:
    """The invariant at full size: 10,000 messages."""
    reliable_datagrams(sim, messages=10_000)
