"""The stream conformance suite: each promise of :class:`~netweave.transports.StreamConnection`.

Subclass :class:`StreamConformance` under a name pytest collects and give it
:meth:`~StreamConformance.open_pair`; every ``test_*`` method is then run
against your transport::

    from netweave.testing import StreamConformance

    class TestMyTransport(StreamConformance):
        async def open_pair(self):
            listener = await MyTransport().listen(...)
            client = await MyTransport().connect(...)
            server = await listener.accept()
            await listener.close()
            return client, server

The tests are ``async def`` methods: run them with pytest-asyncio in auto
mode, or mark your subclass with ``pytestmark = pytest.mark.asyncio``. They use
only public asyncio APIs and bound every wait with ``asyncio.timeout``, so
they run unchanged on uvloop or a simulated event loop with a virtual clock.

A transport that lacks something says so in a class attribute, and the
affected tests adapt or skip with that reason.
"""

from __future__ import annotations

import asyncio
import random  # determinism: ok (seeded random.Random instances only, never the global functions)
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import ClassVar, TypeVar

import pytest

from ..errors import ClosedResourceError, ConnectionBroken, UsageError
from ..transports.base import StreamConnection

__all__ = ["StreamConformance", "receive_exactly", "receive_until_eof"]

E = TypeVar("E", bound=BaseException)


async def receive_exactly(connection: StreamConnection, size: int) -> bytes:
    """Receive until ``size`` bytes arrived; ``AssertionError`` if the stream ends first."""
    received = bytearray()
    while len(received) < size:
        chunk = await connection.receive()
        if not chunk:
            raise AssertionError(f"the stream ended after {len(received)} of {size} expected bytes")
        received += chunk
    if len(received) != size:
        raise AssertionError(f"expected {size} bytes, received {len(received)}")
    return bytes(received)


async def receive_until_eof(connection: StreamConnection, limit: int) -> bytes:
    """Receive until end of stream; ``AssertionError`` past ``limit`` bytes."""
    received = bytearray()
    while chunk := await connection.receive():
        received += chunk
        if len(received) > limit:
            raise AssertionError(f"received more than the {limit} bytes expected")
    return bytes(received)


async def _send_each(connection: StreamConnection, pieces: list[bytes]) -> None:
    """Send each piece in turn (run as a task, so a small transport buffer cannot deadlock)."""
    for piece in pieces:
        await connection.send(piece)


async def _settle(rounds: int = 5) -> None:
    """Let other tasks run up to their next wait (no wall-clock time passes)."""
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


class StreamConformance(ABC):
    """Checks one stream transport against the :class:`StreamConnection` contract.

    Implement :meth:`open_pair`. Adjust the class attributes to what your
    transport offers; the defaults describe a full TCP-like transport.
    """

    #: ``abort`` makes the peer's ``receive`` raise ``ConnectionBroken``; if
    #: False (Unix sockets, for example) the peer sees end of stream instead.
    has_reset: ClassVar[bool] = True
    #: ``send_eof`` ends one direction while the other keeps working.
    has_half_close: ClassVar[bool] = True
    #: ``send`` waits when the peer does not read; ``backpressure_limit``
    #: must exceed everything the transport and the OS may buffer.
    has_backpressure: ClassVar[bool] = True
    #: ``client.local_address == server.remote_address`` and vice versa.
    mirrored_addresses: ClassVar[bool] = True
    #: Bytes sent each way at once by the bulk transfer test.
    bulk_size: ClassVar[int] = 4 * 1024 * 1024
    #: Bytes the backpressure test offers a peer that does not read.
    backpressure_limit: ClassVar[int] = 64 * 1024 * 1024
    #: Seconds after which a sender that has not finished counts as blocked.
    blocked_after: ClassVar[float] = 0.25
    #: Seconds any one test may take (loop time: virtual under a simulator).
    timeout: ClassVar[float] = 30.0
    #: Seed of the random data and send sizes.
    seed: ClassVar[int] = 20240601

    @abstractmethod
    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        """Return two new connected ends, ``(client, server)``.

        The suite closes or aborts both when each test ends.
        """

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[tuple[StreamConnection, StreamConnection]]:
        """``open_pair`` under the suite's timeout; on exit both ends are aborted,
        then closed so the transport releases everything before the loop ends."""
        async with asyncio.timeout(self.timeout):
            client, server = await self.open_pair()
            try:
                yield client, server
            finally:
                client.abort()
                server.abort()
                await client.close()
                await server.close()

    # -- data -------------------------------------------------------------------

    async def test_round_trip_both_directions(self) -> None:
        async with self.connected() as (client, server):
            await client.send(b"ping")
            assert await receive_exactly(server, 4) == b"ping"
            await server.send(b"pong!")
            assert await receive_exactly(client, 5) == b"pong!"

    async def test_bulk_transfer_both_directions_at_once(self) -> None:
        rng = random.Random(self.seed)
        up = rng.randbytes(self.bulk_size)
        down = rng.randbytes(self.bulk_size)

        async def pump(connection: StreamConnection, data: bytes, seed: int) -> None:
            sizes = random.Random(seed)
            view = memoryview(data)
            position = 0
            while position < len(data):
                size = sizes.randint(1, 64 * 1024)
                await connection.send(view[position : position + size])
                position += size

        async with self.connected() as (client, server):
            async with asyncio.TaskGroup() as group:
                group.create_task(pump(client, up, self.seed + 1))
                group.create_task(pump(server, down, self.seed + 2))
                got_up = group.create_task(receive_exactly(server, len(up)))
                got_down = group.create_task(receive_exactly(client, len(down)))
            assert got_up.result() == up, "client-to-server bytes differ"
            assert got_down.result() == down, "server-to-client bytes differ"

    async def test_order_is_kept(self) -> None:
        messages = [b"<%d>" % i for i in range(500)]
        async with self.connected() as (client, server):
            sending = asyncio.create_task(_send_each(client, messages))
            expected = b"".join(messages)
            assert await receive_exactly(server, len(expected)) == expected
            await sending

    async def test_send_nowait_keeps_order_with_send(self) -> None:
        """Data accepted by ``send_nowait`` (with or without ``more``) is sent like ``send``'s,
        in order, and held data goes out without a further call."""
        rng = random.Random(self.seed)
        pieces = [
            b"[%d:%s]" % (i, rng.randbytes(rng.randint(0, 40)).hex().encode()) for i in range(300)
        ]
        expected = b"".join(pieces)
        async with self.connected() as (client, server):

            async def mixed() -> None:
                for i, piece in enumerate(pieces):
                    mode = rng.randrange(3)
                    if mode == 0 or not client.send_nowait(piece, more=mode == 1 and i < 299):
                        await client.send(piece)

            sending = asyncio.create_task(mixed())
            assert await receive_exactly(server, len(expected)) == expected
            await sending
            # A last piece held with more=True must still arrive by itself.
            if client.send_nowait(b"tail", more=True):
                assert await receive_exactly(server, 4) == b"tail"

    async def test_push_delivery_gives_every_byte_in_order_then_the_end(self) -> None:
        """``set_receiver``: data buffered before it and data arriving after it reach the
        receiver in order, ``receive`` is refused meanwhile, ``b""`` comes once at the end."""
        rng = random.Random(self.seed)
        before = rng.randbytes(3000)
        after = [rng.randbytes(rng.randint(1, 5000)) for _ in range(50)]
        async with self.connected() as (client, server):
            await client.send(before)
            await _settle()
            got = bytearray()
            ends = 0
            ended = asyncio.Event()

            def receiver(chunk: bytes) -> None:
                nonlocal ends
                if chunk:
                    got.extend(chunk)
                else:
                    ends += 1
                    ended.set()

            if not server.set_receiver(receiver):
                pytest.skip("the transport has no push delivery (set_receiver returned False)")
            await _raises(UsageError, server.receive(), "receive() while a receiver is set")
            sending = asyncio.create_task(_send_each(client, after))
            await sending
            await client.send_eof()
            await ended.wait()
            await _settle()
            assert bytes(got) == before + b"".join(after)
            assert ends == 1, "the end of stream must be pushed exactly once"

    async def test_push_delivery_can_be_switched_off(self) -> None:
        async with self.connected() as (client, server):
            got = bytearray()
            complete = asyncio.Event()

            def receiver(chunk: bytes) -> None:
                got.extend(chunk)
                if got == b"pushed":
                    complete.set()

            if not server.set_receiver(receiver):
                pytest.skip("the transport has no push delivery (set_receiver returned False)")
            await client.send(b"pushed")
            async with asyncio.timeout(self.timeout):
                await complete.wait()
            server.set_receiver(None)
            await client.send(b"pulled")
            assert await receive_exactly(server, 6) == b"pulled"

    async def test_chunk_boundaries_are_not_preserved(self) -> None:
        """Many sends may arrive as fewer receives, one as several; no byte is lost."""
        rng = random.Random(self.seed)
        pieces = [rng.randbytes(rng.randint(1, 300)) for _ in range(200)]
        expected = b"".join(pieces)
        async with self.connected() as (client, server):
            sending = asyncio.create_task(_send_each(client, pieces))
            received = bytearray()
            receives = 0
            while len(received) < len(expected):
                chunk = await server.receive(rng.randint(1, 1000))
                assert chunk, "receive returned end of stream in the middle of the data"
                received += chunk
                receives += 1
            await sending
            assert bytes(received) == expected
            assert receives >= 1

    async def test_empty_send_sends_nothing(self) -> None:
        async with self.connected() as (client, server):
            await client.send(b"")
            await client.send(bytearray())
            await client.send(b"x")
            assert await server.receive() == b"x"

    async def test_accepts_bytearray_and_memoryview(self) -> None:
        async with self.connected() as (client, server):
            await client.send(bytearray(b"ab"))
            await client.send(memoryview(b"xcdx")[1:3])
            assert await receive_exactly(server, 4) == b"abcd"

    async def test_receive_honours_max_bytes(self) -> None:
        data = bytes(range(256)) * 4
        async with self.connected() as (client, server):
            await client.send(data)
            received = bytearray()
            while len(received) < len(data):
                chunk = await server.receive(7)
                assert 1 <= len(chunk) <= 7, f"receive(7) returned {len(chunk)} bytes"
                received += chunk
            assert bytes(received) == data
            await _raises(UsageError, server.receive(0), "receive(max_bytes=0)")

    # -- end of stream --------------------------------------------------------------

    async def test_send_eof_gives_data_then_end_of_stream(self) -> None:
        if not self.has_half_close:
            pytest.skip("the transport declares has_half_close = False")
        async with self.connected() as (client, server):
            await client.send(b"last words")
            await client.send_eof()
            await client.send_eof()  # idempotent
            assert await receive_until_eof(server, 10) == b"last words"
            for _ in range(3):
                assert await server.receive() == b"", "end of stream must repeat"

    async def test_half_close_keeps_the_other_direction(self) -> None:
        if not self.has_half_close:
            pytest.skip("the transport declares has_half_close = False")
        async with self.connected() as (client, server):
            await client.send(b"request")
            await client.send_eof()
            assert await receive_until_eof(server, 7) == b"request"
            await server.send(b"reply after the peer's eof")
            assert await receive_exactly(client, 26) == b"reply after the peer's eof"
            await server.send_eof()
            assert await client.receive() == b""

    async def test_send_after_send_eof_raises_closed(self) -> None:
        if not self.has_half_close:
            pytest.skip("the transport declares has_half_close = False")
        async with self.connected() as (client, _server):
            await client.send_eof()
            await _raises(ClosedResourceError, client.send(b"x"), "send after send_eof")

    async def test_close_flushes_then_peer_sees_end_of_stream(self) -> None:
        data = random.Random(self.seed).randbytes(200_000)
        async with self.connected() as (client, server):

            async def send_and_close() -> None:
                await client.send(data)
                await client.close()

            closing = asyncio.create_task(send_and_close())
            assert await receive_until_eof(server, len(data)) == data
            await closing
            for _ in range(3):
                assert await server.receive() == b"", "end of stream must repeat"

    # -- close and abort --------------------------------------------------------

    async def test_close_is_idempotent_and_concurrent(self) -> None:
        async with self.connected() as (client, server):
            open_before = not client.is_closing
            assert open_before, "is_closing is true on a new connection"
            await asyncio.gather(client.close(), client.close(), client.close())
            await client.close()
            assert client.is_closing
            await server.close()
            await server.close()

    async def test_use_after_close_raises_closed(self) -> None:
        async with self.connected() as (client, _server):
            await client.close()
            await _raises(ClosedResourceError, client.send(b"x"), "send after close")
            await _raises(ClosedResourceError, client.send(b""), "empty send after close")
            await _raises(ClosedResourceError, client.receive(), "receive after close")

    async def test_use_after_abort_raises_closed(self) -> None:
        async with self.connected() as (client, _server):
            client.abort()
            client.abort()  # idempotent
            assert client.is_closing
            await _raises(ClosedResourceError, client.send(b"x"), "send after abort")
            await _raises(ClosedResourceError, client.receive(), "receive after abort")
            await client.close()  # still fine

    async def test_close_wakes_a_waiting_receive(self) -> None:
        async with self.connected() as (client, _server):
            waiting = asyncio.create_task(client.receive())
            await _settle()
            assert not waiting.done(), "receive returned although nothing was sent"
            await client.close()
            await _raises(ClosedResourceError, waiting, "a receive waiting during close")

    async def test_abort_resets_the_peer(self) -> None:
        async with self.connected() as (client, server):
            client.abort()
            if self.has_reset:
                await _raises(ConnectionBroken, server.receive(), "receive after the peer's abort")
            else:
                assert await server.receive() == b"", "expected end of stream after abort"
            await server.close()  # never raises for a peer that went away

    async def test_send_after_peer_reset_raises_broken(self) -> None:
        if not self.has_reset:
            pytest.skip("the transport declares has_reset = False")
        async with self.connected() as (client, server):
            server.abort()
            await _raises(ConnectionBroken, client.receive(), "receive after the peer's abort")
            await _raises(ConnectionBroken, client.send(b"x"), "send after the peer's abort")
            assert client.is_closing
            await client.close()

    async def test_close_after_the_peer_closed_does_not_raise(self) -> None:
        async with self.connected() as (client, server):
            await server.close()
            assert await client.receive() == b""
            await client.close()

    # -- receivers ------------------------------------------------------------------

    async def test_second_concurrent_receive_is_usage_error(self) -> None:
        async with self.connected() as (client, server):
            first = asyncio.create_task(client.receive())
            await _settle()
            await _raises(UsageError, client.receive(), "a second concurrent receive")
            await server.send(b"z")
            assert await first == b"z"

    async def test_cancelled_receive_loses_no_data(self) -> None:
        async with self.connected() as (client, server):
            waiting = asyncio.create_task(server.receive())
            await _settle()
            waiting.cancel()
            await _raises(asyncio.CancelledError, waiting, "a cancelled receive")
            await client.send(b"abc")
            assert await receive_exactly(server, 3) == b"abc"
            # cancel a receive while data is arriving: either it returned the
            # data, or the data waits for the next call.
            waiting = asyncio.create_task(server.receive())
            await _settle()
            await client.send(b"defg")
            waiting.cancel()
            try:
                first = await waiting
            except asyncio.CancelledError:
                first = b""
            rest = await receive_exactly(server, 4 - len(first)) if len(first) < 4 else b""
            assert first + rest == b"defg"

    # -- flow control ---------------------------------------------------------------

    async def test_backpressure_blocks_a_sender_until_the_peer_reads(self) -> None:
        if not self.has_backpressure:
            pytest.skip("the transport declares has_backpressure = False")
        piece = random.Random(self.seed).randbytes(64 * 1024)
        limit = self.backpressure_limit
        async with self.connected() as (client, server):
            sent = 0

            async def writer() -> None:
                nonlocal sent
                while sent < limit:
                    await client.send(piece)
                    sent += len(piece)

            task = asyncio.create_task(writer())
            try:
                done, _ = await asyncio.wait({task}, timeout=self.blocked_after)
                if done:
                    task.result()
                    raise AssertionError(
                        f"send never waited: {sent} bytes were accepted while the peer read "
                        f"nothing (raise backpressure_limit if the transport buffers more)"
                    )
                received = 0
                while received < limit:
                    chunk = await server.receive()
                    assert chunk, "end of stream in the middle of the data"
                    received += len(chunk)
                await task
                assert received == sent == limit
            finally:
                task.cancel()

    # -- addresses ----------------------------------------------------------------

    async def test_addresses(self) -> None:
        async with self.connected() as (client, server):
            for end, name in ((client, "client"), (server, "server")):
                assert isinstance(end.local_address, str)
                assert isinstance(end.remote_address, str)
                assert end.local_address, f"{name}.local_address is empty"
                assert end.remote_address, f"{name}.remote_address is empty"
            if self.mirrored_addresses:
                assert client.local_address == server.remote_address
                assert client.remote_address == server.local_address

    async def test_async_with_closes(self) -> None:
        async with self.connected() as (client, server):
            async with client:
                await client.send(b"bye")
            assert client.is_closing
            assert await receive_until_eof(server, 3) == b"bye"
