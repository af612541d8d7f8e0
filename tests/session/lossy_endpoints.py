"""A pair of in-memory datagram endpoints joined by a seeded lossy path (test double).

Deliveries are loop timers, so on the virtual-time loop a run is exact and
repeatable per seed.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque

from netweave.errors import ClosedResourceError, UsageError
from netweave.transports.base import Address, DatagramEndpoint


class LossyEndpoint(DatagramEndpoint):
    """One end; sends to its peer through loss, duplication and random delay."""

    def __init__(
        self,
        name: str,
        rng: random.Random,
        *,
        loss: float,
        duplicate: float,
        latency: float,
        jitter: float,
        max_size: int = 1400,
    ) -> None:
        self.name = name
        self.rng = rng
        self.loss = loss
        self.duplicate = duplicate
        self.latency = latency
        self.jitter = jitter
        self._max = max_size
        self.peer: LossyEndpoint | None = None
        self._queue: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.sent = 0
        self.blackhole = False

    def deliver(self, data: bytes) -> None:
        if self._closed:
            return
        self._queue.append(data)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def send_to(self, data: bytes, address: Address | None = None) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.name} is closed")
        if len(data) > self._max:
            raise UsageError(f"datagram of {len(data)} bytes over {self._max}")
        self.sent += 1
        peer = self.peer
        if peer is None or self.blackhole:
            return
        loop = asyncio.get_running_loop()
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            if self.rng.random() < self.loss:
                continue
            delay = self.latency + self.rng.uniform(0, self.jitter)
            loop.call_later(delay, peer.deliver, bytes(data))

    async def receive_from(self) -> tuple[bytes, Address]:
        while not self._queue:
            if self._closed:
                raise ClosedResourceError(f"{self.name} is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft(), self.remote or ""

    async def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def max_datagram_size(self) -> int:
        return self._max

    @property
    def local_address(self) -> Address:
        return self.name

    @property
    def remote(self) -> Address | None:
        return None if self.peer is None else self.peer.name

    @property
    def url(self) -> str:
        return f"lossy://{self.name}"


def lossy_pair(
    seed: int,
    *,
    loss: float = 0.0,
    duplicate: float = 0.0,
    latency: float = 0.01,
    jitter: float = 0.0,
) -> tuple[LossyEndpoint, LossyEndpoint]:
    a = LossyEndpoint(
        "a", random.Random(seed), loss=loss, duplicate=duplicate, latency=latency, jitter=jitter
    )
    b = LossyEndpoint(
        "b",
        random.Random(seed + 1),
        loss=loss,
        duplicate=duplicate,
        latency=latency,
        jitter=jitter,
    )
    a.peer, b.peer = b, a
    return a, b
