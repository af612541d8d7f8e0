"""Simulated time against real time for an RPC workload: netweave beside SimPy, in one run.

The workload, the same on both: ``--hosts`` hosts on 1 ms links, every host
an RPC server and a client. Each client, ``--concurrency`` times over, calls
a randomly chosen other host (a seeded stream), waits for the answer, thinks
for ``--think`` seconds, and calls again, for ``--duration`` simulated seconds.

netweave runs ordinary code on a :class:`netweave.sim.Simulation`, twice:
with ``netweave.serve`` / ``netweave.connect`` and the ``lp4,json`` stack, and
with plain ``asyncio.start_server`` / ``open_connection`` and one JSON object
per line (the simulator's own cost, without netweave's channel stack); one
connection per client and server pair, over simulated TCP. SimPy models the
same calls as 1 ms timeouts each way.

The figure is simulated seconds per wall-clock second (the speed-up over real
time); calls per wall second are shown too.

Run from the repository root (add ``--cpu`` to time with process CPU time,
steadier on a machine shared with other work)::

    python benchmarks/sim_rpc.py                 # median of 3 runs
    python benchmarks/sim_rpc.py --think 0.01 --concurrency 4

Target (2-core machine): simulated time >= 100x faster than real time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

import netweave
from netweave.sim import LinkConfig, Simulation

#: The clock runs are timed with: wall time, or process CPU time with --cpu.
CLOCK = [time.perf_counter]
TARGET = 100.0
LATENCY = 0.001
STACK = "lp4,json"


@dataclass
class Shape:
    hosts: int
    concurrency: int
    think: float
    duration: float


def netweave_run(shape: Shape, trace: bool, api: str) -> tuple[float, int]:
    """``api`` is ``"channels"`` (netweave.serve/connect, lp4,json) or ``"streams"``
    (asyncio.start_server/open_connection, one JSON object per line)."""
    calls = 0

    async def answer(channel: netweave.Channel[Any]) -> None:
        async for request in channel:
            await channel.send({"id": request["id"], "result": request["x"] * 2})

    async def answer_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            writer.write(json.dumps({"id": request["id"], "result": request["x"] * 2}).encode())
            writer.write(b"\n")
        writer.close()

    async def server() -> None:
        if api == "channels":
            async with netweave.serve("tcp://0.0.0.0:7000", STACK, answer) as running:
                await running.serve_forever()
        else:
            async with await asyncio.start_server(answer_lines, None, 7000) as running:
                await running.serve_forever()

    class Lines:
        """The streams API behind the channel calls the caller makes."""

        def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.reader, self.writer = reader, writer

        async def send(self, message: dict[str, Any]) -> None:
            self.writer.write(json.dumps(message).encode() + b"\n")

        async def receive(self) -> Any:
            return json.loads(await self.reader.readline())

        async def close(self) -> None:
            self.writer.close()

    async def connect(peer: int) -> Any:
        if api == "channels":
            return await netweave.connect(f"tcp://h{peer}:7000", STACK)
        return Lines(*await asyncio.open_connection(f"h{peer}", 7000))

    async def caller(me: int, lane: int) -> None:
        nonlocal calls
        rng = random.Random(me * 1000 + lane)
        channels: dict[int, Any] = {}
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < shape.duration:
                peer = rng.choice([h for h in range(shape.hosts) if h != me])
                channel = channels.get(peer)
                if channel is None:
                    channel = channels[peer] = await connect(peer)
                await channel.send({"id": calls, "x": lane})
                reply = await channel.receive()
                assert reply["result"] == lane * 2
                calls += 1
                await asyncio.sleep(shape.think)
        finally:
            for channel in channels.values():
                await channel.close()

    async def host(me: int) -> None:
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(server())
            await asyncio.sleep(0.01)
            lanes = [group.create_task(caller(me, lane)) for lane in range(shape.concurrency)]
            await asyncio.gather(*lanes)
            serving.cancel()

    sim = Simulation(1, trace=trace, default_link=LinkConfig(latency=LATENCY))
    for i in range(shape.hosts):
        sim.add_host(f"h{i}")
        sim.spawn(f"h{i}", host, i)
    started = CLOCK[0]()
    sim.run(until=shape.duration + 1)
    elapsed = CLOCK[0]() - started
    simulated = sim.now
    sim.close()
    return simulated / elapsed, calls


def simpy_run(shape: Shape) -> tuple[float, int]:
    env = simpy.Environment()
    calls = 0

    def caller(me: int, lane: int) -> Generator[Any, Any, None]:
        nonlocal calls
        rng = random.Random(me * 1000 + lane)
        while env.now < shape.duration:
            rng.choice([h for h in range(shape.hosts) if h != me])
            yield env.timeout(LATENCY)  # the request travels
            yield env.timeout(LATENCY)  # the answer travels back
            calls += 1
            yield env.timeout(shape.think)

    for i in range(shape.hosts):
        for lane in range(shape.concurrency):
            env.process(caller(i, lane))
    started = CLOCK[0]()
    env.run(until=shape.duration + 1)
    elapsed = CLOCK[0]() - started
    return env.now / elapsed, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu", action="store_true", help="time with process CPU time (steadier when shared)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight per client")
    parser.add_argument("--think", type=float, default=0.1, help="seconds between calls")
    parser.add_argument("--duration", type=float, default=20.0, help="simulated seconds")
    parser.add_argument("--trace", action="store_true", help="record and hash the trace too")
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    shape = Shape(args.hosts, args.concurrency, args.think, args.duration)
    runs: dict[str, list[float]] = {"channels": [], "streams": [], "simpy": []}
    counts: dict[str, int] = {}
    for _ in range(args.reps):
        for api in ("channels", "streams"):
            speed, counts[api] = netweave_run(shape, args.trace, api)
            runs[api].append(speed)
        speed, counts["simpy"] = simpy_run(shape)
        runs["simpy"].append(speed)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    traced = "with" if args.trace else "without"
    print(
        f"RPC: {shape.hosts} hosts on 1 ms links, {shape.concurrency} call(s) in flight per "
        f"client, {shape.think * 1000:g} ms think time, {shape.duration:g} simulated s, "
        f"{traced} trace, median of {args.reps}, {'CPU' if args.cpu else 'wall'} time"
    )
    print(f"  {'':<34} {'simulated s / s':>15} {'calls':>9} {'calls / s':>11}")
    labels = {
        "channels": "netweave Simulation, lp4,json",
        "streams": "netweave Simulation, asyncio streams",
        "simpy": "SimPy",
    }
    for name, label in labels.items():
        per_second = counts[name] * medians[name] / (shape.duration + 1)
        print(f"  {label:<34} {medians[name]:>15,.0f} {counts[name]:>9,} {per_second:>11,.0f}")
    mine, peer = medians["channels"], medians["simpy"]
    print(f"  ratio netweave (lp4,json) / SimPy  {mine / peer:>15.3f}")
    per_call = (shape.duration + 1) / mine / counts["channels"] * 1e6
    verdict = "met" if mine >= TARGET else "NOT met"
    print(
        f"  lp4,json with {shape.think * 1000:g} ms think time per call: {mine:.0f}x real time, "
        f"{per_call:.0f} us of {'CPU' if args.cpu else 'wall'} time per call; "
        f"target >= {TARGET:g}x: {verdict}"
    )


if __name__ == "__main__":
    main()
