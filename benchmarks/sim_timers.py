"""Timer wakeups per second: netweave's SimLoop beside SimPy, in one run.

The workload, the same on both: 1,000 tasks (SimPy: processes), each sleeping
a random interval (uniform 0..10 ms of simulated time, seeded) and waking up,
``--wakeups`` times in all. netweave runs plain ``asyncio.sleep`` in tasks on
a :class:`netweave.sim.SimLoop`; SimPy yields ``env.timeout``. Also shown: the
default asyncio loop on the same code (real time, so only its overhead
counts), for scale.

Run from the repository root (add ``--cpu`` to time with process CPU time,
steadier on a machine shared with other work)::

    python benchmarks/sim_timers.py            # median of 5 runs
    python benchmarks/sim_timers.py --reps 3 --wakeups 200000

Target (2-core machine): >= 150,000 timer wakeups/s on SimLoop.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable, Generator
from typing import Any

import simpy

from netweave.sim import SimLoop

TASKS = 1000
#: The clock runs are timed with: wall time, or process CPU time with --cpu.
CLOCK = [time.perf_counter]
TARGET = 150_000


def netweave_run(wakeups: int, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> float:
    per_task = wakeups // TASKS
    scale = 0.01 if loop_factory is SimLoop else 1e-6  # real sleeps are kept tiny

    async def sleeper(rng: random.Random) -> None:
        for _ in range(per_task):
            await asyncio.sleep(rng.random() * scale)

    async def main() -> None:
        await asyncio.gather(*(sleeper(random.Random(i)) for i in range(TASKS)))

    loop = loop_factory()
    try:
        started = CLOCK[0]()
        loop.run_until_complete(main())
        elapsed = CLOCK[0]() - started
    finally:
        loop.close()
    return per_task * TASKS / elapsed


def simpy_run(wakeups: int) -> float:
    per_task = wakeups // TASKS
    env = simpy.Environment()

    def sleeper(rng: random.Random) -> Generator[Any, Any, None]:
        for _ in range(per_task):
            yield env.timeout(rng.random() * 0.01)

    for i in range(TASKS):
        env.process(sleeper(random.Random(i)))
    started = CLOCK[0]()
    env.run()
    elapsed = CLOCK[0]() - started
    return per_task * TASKS / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu", action="store_true", help="time with process CPU time (steadier when shared)"
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--wakeups", type=int, default=300_000)
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    runs: dict[str, list[float]] = {"netweave SimLoop": [], "SimPy": [], "asyncio (real time)": []}
    for _ in range(args.reps):  # interleaved, so machine noise hits all alike
        runs["netweave SimLoop"].append(netweave_run(args.wakeups, SimLoop))
        runs["SimPy"].append(simpy_run(args.wakeups))
        runs["asyncio (real time)"].append(netweave_run(args.wakeups // 4, asyncio.new_event_loop))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(
        f"timer wakeups/s, {TASKS} tasks sleeping random intervals, "
        f"median of {args.reps}, {'CPU' if args.cpu else 'wall'} time"
    )
    for name, value in medians.items():
        print(f"  {name:<22} {value:>12,.0f}")
    ours, simpy_rate = medians["netweave SimLoop"], medians["SimPy"]
    print(f"  ratio netweave / SimPy  {ours / simpy_rate:>12.2f}")
    verdict = "met" if ours >= TARGET else "NOT met"
    print(f"  target >= {TARGET:,}/s: {verdict}")


if __name__ == "__main__":
    main()
