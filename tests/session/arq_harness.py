"""A seeded, lossy, in-memory datagram path and a driver for two ARQ connections.

Sans-IO all the way: time is a plain float advanced from event to event (the
next delivery or the next timer), so a run is exact and repeatable per seed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from netweave.session import ArqConnection


@dataclass
class LossyPath:
    """One direction of a path: datagrams leave one after another at ``bandwidth``
    bytes per second (``None``: no limit), travel ``latency`` seconds, and are lost
    with probability ``loss``, duplicated with ``duplicate``, and held back an extra
    ``uniform(0, reorder_delay)`` with probability ``reorder`` (which reorders
    them). Every draw comes from ``rng``."""

    rng: random.Random
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.02
    latency: float = 0.01
    bandwidth: float | None = None
    _heap: list[tuple[float, int, bytes]] = field(default_factory=list)
    _count: int = 0
    _free_at: float = 0.0
    sent: int = 0
    dropped: int = 0

    def push(self, data: bytes, now: float) -> None:
        self.sent += 1
        departure = now
        if self.bandwidth is not None:
            departure = max(now, self._free_at) + len(data) / self.bandwidth
            self._free_at = departure
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            arrival = departure + self.latency
            if self.rng.random() < self.reorder:
                arrival += self.rng.uniform(0, self.reorder_delay)
            self._count += 1
            heapq.heappush(self._heap, (arrival, self._count, data))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out


@dataclass
class Outcome:
    received_by_b: list[bytes]
    received_by_a: list[bytes]
    end_time: float
    steps: int


def run_pair(
    a: ArqConnection,
    b: ArqConnection,
    a_to_b: LossyPath,
    b_to_a: LossyPath,
    *,
    from_a: list[bytes],
    from_b: list[bytes] = (),  # type: ignore[assignment]
    close: bool = True,
    max_time: float = 3600.0,
    max_steps: int = 2_000_000,
    read_b: bool = True,
) -> Outcome:
    """Exchange the messages until both sides are done (or a bound is hit)."""
    now = 0.0
    pending_a = list(reversed(from_a))
    pending_b = list(reversed(from_b))
    got_b: list[bytes] = []
    got_a: list[bytes] = []
    closed_a = closed_b = False
    steps = 0
    while steps < max_steps and now <= max_time:
        steps += 1
        for conn, pending in ((a, pending_a), (b, pending_b)):
            while pending and conn.writable:
                conn.send(pending.pop())
        if close and not pending_a and not closed_a:
            a.close()
            closed_a = True
        if close and not pending_b and not closed_b:
            b.close()
            closed_b = True
        for conn, path in ((a, a_to_b), (b, b_to_a)):
            for datagram in conn.datagrams_to_send(now):
                path.push(datagram, now)
        if read_b:
            while (message := b.next_message()) is not None:
                got_b.append(message)
        while (message := a.next_message()) is not None:
            got_a.append(message)
        if a.failed or b.failed:
            break
        times = [
            t
            for t in (a.get_timer(), b.get_timer(), a_to_b.next_time(), b_to_a.next_time())
            if t is not None
        ]
        if not times:
            break
        now = max(now, min(times))
        for data in a_to_b.due(now):
            b.receive_datagram(data, now)
        for data in b_to_a.due(now):
            a.receive_datagram(data, now)
        for conn in (a, b):
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
    return Outcome(got_b, got_a, now, steps)
