"""An RPC service that keeps answering through a flapping link and killed sockets.

The service adds numbers. It runs over a *resumable session*: ``SessionServer``
with an ``RpcServer`` on the server, ``ResumingClient`` with an ``RpcClient`` on
the client. When the connection breaks, the client reconnects with jittered
backoff and the session resumes: calls in flight at the break are answered once
the link is back, none is lost or runs twice, and each still has its deadline.
``serve`` and ``ask`` below are ordinary netweave code; nothing in them knows
whether the sockets are real or simulated.

On real TCP (127.0.0.1, one process), behind a proxy that kills the connection
every 25 calls::

    python examples/rpc_resilient.py

In the simulator, with 5% loss and a link that goes down for 2.5-5 s every
5-10 s (from the repository root)::

    netweave sim run examples.rpc_resilient:scenario --seed 7
    netweave sim sweep examples.rpc_resilient:scenario --seeds 0..99 --jobs 2
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from netweave.resilience import RetryPolicy
from netweave.session import CallContext, ResumingClient, RpcClient, RpcServer, SessionServer
from netweave.sim import Simulation

PORT = 9000


async def serve(url: str, rng: random.Random) -> None:
    """Serve ``add`` on ``url`` until cancelled."""
    rpc = RpcServer(codec="json", ping_interval=None, idle_timeout=None)

    @rpc.method()
    async def add(request: dict[str, int], ctx: CallContext) -> dict[str, int]:
        return {"sum": request["a"] + request["b"]}

    # The session layer does the heartbeats; RPC rides on top of it.
    sessions = SessionServer(rpc.handle, rng=rng, grace=30.0, ping_interval=0.5, idle_timeout=2.0)
    try:
        async with sessions.serve(url) as server:
            await server.serve_forever()
    finally:
        await sessions.close()


@dataclass
class Report:
    answered: int = 0
    wrong: list[Any] = field(default_factory=list)
    reconnects: int = 0


async def ask(
    url: str,
    rng: random.Random,
    *,
    calls: int = 200,
    concurrency: int = 8,
    timeout: float = 15.0,
    pause: float = 0.0,
    after_each: Any = None,
    backoff_max: float = 2.0,
) -> Report:
    """Make ``calls`` calls, ``concurrency`` at a time, each with a ``timeout``,
    each worker waiting ``pause`` seconds between its calls."""
    # The first connection is retried too: a lost SYN may outlast one connect timeout.
    first_connect = RetryPolicy(rng=rng, max_attempts=10, base_delay=0.1)
    session = await first_connect.call(
        lambda: ResumingClient.connect(
            url,
            rng=rng,
            connect_timeout=1.0,
            handshake_timeout=1.0,
            ping_interval=0.5,
            idle_timeout=2.0,
            backoff_max=backoff_max,
        )
    )
    report = Report()
    async with RpcClient(session, codec="json", ping_interval=None, idle_timeout=None) as client:
        queue = list(range(calls))

        async def worker() -> None:
            while queue:
                n = queue.pop()
                reply = await client.call("add", {"a": n, "b": 1000}, timeout=timeout)
                if reply != {"sum": n + 1000}:
                    report.wrong.append((n, reply))
                report.answered += 1
                if after_each is not None:
                    after_each(report.answered)
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        report.reconnects = session.reconnects
    return report


# -- the simulator ------------------------------------------------------------------------------


def scenario(sim: Simulation) -> None:
    """A flapping link: 5% loss, and down for 2.5-5 s (longer than the 2 s idle
    timeout, so each outage breaks the connection) every 5-10 s."""
    sim.add_host("server")
    sim.add_host("client")
    sim.link("client", "server", latency=0.02, jitter=0.005, loss=0.05)
    flaps = sim.seeds.stream("flaps")
    when = 2.0
    while when < 120.0:
        down = flaps.uniform(2.5, 5.0)
        sim.at(when, sim.partition, "client", "server")
        sim.at(when + down, sim.heal)
        when += down + flaps.uniform(5.0, 10.0)
    sim.spawn("server", serve, f"tcp://0.0.0.0:{PORT}", sim.seeds.stream("server"))
    outcome: list[Report] = []

    async def client_main() -> None:
        await asyncio.sleep(0.5)
        rng = sim.seeds.stream("client")
        report = await ask(f"tcp://server:{PORT}", rng, calls=400, concurrency=4, pause=0.5)
        outcome.append(report)

    client = sim.spawn("client", client_main)
    sim.run_until(client.done, timeout=600.0)
    client.result()
    [report] = outcome
    assert report.answered == 400, f"only {report.answered} calls answered"
    assert not report.wrong, f"wrong answers: {report.wrong[:5]}"
    assert report.reconnects >= 3, f"only {report.reconnects} reconnections"
    print(f"seed {sim.seed}: 400 calls answered through {report.reconnects} reconnections")


# -- real TCP, behind a proxy that kills the connection -------------------------------------------


class KillingProxy:
    """A TCP proxy on 127.0.0.1 whose connections can be reset at will."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.transports: list[asyncio.BaseTransport] = []
        self.kills = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._pipe_both_ways, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pipe_both_ways(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.transports += [writer.transport, up_writer.transport]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def kill(self) -> None:
        """Reset every proxied connection (both ends see a broken connection)."""
        self.kills += 1
        for transport in self.transports:
            transport.abort()
        self.transports.clear()

    async def close(self) -> None:
        self.kill()
        self.server.close()
        await self.server.wait_closed()


async def main(calls: int = 200, kill_every: int = 25, port: int = PORT) -> Report:
    server_task = asyncio.create_task(serve(f"tcp://127.0.0.1:{port}", random.Random(1)))
    await asyncio.sleep(0.2)  # let it listen
    proxy = KillingProxy(port)
    proxy_port = await proxy.start()

    def maybe_kill(answered: int) -> None:
        if answered % kill_every == 0:
            proxy.kill()

    try:
        report = await ask(
            f"tcp://127.0.0.1:{proxy_port}",
            random.Random(2),
            calls=calls,
            after_each=maybe_kill,
            backoff_max=0.1,
        )
    finally:
        await proxy.close()
        server_task.cancel()
        await asyncio.gather(server_task, return_exceptions=True)
    print(
        f"{report.answered} calls answered, {len(report.wrong)} wrong, through "
        f"{proxy.kills} killed connections and {report.reconnects} reconnections"
    )
    return report


if __name__ == "__main__":
    asyncio.run(main())
