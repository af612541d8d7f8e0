"""``netweave.serve`` / ``netweave.connect`` over every built-in transport."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import netweave
from netweave import (
    Channel,
    ClosedResourceError,
    ConnectionBroken,
    EndOfStream,
    InvalidEndpoint,
    InvalidStackSpec,
    ListenFailed,
)


async def echo(channel: Channel[Any]) -> None:
    async for message in channel:
        await channel.send(message)


async def _until(condition: Any, what: str) -> None:
    """Let the loop run until ``condition()`` holds (bounded in rounds and loop time)."""
    async with asyncio.timeout(5):
        for _ in range(100_000):
            if condition():
                return
            await asyncio.sleep(0)
    raise AssertionError(f"gave up waiting until {what}")


@pytest.fixture(params=["tcp", "tcp6", "unix", "mem", "udp"])
def url(request: pytest.FixtureRequest, sock_dir: Path) -> str:
    return {
        "tcp": "tcp://127.0.0.1:0",
        "tcp6": "tcp://[::1]:0",
        "unix": f"unix://{sock_dir}/server.sock",
        "mem": "mem://server",
        "udp": "udp://127.0.0.1:0",
    }[request.param]


def _stack(url: str) -> str:
    return "json" if url.startswith("udp") else "lp4,json"


async def test_echo_over_every_transport(url: str) -> None:
    stack = _stack(url)
    async with netweave.serve(url, stack, echo) as server:
        if url.startswith("tcp://[::1]"):
            assert server.url.startswith("tcp://[::1]:")
        async with await netweave.connect(server.url, stack) as channel:
            for i in range(5):
                await channel.send({"n": i, "text": "héllo"})
            assert [await channel.receive() for _ in range(5)] == [
                {"n": i, "text": "héllo"} for i in range(5)
            ]
            await _until(lambda: server.connections == 1, "the server counts one channel")


async def test_await_serve_returns_a_started_server() -> None:
    server = await netweave.serve("tcp://127.0.0.1:0", "lp4,raw", echo)
    try:
        assert server.url != "tcp://127.0.0.1:0"
        channel = await netweave.connect(server.url, "lp4,raw")
        await channel.send(b"x")
        assert await channel.receive() == b"x"
        await channel.close()
    finally:
        await server.close()
    await asyncio.wait_for(server.serve_forever(), timeout=5)  # returns once closed


async def test_udp_peers_each_get_their_own_channel() -> None:
    async def count(channel: Channel[Any]) -> None:
        seen = 0
        async for message in channel:
            seen += 1
            await channel.send(f"{message} #{seen}")

    async with netweave.serve("udp://127.0.0.1:0", "text", count) as server:
        a = await netweave.connect(server.url, "text")
        b = await netweave.connect(server.url, "text")
        for text in ("a1", "a2", "a3"):
            await a.send(text)
            assert await a.receive() == f"{text} #{text[1]}"
        await b.send("b1")
        assert await b.receive() == "b1 #1"
        assert server.connections == 2
        await a.close()
        await b.close()


async def test_udp_max_peers_refuses_new_ones_until_a_peer_leaves() -> None:
    ended = asyncio.Event()

    async def serve_one(channel: Channel[Any]) -> None:
        async for message in channel:
            await channel.send(message)
        ended.set()

    async with netweave.serve(
        "udp://127.0.0.1:0", "raw", serve_one, max_peers=1, peer_idle_timeout=0.2
    ) as server:
        a = await netweave.connect(server.url, "raw")
        b = await netweave.connect(server.url, "raw")
        await a.send(b"first")
        assert await a.receive() == b"first"
        await b.send(b"refused")
        await _until(lambda: server.refused_peers == 1, "the second peer is refused")
        assert server.connections == 1
        await asyncio.wait_for(ended.wait(), timeout=5)  # a's channel went idle
        await _until(lambda: server.connections == 0, "the idle peer's channel is gone")
        await b.send(b"served now")
        assert await b.receive() == b"served now"
        await a.close()
        await b.close()


async def test_udp_idle_timeout_ends_the_peers_channel_and_a_new_one_starts() -> None:
    channels: list[str] = []
    ended = asyncio.Event()

    async def handler(channel: Channel[Any]) -> None:
        channels.append(channel.remote_address)
        async for message in channel:
            await channel.send(message)
        ended.set()

    async with netweave.serve("udp://127.0.0.1:0", "raw", handler, peer_idle_timeout=0.1) as server:
        client = await netweave.connect(server.url, "raw")
        await client.send(b"one")
        assert await client.receive() == b"one"
        await asyncio.wait_for(ended.wait(), timeout=5)
        await client.send(b"two")  # same address, a fresh channel
        assert await client.receive() == b"two"
        assert len(channels) == 2
        assert channels[0] == channels[1]
        await client.close()


async def test_close_cancels_handlers_and_closes_their_connections(url: str) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(channel: Channel[Any]) -> None:
        await channel.receive()
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stack = _stack(url)
    server = await netweave.serve(url, stack, stuck)
    channel = await netweave.connect(server.url, stack)
    await channel.send("hi")
    await asyncio.wait_for(started.wait(), timeout=5)
    await asyncio.wait_for(server.close(), timeout=5)
    assert cancelled.is_set()
    assert server.connections == 0
    if not url.startswith("udp"):
        with pytest.raises((EndOfStream, ConnectionBroken)):
            await asyncio.wait_for(channel.receive(), timeout=5)
        with pytest.raises(netweave.ConnectFailed):
            await netweave.connect(server.url, stack)
    await channel.close()
    await server.close()  # idempotent


async def test_close_with_grace_lets_handlers_finish() -> None:
    finished = asyncio.Event()
    release = asyncio.Event()

    async def slow(channel: Channel[Any]) -> None:
        message = await channel.receive()
        await release.wait()
        await channel.send(message)
        finished.set()

    server = await netweave.serve("mem://grace", "lp4,raw", slow)
    channel = await netweave.connect("mem://grace", "lp4,raw")
    await channel.send(b"late reply")
    closing = asyncio.create_task(server.close(grace=5))
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(closing, timeout=5)
    assert finished.is_set()
    assert await channel.receive() == b"late reply"
    await channel.close()


async def test_a_failing_handler_does_not_stop_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def picky(channel: Channel[Any]) -> None:
        async for message in channel:
            if message == b"boom":
                raise RuntimeError("handler bug")
            await channel.send(message)

    with caplog.at_level(logging.ERROR, logger="netweave.server"):
        async with netweave.serve("tcp://127.0.0.1:0", "lp4,raw", picky) as server:
            bad = await netweave.connect(server.url, "lp4,raw")
            await bad.send(b"boom")
            with pytest.raises(EndOfStream):
                await asyncio.wait_for(bad.receive(), timeout=5)
            good = await netweave.connect(server.url, "lp4,raw")
            await good.send(b"fine")
            assert await good.receive() == b"fine"
            assert server.handler_errors == 1
            await bad.close()
            await good.close()
    assert any("handler failed" in record.message for record in caplog.records)
    assert any("handler bug" in (record.exc_text or "") for record in caplog.records)


async def test_a_sync_handler_is_reported() -> None:
    def not_async(channel: Channel[Any]) -> None:
        return None

    async with netweave.serve("mem://sync", "lp4,raw", not_async) as server:  # type: ignore[arg-type]
        channel = await netweave.connect("mem://sync", "lp4,raw")
        with pytest.raises(EndOfStream):
            await asyncio.wait_for(channel.receive(), timeout=5)
        assert server.handler_errors == 1
        await channel.close()


async def test_a_handler_may_close_the_server() -> None:
    done = asyncio.Event()

    async def shut_down(channel: Channel[Any]) -> None:
        await channel.receive()
        await server.close()
        done.set()

    server = await netweave.serve("mem://self-close", "lp4,raw", shut_down)
    channel = await netweave.connect("mem://self-close", "lp4,raw")
    await channel.send(b"please stop")
    await asyncio.wait_for(done.wait(), timeout=5)
    await asyncio.wait_for(server.serve_forever(), timeout=5)
    with pytest.raises((EndOfStream, ConnectionBroken, ClosedResourceError)):
        await asyncio.wait_for(channel.receive(), timeout=5)
    await channel.close()


async def test_bad_input_fails_before_anything_listens() -> None:
    with pytest.raises(InvalidEndpoint, match="unknown scheme 'tpc'"):
        netweave.serve("tpc://127.0.0.1:0", "lp4,raw", echo)
    with pytest.raises(InvalidStackSpec, match="must not start with the framing layer 'lp4'"):
        netweave.serve("udp://127.0.0.1:0", "lp4,raw", echo)
    with pytest.raises(InvalidStackSpec, match="needs a framing layer first"):
        netweave.serve("tcp://127.0.0.1:0", "raw", echo)
    with pytest.raises(netweave.UsageError, match="max_peers"):
        netweave.serve("udp://127.0.0.1:0", "raw", echo, max_peers=0)


async def test_port_in_use() -> None:
    async with netweave.serve("tcp://127.0.0.1:0", "lp4,raw", echo) as server:
        with pytest.raises(ListenFailed, match="pick another port or stop it"):
            await netweave.serve(server.url, "lp4,raw", echo)


async def test_close_aborts_open_connections_in_the_order_they_were_accepted() -> None:
    """Shutdown walks connections in accept order (not a set's order), so a
    simulated run closes them identically in every process."""
    recorder = netweave.observe.RecordingObserver()
    held = asyncio.Event()

    async def hold(channel: netweave.Channel[bytes]) -> None:
        await channel.send(await channel.receive())
        await held.wait()

    server = await netweave.serve("mem://close-order", "lp4,raw", hold, observer=recorder)
    clients = []
    for n in range(30):
        channel = await netweave.connect("mem://close-order", "lp4,raw")
        await channel.send(b"%d" % n)
        assert await channel.receive() == b"%d" % n
        clients.append(channel)
    opened = [
        event.source
        for event in recorder.of_type(netweave.observe.ConnectionOpened)
        if event.role == "server"
    ]
    recorder.clear()
    await server.close()
    closed = [
        event.source
        for event in recorder.of_type(netweave.observe.ConnectionClosed)
        if event.source in opened
    ]
    assert closed == opened
    for channel in clients:
        channel.abort()
