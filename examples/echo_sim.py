"""An echo service whose code runs unchanged on real TCP and in the simulator.

``serve`` and ``ask`` below are ordinary netweave code: they talk through a
``tcp://`` URL and a ``lp4,json`` stack, and retry with a deadline when the
network misbehaves. Nothing in them knows about the simulator.

On real sockets (a server and a client on 127.0.0.1, in one process)::

    python examples/echo_sim.py

In the simulator, with 5% loss, jitter, reordering, a partition that heals
and a server crash and restart (from the repository root)::

    netweave sim run examples.echo_sim:scenario --seed 7
    netweave sim sweep examples.echo_sim:scenario --seeds 0..99 --jobs 2
    netweave sim run examples.echo_sim:scenario --seed 7 --trace echo.jsonl --pcap echo.pcap
"""

from __future__ import annotations

import asyncio
import random  # the simulator seeds it per host; on real sockets it is the usual one
import sys
from typing import Any

import netweave
from netweave.sim import LinkConfig, Simulation

STACK = "lp4,json"
PORT = 9000


async def serve(url: str) -> None:
    """Echo every message back, on every connection, until cancelled."""

    async def handler(channel: netweave.Channel[Any]) -> None:
        async for message in channel:
            await channel.send({"n": message["n"], "echo": message["text"]})

    async with netweave.serve(url, STACK, handler) as server:
        await server.serve_forever()


async def ask(
    url: str, texts: list[str], *, deadline: float = 2.0, pause: float = 0.0
) -> list[str]:
    """Send each text and collect its echo, in order, over one connection at a time,
    waiting ``pause`` seconds after each answer.

    A request that sees no answer within ``deadline`` seconds, or a broken
    connection, makes the client reconnect (with a randomised backoff) and ask
    again; the server's answers are matched by number, so a late reply to an
    abandoned request is never taken for the current one.
    """
    replies: list[str] = []
    channel: netweave.Channel[Any] | None = None
    backoff = 0.1
    try:
        while len(replies) < len(texts):
            n = len(replies)
            try:
                if channel is None:
                    channel = await netweave.connect(url, STACK, timeout=deadline)
                async with asyncio.timeout(deadline):
                    await channel.send({"n": n, "text": texts[n]})
                    reply = await channel.receive()
                    while reply["n"] != n:  # an answer to an abandoned request
                        reply = await channel.receive()
                replies.append(reply["echo"])
                backoff = 0.1
                await asyncio.sleep(pause)
            except (netweave.TransportError, netweave.EndOfStream, TimeoutError):
                if channel is not None:
                    await channel.close()
                    channel = None
                await asyncio.sleep(backoff * random.uniform(1, 2))
                backoff = min(backoff * 2, 5.0)
    finally:
        if channel is not None:
            await channel.close()
    return replies


# -- in the simulator --------------------------------------------------------------------


def scenario(sim: Simulation) -> None:
    """One server, three clients, a lossy network, a partition, a server crash."""
    sim.network.default_link = LinkConfig(latency=0.02, jitter=0.005, loss=0.05, reorder=0.02)
    sim.add_host("server")
    sim.spawn("server", serve, f"tcp://0.0.0.0:{PORT}")
    results: dict[str, list[str]] = {}
    expected: dict[str, list[str]] = {}
    for i in range(3):
        name = f"client{i}"
        expected[name] = [f"{name} says {k}" for k in range(30)]
        sim.add_host(name)
        sim.spawn(name, client, name, expected[name], results)
    sim.partition("server", "client0", at=3, duration=8)  # heals at t=11
    sim.at(15, sim.crash, "server")
    sim.at(18, sim.restart, "server")  # runs serve() again
    sim.run(until=300)
    assert results == expected, {name: len(got) for name, got in results.items()}


async def client(name: str, texts: list[str], results: dict[str, list[str]]) -> None:
    await asyncio.sleep(random.uniform(0, 1))
    results[name] = await ask(f"tcp://server:{PORT}", texts, pause=1.0)


# -- on real sockets ------------------------------------------------------------------------


async def main() -> None:
    url = f"tcp://127.0.0.1:{PORT}"
    server = asyncio.create_task(serve(url))
    await asyncio.sleep(0.2)  # let it listen
    try:
        for echo in await ask(url, ["hello", "real", "world"]):
            print(echo)
    finally:
        server.cancel()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
