"""Simulated message deliveries per second: netweave's simulator beside SimPy, in one run.

The workload, the same on both: ``--hosts`` hosts on 1 ms links. Every host

* sends a datagram to each of ``--fanout`` peers (chosen with a seeded
  random stream) every millisecond, ``--rounds`` times;
* streams ``--messages`` 64-byte messages to the next host over one connection.

netweave runs unmodified asyncio code on a :class:`netweave.sim.Simulation`:
UDP through ``create_datagram_endpoint`` and a ``DatagramProtocol``, streams
through ``asyncio.open_connection`` / ``start_server`` over simulated TCP
(segments, ACKs, windows). SimPy moves the same messages as timeouts that
put them into per-host ``Store``s, read by receiver processes. A delivery is
a datagram handed to its receiver or a stream message read by its reader.

Run from the repository root (add ``--cpu`` to time with process CPU time,
steadier on a machine shared with other work)::

    python benchmarks/sim_deliveries.py              # median of 3 runs
    python benchmarks/sim_deliveries.py --trace      # with the trace recorded (and hashed)

Target (2-core machine): >= 100,000 simulated deliveries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from netweave.sim import LinkConfig, Simulation

#: The clock runs are timed with: wall time, or process CPU time with --cpu.
CLOCK = [time.perf_counter]
TARGET = 100_000
MESSAGE = b"m" * 64
LATENCY = 0.001


@dataclass
class Shape:
    hosts: int
    fanout: int
    rounds: int
    messages: int

    @property
    def deliveries(self) -> int:
        return self.hosts * (self.fanout * self.rounds + self.messages)

    def peers(self, me: int) -> list[int]:
        rng = random.Random(me)
        return rng.sample([h for h in range(self.hosts) if h != me], self.fanout)


class Counter(asyncio.DatagramProtocol):
    count = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        Counter.count += 1


def netweave_run(shape: Shape, trace: bool) -> tuple[float, int]:
    Counter.count = 0
    streamed = 0

    async def receive_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal streamed
        for _ in range(shape.messages):
            await reader.readexactly(len(MESSAGE))
            streamed += 1
        writer.close()

    async def host(me: int) -> None:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(receive_stream, None, 7000)
        transport, _ = await loop.create_datagram_endpoint(Counter, local_addr=("0.0.0.0", 9))
        await asyncio.sleep(0.01)  # every host is listening
        reader, writer = await asyncio.open_connection(f"h{(me + 1) % shape.hosts}", 7000)
        peers = [(f"h{p}", 9) for p in shape.peers(me)]
        per_round = -(-shape.messages // shape.rounds)
        sent = 0
        for _ in range(shape.rounds):
            for peer in peers:
                transport.sendto(MESSAGE, peer)
            for _ in range(min(per_round, shape.messages - sent)):
                writer.write(MESSAGE)
                sent += 1
            await writer.drain()
            await asyncio.sleep(0.001)
        await asyncio.sleep(1)  # let everything land
        writer.close()
        transport.close()
        server.close()
        del reader

    sim = Simulation(1, trace=trace, default_link=LinkConfig(latency=LATENCY))
    for i in range(shape.hosts):
        sim.add_host(f"h{i}")
        sim.spawn(f"h{i}", host, i)
    started = CLOCK[0]()
    sim.run()
    elapsed = CLOCK[0]() - started
    sim.close()
    delivered = Counter.count + streamed
    return delivered / elapsed, delivered


def simpy_run(shape: Shape) -> tuple[float, int]:
    env = simpy.Environment()
    inboxes = [simpy.Store(env) for _ in range(shape.hosts)]
    streams = [simpy.Store(env) for _ in range(shape.hosts)]
    delivered = 0

    def transmit(store: simpy.Store, message: bytes) -> None:
        env.timeout(LATENCY).callbacks.append(lambda _: store.put(message))

    def receiver(store: simpy.Store) -> Generator[Any, Any, None]:
        nonlocal delivered
        while True:
            yield store.get()
            delivered += 1

    def host(me: int) -> Generator[Any, Any, None]:
        peers = shape.peers(me)
        per_round = -(-shape.messages // shape.rounds)
        sent = 0
        for _ in range(shape.rounds):
            for peer in peers:
                transmit(inboxes[peer], MESSAGE)
            for _ in range(min(per_round, shape.messages - sent)):
                transmit(streams[(me + 1) % shape.hosts], MESSAGE)
                sent += 1
            yield env.timeout(0.001)

    for i in range(shape.hosts):
        env.process(receiver(inboxes[i]))
        env.process(receiver(streams[i]))
        env.process(host(i))
    started = CLOCK[0]()
    env.run()
    elapsed = CLOCK[0]() - started
    return delivered / elapsed, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu", action="store_true", help="time with process CPU time (steadier when shared)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--fanout", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2500)
    parser.add_argument("--trace", action="store_true", help="record and hash the trace too")
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    shapes = {
        "datagrams": Shape(args.hosts, args.fanout, args.rounds, 0),
        "stream messages": Shape(args.hosts, 0, args.rounds, args.messages),
        "both": Shape(args.hosts, args.fanout, args.rounds, args.messages),
    }
    traced = "with" if args.trace else "without"
    print(
        f"simulated deliveries/s, {args.hosts} hosts on 1 ms links, {traced} trace, "
        f"median of {args.reps}, {'CPU' if args.cpu else 'wall'} time"
    )
    print(f"  {'workload':<16} {'deliveries':>10} {'netweave':>12} {'SimPy':>12} {'ratio':>7}")
    for label, shape in shapes.items():
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.reps):
            rate, count = netweave_run(shape, args.trace)
            check(count, shape, "netweave")
            ours.append(rate)
            rate, count = simpy_run(shape)
            check(count, shape, "SimPy")
            theirs.append(rate)
        mine, peer = statistics.median(ours), statistics.median(theirs)
        print(
            f"  {label:<16} {shape.deliveries:>10,} {mine:>12,.0f} {peer:>12,.0f} "
            f"{mine / peer:>7.2f}"
        )
        if label == "both":
            verdict = "met" if mine >= TARGET else "NOT met"
            print(f"  target >= {TARGET:,}/s (both): {verdict}")


def check(count: int, shape: Shape, who: str) -> None:
    if count != shape.deliveries:
        raise SystemExit(f"{who} delivered {count} of {shape.deliveries} messages")


if __name__ == "__main__":
    main()
