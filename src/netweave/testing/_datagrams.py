"""The datagram conformance suite: each promise of :class:`~netweave.transports.DatagramEndpoint`.

Subclass :class:`DatagramConformance` under a name pytest collects and give it
:meth:`~DatagramConformance.open_pair`, returning a *connected* client endpoint
and the *unconnected* endpoint it is connected to::

    from netweave.testing import DatagramConformance

    class TestMyDatagrams(DatagramConformance):
        async def open_pair(self):
            server = await MyTransport().bind(...)
            client = await MyTransport().connect(...)   # to server's address
            return client, server

Delivery is best effort, so the suite sends only a few datagrams at a time
and expects them all to arrive; that holds on loopback, and on a simulated
network configured without loss. A link that may reorder them sets
``preserves_order = False``. As for the stream suite, the tests are ``async
def`` methods for pytest-asyncio, use public asyncio APIs only and bound every
wait with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import ClassVar, TypeVar

from ..errors import ClosedResourceError, UsageError
from ..transports.base import DatagramEndpoint

__all__ = ["DatagramConformance"]

E = TypeVar("E", bound=BaseException)


async def _settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def _raises(kind: type[E], operation: Awaitable[object], what: str) -> E:
    try:
        result = await operation
    except kind as exc:
        return exc
    except Exception as exc:
        raise AssertionError(f"{what} should raise {kind.__name__}, raised {exc!r}") from exc
    raise AssertionError(f"{what} should raise {kind.__name__}, returned {result!r}")


class DatagramConformance(ABC):
    """Checks one datagram transport against the :class:`DatagramEndpoint` contract."""

    #: Datagrams sent back to back arrive in the order sent.
    preserves_order: ClassVar[bool] = True
    #: Seconds any one test may take (loop time: virtual under a simulator).
    timeout: ClassVar[float] = 30.0

    @abstractmethod
    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        """Return ``(client, server)``: ``client`` connected to ``server``, which is unconnected.

        The suite closes both when each test ends.
        """

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[tuple[DatagramEndpoint, DatagramEndpoint]]:
        """``open_pair`` under the suite's timeout; both endpoints closed on exit."""
        async with asyncio.timeout(self.timeout):
            client, server = await self.open_pair()
            try:
                yield client, server
            finally:
                client.abort()
                server.abort()
                await client.close()
                await server.close()

    async def test_round_trip(self) -> None:
        async with self.connected() as (client, server):
            await client.send_to(b"ping")
            data, sender = await server.receive_from()
            assert data == b"ping"
            await server.send_to(b"pong", sender)
            reply, origin = await client.receive_from()
            assert reply == b"pong"
            assert origin == client.remote, f"reply came from {origin!r}, not {client.remote!r}"

    async def test_boundaries_are_preserved(self) -> None:
        sizes = [1, 7, 100, 1000, 3, 4096, 2]
        async with self.connected() as (client, server):
            limit = client.max_datagram_size
            datagrams = [bytes([i]) * min(size, limit) for i, size in enumerate(sizes)]
            for datagram in datagrams:
                await client.send_to(datagram)
            received = [(await server.receive_from())[0] for _ in datagrams]
            if self.preserves_order:
                assert received == datagrams
            else:
                assert sorted(received) == sorted(datagrams)

    async def test_max_datagram_size_round_trips(self) -> None:
        async with self.connected() as (client, server):
            size = client.max_datagram_size
            assert size >= 1
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            await client.send_to(payload)
            data, sender = await server.receive_from()
            assert data == payload, f"a datagram of exactly {size} bytes did not arrive whole"
            reply = payload[: server.max_datagram_size]
            await server.send_to(reply, sender)
            assert (await client.receive_from())[0] == reply

    async def test_oversize_is_usage_error_and_sends_nothing(self) -> None:
        async with self.connected() as (client, server):
            too_big = bytes(client.max_datagram_size + 1)
            await _raises(UsageError, client.send_to(too_big), "an oversize send_to")
            await client.send_to(b"after")
            assert (await server.receive_from())[0] == b"after"

    async def test_close_is_idempotent_and_concurrent(self) -> None:
        async with self.connected() as (client, server):
            await asyncio.gather(client.close(), client.close())
            await client.close()
            await server.close()
            server.abort()

    async def test_use_after_close_raises_closed(self) -> None:
        async with self.connected() as (client, _server):
            await client.close()
            await _raises(ClosedResourceError, client.receive_from(), "receive_from after close")
            await _raises(ClosedResourceError, client.send_to(b"x"), "send_to after close")

    async def test_use_after_abort_raises_closed(self) -> None:
        async with self.connected() as (client, _server):
            client.abort()
            client.abort()
            await _raises(ClosedResourceError, client.receive_from(), "receive_from after abort")
            await _raises(ClosedResourceError, client.send_to(b"x"), "send_to after abort")

    async def test_close_wakes_a_waiting_receive(self) -> None:
        async with self.connected() as (_client, server):
            waiting = asyncio.create_task(server.receive_from())
            await _settle()
            assert not waiting.done(), "receive_from returned although nothing was sent"
            await server.close()
            await _raises(ClosedResourceError, waiting, "a receive_from waiting during close")

    async def test_cancelled_receive_loses_no_datagram(self) -> None:
        async with self.connected() as (client, server):
            waiting = asyncio.create_task(server.receive_from())
            await _settle()
            waiting.cancel()
            await _raises(asyncio.CancelledError, waiting, "a cancelled receive_from")
            await client.send_to(b"kept")
            assert (await server.receive_from())[0] == b"kept"

    async def test_addresses(self) -> None:
        async with self.connected() as (client, server):
            assert client.remote is not None, "a connected endpoint has a remote address"
            assert server.remote is None, "an unconnected endpoint has no remote address"
            for end in (client, server):
                assert end.local_address, "local_address is empty"
                assert end.url, "url is empty"
                assert end.dropped == 0
