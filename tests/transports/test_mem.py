"""``mem://`` and ``memory_stream_pair``: the stream suite, chunking, capacity, names per loop."""

from __future__ import annotations

import asyncio

import pytest
from transport_pairs import open_stream_pair

from netweave.endpoints import parse_endpoint
from netweave.errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    InvalidEndpoint,
    ListenFailed,
    UsageError,
)
from netweave.observe import (
    BytesReceived,
    BytesSent,
    ConnectionClosed,
    ConnectionOpened,
    RecordingObserver,
)
from netweave.testing import StreamConformance, memory_stream_pair
from netweave.transports import MemoryStreamConnection, StreamConnection, StreamTransport


class TestMemConformance(StreamConformance):
    backpressure_limit = 4 * 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await open_stream_pair("mem://suite", "mem://suite")


class TestMemOneByteChunks(StreamConformance):
    """Every receive returns one byte: the suite must not assume chunk boundaries."""

    bulk_size = 64 * 1024
    backpressure_limit = 64 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        url = "mem://ones?chunks=1&capacity=4k"
        return await open_stream_pair(url, url)


class TestMemOddChunks(StreamConformance):
    bulk_size = 512 * 1024
    backpressure_limit = 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        url = "mem://odd?chunks=1,3,7&capacity=16k"
        return await open_stream_pair(url, url)


class TestMemoryStreamPair(StreamConformance):
    mirrored_addresses = True
    backpressure_limit = 4 * 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return memory_stream_pair()


class TestMemoryStreamPairChunked(StreamConformance):
    bulk_size = 256 * 1024
    backpressure_limit = 256 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return memory_stream_pair(chunks=(1, 3, 7), capacity=8 * 1024)


def _transport() -> StreamTransport:
    _, transport = parse_endpoint("mem://x")
    assert isinstance(transport, StreamTransport)
    return transport


async def _receive_sizes(connection: StreamConnection, total: int) -> list[int]:
    sizes = []
    while total:
        chunk = await connection.receive()
        sizes.append(len(chunk))
        total -= len(chunk)
    return sizes


async def test_chunks_cycle_through_the_given_sizes() -> None:
    a, b = await open_stream_pair("mem://c?chunks=1,3,7", "mem://c?chunks=2")
    await a.send(bytes(20))
    assert await _receive_sizes(b, 20) == [1, 3, 7, 1, 3, 5]
    await b.send(bytes(5))
    assert await _receive_sizes(a, 5) == [2, 2, 1]
    await a.close()
    await b.close()


async def test_max_bytes_caps_a_chunk() -> None:
    a, b = memory_stream_pair(chunks=(5,))
    await a.send(b"abcdefgh")
    assert await b.receive(2) == b"ab"
    assert await b.receive() == b"cdefg"
    assert await b.receive() == b"h"


async def test_send_waits_while_the_peer_holds_more_than_its_capacity() -> None:
    a, b = memory_stream_pair(capacity=10)
    await a.send(b"x" * 10)  # exactly the capacity: accepted without waiting
    blocked = asyncio.create_task(a.send(b"y" * 5))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await b.receive(4) == b"xxxx"  # 11 left: still above
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await b.receive(1) == b"x"  # 10 left: room again
    await asyncio.wait_for(blocked, timeout=5)
    assert await b.receive() == b"xxxxxyyyyy"


async def test_close_while_waiting_to_send_raises_closed() -> None:
    a, _b = memory_stream_pair(capacity=1)
    blocked = asyncio.create_task(a.send(b"xx"))
    await asyncio.sleep(0)
    await a.close()
    with pytest.raises(ClosedResourceError, match="closed while waiting to send"):
        await blocked


async def test_peer_close_while_waiting_to_send_raises_broken() -> None:
    a, b = memory_stream_pair(capacity=1)
    blocked = asyncio.create_task(a.send(b"xx"))
    await asyncio.sleep(0)
    await b.close()
    with pytest.raises(ConnectionBroken, match="peer closed"):
        await blocked


async def test_abort_delivers_what_was_sent_then_resets() -> None:
    a, b = memory_stream_pair()
    await a.send(b"sent before abort")
    a.abort()
    assert await b.receive() == b"sent before abort"
    with pytest.raises(ConnectionBroken, match="reset by the peer"):
        await b.receive()
    assert b.is_closing


async def test_send_after_peer_close_raises_broken() -> None:
    a, b = memory_stream_pair()
    await b.close()
    with pytest.raises(ConnectionBroken, match="the peer closed it"):
        await a.send(b"nobody reads this")
    assert await a.receive() == b""


async def test_bad_pair_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="chunks"):
        memory_stream_pair(chunks=(1, 0))
    with pytest.raises(UsageError, match="chunks"):
        memory_stream_pair(chunks=())
    with pytest.raises(UsageError, match="capacity"):
        memory_stream_pair(capacity=0)


async def test_pair_ends_are_memory_connections() -> None:
    a, b = memory_stream_pair(chunks=[2, 4], capacity=100)
    assert isinstance(a, MemoryStreamConnection)
    assert (a.extra("chunks"), a.extra("capacity"), a.extra("socket")) == ((2, 4), 100, None)
    assert (a.local_address, a.remote_address) == ("memory-a", "memory-b")
    assert (b.local_address, b.remote_address) == ("memory-b", "memory-a")


async def test_connect_to_an_unknown_name_fails() -> None:
    endpoint, _ = parse_endpoint("mem://nobody")
    with pytest.raises(ConnectFailed, match=r"mem://nobody: nothing listens on that name"):
        await _transport().connect(endpoint)


async def test_listen_on_a_taken_name_fails_until_it_is_closed() -> None:
    endpoint, _ = parse_endpoint("mem://taken")
    listener = await _transport().listen(endpoint)
    with pytest.raises(ListenFailed, match=r"mem://taken: the name is taken"):
        await _transport().listen(endpoint)
    await listener.close()
    again = await _transport().listen(endpoint)
    assert again.url == "mem://taken"
    await again.close()


async def test_names_are_separate_per_event_loop() -> None:
    transport = _transport()
    endpoint, _ = parse_endpoint("mem://shared-name")
    listener = await transport.listen(endpoint)

    async def on_another_loop() -> str:
        try:
            await transport.connect(endpoint)
        except ConnectFailed:
            pass
        else:
            raise AssertionError("connected to a listener of another event loop")
        other = await transport.listen(endpoint)  # the name is free on this loop
        await other.close()
        return "ok"

    assert await asyncio.to_thread(asyncio.run, on_another_loop()) == "ok"
    await listener.close()


async def test_full_backlog_refuses_and_close_aborts_the_unaccepted() -> None:
    transport = _transport()
    endpoint, _ = parse_endpoint("mem://small?backlog=2")
    listener = await transport.listen(endpoint)
    waiting = [await transport.connect(endpoint) for _ in range(2)]
    with pytest.raises(ConnectFailed, match="2 connections already wait for accept"):
        await transport.connect(endpoint)
    accepted = await listener.accept()
    third = await transport.connect(endpoint)  # room again
    await listener.close()
    with pytest.raises(ClosedResourceError):
        await listener.accept()
    for client in (waiting[1], third):
        with pytest.raises(ConnectionBroken):
            await client.receive()
    await waiting[0].send(b"still open")
    assert await accepted.receive() == b"still open"


async def test_listener_iterates_until_closed() -> None:
    transport = _transport()
    endpoint, _ = parse_endpoint("mem://iter")
    listener = await transport.listen(endpoint)
    clients = [await transport.connect(endpoint) for _ in range(3)]
    seen = []
    async for connection in listener:
        seen.append(connection.remote_address)
        if len(seen) == 3:
            await listener.close()
    assert seen == [c.local_address for c in clients] == ["iter#1", "iter#2", "iter#3"]


async def test_second_accept_is_usage_error() -> None:
    endpoint, _ = parse_endpoint("mem://twice")
    listener = await _transport().listen(endpoint)
    first = asyncio.create_task(listener.accept())
    await asyncio.sleep(0)
    with pytest.raises(UsageError, match="already accepting"):
        await listener.accept()
    await listener.close()
    with pytest.raises(ClosedResourceError):
        await first


async def test_events_reach_the_observers() -> None:
    client_events, server_events = RecordingObserver(), RecordingObserver()
    transport = _transport()
    endpoint, _ = parse_endpoint("mem://watched")
    listener = await transport.listen(endpoint, observer=server_events)
    client = await transport.connect(endpoint, observer=client_events)
    server = await listener.accept()
    await client.send(b"12345")
    assert await server.receive() == b"12345"
    await client.close()
    await server.close()
    await listener.close()
    assert [type(e) for e in client_events] == [ConnectionOpened, BytesSent, ConnectionClosed]
    assert [type(e) for e in server_events] == [
        ConnectionOpened,
        BytesReceived,
        ConnectionClosed,
    ]
    opened = client_events.of_type(ConnectionOpened)[0]
    assert (opened.transport, opened.local, opened.remote, opened.role) == (
        "mem",
        "watched#1",
        "watched",
        "client",
    )
    assert client_events.of_type(BytesSent)[0].count == 5
    assert client_events.of_type(ConnectionClosed)[0].reason == "local-close"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mem://x?chunks=0", "bad value for option 'chunks'"),
        ("mem://x?chunks=1,,2", "comma list of sizes"),
        ("mem://x?capacity=0", "capacity must be at least 1 byte"),
        ("mem://x?backlog=0", "whole number of at least 1"),
        ("mem://x?color=red", "unknown option 'color' (this scheme accepts: backlog, capacity"),
    ],
)
def test_bad_options_are_named(url: str, message: str) -> None:
    with pytest.raises(InvalidEndpoint, match=message.replace("(", r"\(")):
        parse_endpoint(url)


async def test_names_with_url_characters_round_trip() -> None:
    endpoint, _ = parse_endpoint("mem://a%20name%3Fwith%23marks")
    assert endpoint.path == "a name?with#marks"
    listener = await _transport().listen(endpoint)
    assert listener.url == "mem://a%20name%3Fwith%23marks"
    target, _ = parse_endpoint(listener.url)
    client = await _transport().connect(target)
    server = await listener.accept()
    await client.close()
    await server.close()
    await listener.close()
