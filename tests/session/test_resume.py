"""Resumable sessions over mem:// on a virtual-time loop: replay, exactly-once, expiry."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

import netweave
from netweave.errors import ClosedResourceError, EndOfStream, SessionExpired
from netweave.observe import RecordingObserver
from netweave.session import ResumingClient, ServerSession, SessionResumed, SessionServer
from netweave.session._resume_wire import Expired, Resume, decode, encode

_names = itertools.count()


def url() -> str:
    return f"mem://resume-{next(_names)}"


async def echo(session: ServerSession) -> None:
    async for message in session:
        await session.send(message)


@pytest.mark.parametrize("seed", range(3))
async def test_messages_survive_repeated_connection_drops_exactly_once_in_order(
    seed: int,
) -> None:
    rng = random.Random(seed)
    observer = RecordingObserver()
    server = SessionServer(echo, rng=random.Random(seed + 100), grace=10.0)
    address = url()
    async with server.serve(address):
        client = await ResumingClient.connect(
            address, rng=random.Random(seed + 200), observer=observer, max_unacked=64
        )
        count = 2000
        sent = [b"%d" % i for i in range(count)]

        async def produce() -> None:
            for message in sent:
                await client.send(message)
                if rng.random() < 0.01:
                    client.drop_connection()

        async def chaos() -> None:
            for _ in range(20):  # and drops at random moments, in between sends
                await asyncio.sleep(rng.uniform(0, 0.3))
                client.drop_connection()

        producer = asyncio.create_task(produce())
        chaos_task = asyncio.create_task(chaos())
        received = [await client.receive() for _ in range(count)]
        await producer
        await chaos_task
        assert received == sent
        assert client.reconnects >= 10
        assert observer.of_type(SessionResumed)
        assert server.resumed == client.reconnects
        await client.close()
        with pytest.raises(ClosedResourceError):
            await client.send(b"late")
    assert server.sessions == 0


async def test_server_sees_end_of_stream_after_the_last_message() -> None:
    got: list[bytes] = []
    done = asyncio.Event()

    async def collect(session: ServerSession) -> None:
        try:
            async for message in session:
                got.append(message)
        finally:
            done.set()

    server = SessionServer(collect, rng=random.Random(1))
    address = url()
    async with server.serve(address):
        client = await ResumingClient.connect(address, rng=random.Random(2))
        for i in range(10):
            await client.send(b"%d" % i)
            if i == 5:
                client.drop_connection()
        await client.close()
        await done.wait()
    assert got == [b"%d" % i for i in range(10)]


async def test_expired_session_is_reported_to_both_sides() -> None:
    loop = asyncio.get_running_loop()
    server_errors: list[BaseException] = []

    async def hold(session: ServerSession) -> None:
        try:
            await session.receive()
        except SessionExpired as exc:
            server_errors.append(exc)
            raise

    server = SessionServer(hold, rng=random.Random(3), grace=2.0)
    address = url()
    first = await server.serve(address)
    client = await ResumingClient.connect(address, rng=random.Random(4), give_up_after=60.0)
    await first.close()  # the server goes away: the connection breaks, RESUME cannot land
    start = loop.time()
    await asyncio.sleep(3.0)  # longer than the grace period
    assert server_errors
    assert isinstance(server_errors[0], SessionExpired)
    assert server.sessions == 0
    assert server.expired == 1
    async with server.serve(address):  # back, but it has forgotten the session
        with pytest.raises(SessionExpired, match="grace"):
            await client.receive()
        assert loop.time() - start < 10.0
    with pytest.raises(SessionExpired):
        await client.send(b"x")
    await client.close()


async def test_client_gives_up_when_it_cannot_reconnect() -> None:
    loop = asyncio.get_running_loop()
    server = SessionServer(echo, rng=random.Random(5), grace=4.0)
    address = url()
    serving = await server.serve(address)
    client = await ResumingClient.connect(address, rng=random.Random(6))
    assert client.grace == 4.0
    await serving.close()
    start = loop.time()
    with pytest.raises(SessionExpired, match="could not reconnect"):
        await client.receive()
    assert loop.time() - start <= 4.0 + 1e-6  # gives up at the server's grace
    await client.close()


async def test_backpressure_bounds_the_replay_buffer() -> None:
    gate = asyncio.Event()

    async def slow(session: ServerSession) -> None:
        await gate.wait()
        async for _ in session:
            pass

    server = SessionServer(slow, rng=random.Random(7), max_unacked=8)  # its inbox: 8
    address = url()
    async with server.serve(address):
        client = await ResumingClient.connect(address, rng=random.Random(8), max_unacked=8)
        sender = asyncio.create_task(_send_many(client, 100))
        await asyncio.sleep(5.0)
        assert not sender.done()
        assert client.unacked <= 8
        gate.set()
        await sender
        await client.close()


async def _send_many(client: ResumingClient, count: int) -> None:
    for i in range(count):
        await client.send(b"%d" % i)


async def test_unknown_resume_and_garbage_openings_are_refused() -> None:
    server = SessionServer(echo, rng=random.Random(9), handshake_timeout=1.0)
    address = url()
    async with server.serve(address):
        channel = await netweave.connect(address, "lp4,raw")
        await channel.send(encode(Resume(b"\x00" * 16, 0)))
        assert decode(await channel.receive()) == Expired(b"\x00" * 16)
        with pytest.raises(EndOfStream):
            await channel.receive()
        silent = await netweave.connect(address, "lp4,raw")
        with pytest.raises(EndOfStream):
            await silent.receive()  # no opening within the handshake timeout
        await channel.close()
        await silent.close()


async def test_receive_after_close_raises() -> None:
    server = SessionServer(echo, rng=random.Random(10))
    address = url()
    async with server.serve(address):
        client = await ResumingClient.connect(address, rng=random.Random(11))
        waiting = asyncio.create_task(client.receive())
        await asyncio.sleep(0.1)
        await client.close()
        with pytest.raises((ClosedResourceError, EndOfStream)):
            await waiting
        with pytest.raises((ClosedResourceError, EndOfStream)):
            await client.receive()
