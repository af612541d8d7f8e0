"""ReliableChannel: the ARQ core over a datagram endpoint, on a virtual-time loop."""

from __future__ import annotations

import asyncio
import random

import pytest

from netweave.errors import ClosedResourceError, EndOfStream, PeerUnresponsive, UsageError
from netweave.observe import RecordingObserver
from netweave.session import ArqConfig, ReliableChannel, Retransmitted, RttSampled

from .lossy_endpoints import lossy_pair


@pytest.mark.parametrize("seed", range(3))
async def test_messages_arrive_once_in_order_both_ways_under_loss(seed: int) -> None:
    left, right = lossy_pair(seed, loss=0.2, duplicate=0.05, jitter=0.01)
    observer = RecordingObserver()
    a = ReliableChannel(left, observer=observer)
    b = ReliableChannel(right)
    rng = random.Random(seed)
    outbound = [rng.randbytes(rng.randrange(0, 4000)) for _ in range(400)]
    inbound = [b"back %d" % i for i in range(100)]

    async def pump(channel: ReliableChannel, items: list[bytes]) -> None:
        for item in items:
            await channel.send(item)

    async def collect(channel: ReliableChannel, count: int) -> list[bytes]:
        return [await channel.receive() for _ in range(count)]

    async with asyncio.timeout(600):
        _, _, got_b, got_a = await asyncio.gather(
            pump(a, outbound), pump(b, inbound), collect(b, 400), collect(a, 100)
        )
    assert got_b == outbound
    assert got_a == inbound
    assert observer.of_type(Retransmitted)
    assert observer.of_type(RttSampled)
    assert a.core.retransmissions > 0
    await asyncio.gather(a.close(), b.close())


async def test_close_ends_the_peers_stream_after_the_last_message() -> None:
    left, right = lossy_pair(7, loss=0.1)
    a, b = ReliableChannel(left), ReliableChannel(right, stack="json")
    for i in range(20):
        await a.send(b'{"n": %d}' % i)
    await a.close()
    assert a.core.closed
    assert [message async for message in b] == [{"n": i} for i in range(20)]
    with pytest.raises(EndOfStream):
        await b.receive()
    with pytest.raises(ClosedResourceError):
        await a.send(b"{}")
    await b.close()


async def test_silent_peer_is_detected_within_the_rto_bound() -> None:
    loop = asyncio.get_running_loop()
    left, right = lossy_pair(3)
    config = ArqConfig(initial_rto=0.5, max_rto=4.0, max_rto_expirations=3)
    a = ReliableChannel(left, config=config)
    b = ReliableChannel(right, config=config)
    await a.send(b"ping")
    assert await b.receive() == b"ping"
    left.blackhole = True  # everything a sends from now on disappears
    start = loop.time()
    await a.send(b"into the void")
    with pytest.raises(PeerUnresponsive):
        await a.receive()
    # RTO >= 0.2 s doubles three times, then the fourth expiry fails it: at most 0.5+1+2+4 s.
    assert loop.time() - start <= 7.5
    with pytest.raises(PeerUnresponsive):
        await a.send(b"more")
    a.abort()
    b.abort()


async def test_send_waits_while_the_send_buffer_is_full() -> None:
    left, right = lossy_pair(5)
    config = ArqConfig(send_buffer=4000, recv_window=8, max_message_size=1000)
    a, b = ReliableChannel(left, config=config), ReliableChannel(right, config=config)

    async def send_all() -> None:
        for _ in range(40):
            await a.send(bytes(900))

    writer = asyncio.create_task(send_all())
    await asyncio.sleep(5.0)
    assert not writer.done()  # b reads nothing: the window closes, then a's buffer fills
    received = [await b.receive() for _ in range(40)]
    await writer
    assert len(received) == 40
    a.abort()
    b.abort()


async def test_garbage_datagrams_are_dropped_and_counted() -> None:
    left, right = lossy_pair(6)
    a, b = ReliableChannel(left), ReliableChannel(right)
    right.deliver(b"\x07 not arq")
    await a.send(b"real")
    assert await b.receive() == b"real"
    assert b.malformed == 1
    a.abort()
    b.abort()


async def test_stack_must_carry_whole_messages() -> None:
    left, _ = lossy_pair(1)
    with pytest.raises(UsageError, match="codec"):
        ReliableChannel(left, stack="lp4,raw")
