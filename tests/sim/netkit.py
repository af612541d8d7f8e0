"""A small world for the network tests: a SimLoop, a seed tree and a Network, driven by hand."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from netweave.observe import Observer
from netweave.sim import SeedTree, SimLoop, current_host
from netweave.sim._host import Host
from netweave.sim._network import Network

T = TypeVar("T")
C = TypeVar("C")


class World:
    """Hosts run coroutines with ``spawn``; the driver runs with ``run``."""

    def __init__(self, seed: int = 1, *, observer: Observer | None = None, **options: Any) -> None:
        self.loop = SimLoop(max_time=100_000.0)
        self.net = Network(loop=self.loop, seeds=SeedTree(seed), observer=observer, **options)
        self.loop.network = self.net

    def add(self, name: str, **options: Any) -> Host:
        return self.net.add_host(name, **options)

    def spawn(self, host: str, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        context = contextvars.copy_context()
        context.run(current_host.set, host)
        return self.loop.create_task(coro, context=context)

    def run(self, awaitable: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def on(self, host: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as ``host`` until it finishes; return its result."""
        return self.run(self.spawn(host, coro))

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_time_ns(self.loop.time_ns() + round(seconds * 1e9))

    @property
    def now(self) -> float:
        return self.loop.time()

    def crash(self, host: str) -> None:
        self.net.crash_host(host)
        self.loop.cancel_host(host)

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        for name in self.net.hosts:  # every socket vanishes: nothing is left unclosed
            self.net.crash_host(name)
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_idle()
        loop.close()


def simulated(
    *, seed: int = 7, hosts: tuple[str, ...] = ("client", "server"), **links: Any
) -> Callable[[type[C]], type[C]]:
    """Run every ``async def test_*`` of a class inside a fresh simulated world.

    Each test runs as the first host's main; ``self.world`` is the world. ``links``
    are settings for every link (``loss=0.05``...), applied before the test starts.
    """

    def decorate(cls: type[C]) -> type[C]:
        for name in dir(cls):
            method = getattr(cls, name)
            if name.startswith("test_") and inspect.iscoroutinefunction(method):
                setattr(cls, name, _in_world(method, seed, hosts, links))
        return cls

    return decorate


def _in_world(
    method: Callable[..., Coroutine[Any, Any, None]],
    seed: int,
    hosts: tuple[str, ...],
    links: dict[str, Any],
) -> Callable[..., None]:
    @functools.wraps(method)
    def test(self: Any) -> None:
        world = World(seed)
        for name in hosts:
            world.add(name)
        if links:
            world.net.default_link = dataclasses.replace(world.net.default_link, **links)
        self.world = world
        try:
            world.on(hosts[0], method(self))
        finally:
            world.close()

    del test.__wrapped__  # pytest must see a plain function, not the coroutine
    return test
