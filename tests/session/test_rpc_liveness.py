"""Heartbeats, idle timeouts and the slowloris defence, on a virtual-time loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import netweave
from netweave.errors import ConnectionBroken, PeerUnresponsive, UsageError
from netweave.observe import RecordingObserver
from netweave.session import (
    Keepalive,
    KeepaliveAction,
    PeerSilent,
    RpcClient,
    RpcServer,
)
from netweave.session._rpc_wire import Hello, encode_frame
from netweave.stack import Channel, Stack, StreamChannel

from .rpc_helpers import served


class MutableChannel(Channel[Any]):
    """Wraps a channel; after ``mute()`` the link silently drops everything both ways."""

    def __init__(self, inner: Channel[Any]) -> None:
        self.inner = inner
        self.muted = False

    def mute(self) -> None:
        self.muted = True

    async def send(self, message: Any) -> None:
        if not self.muted:
            await self.inner.send(message)

    async def receive(self) -> Any:
        while True:
            message = await self.inner.receive()
            if not self.muted:
                return message

    async def close(self) -> None:
        await self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    @property
    def stack(self) -> Stack:
        return self.inner.stack

    @property
    def remote_address(self) -> str:
        return self.inner.remote_address


def test_keepalive_core_with_explicit_time() -> None:
    keepalive = Keepalive(0.0, interval=1.0, timeout=3.0, handshake_timeout=2.0)
    assert keepalive.in_handshake
    assert keepalive.get_timer() == 2.0  # only the handshake limit while in handshake
    keepalive.handshake_done(0.5)
    assert keepalive.get_timer() == 1.5  # ping due one interval after the last frame
    assert keepalive.handle_timer(1.5) is KeepaliveAction.PING
    assert keepalive.get_timer() == 2.5
    keepalive.heard(2.0)
    assert keepalive.handle_timer(2.5) is KeepaliveAction.NOTHING
    assert keepalive.handle_timer(3.0) is KeepaliveAction.PING
    assert keepalive.handle_timer(4.0) is KeepaliveAction.PING
    assert keepalive.handle_timer(5.0) is KeepaliveAction.CUT  # 3 s since the last frame
    assert keepalive.silence == 3.0
    never = Keepalive(0.0, interval=None, timeout=None, handshake_timeout=1.0)
    assert never.handle_timer(1.0) is KeepaliveAction.CUT
    with pytest.raises(UsageError, match="shorter"):
        Keepalive(0.0, interval=5.0, timeout=5.0)


async def test_idle_connection_stays_alive_on_pings() -> None:
    rpc = RpcServer(ping_interval=1.0, idle_timeout=3.0)

    @rpc.method()
    async def echo(request: bytes) -> bytes:
        return request

    async with served(rpc) as server:
        client = await RpcClient.connect(server.url, ping_interval=1.0, idle_timeout=3.0)
        assert await client.call("echo", b"a") == b"a"
        await asyncio.sleep(60.0)  # a minute of idleness: pings keep it up
        assert await client.call("echo", b"b") == b"b"
        assert client.failure is None
        await client.close()


async def test_dead_server_is_detected_within_the_idle_timeout() -> None:
    loop = asyncio.get_running_loop()
    rpc = RpcServer()

    @rpc.method()
    async def hang(request: bytes) -> bytes:
        await asyncio.sleep(1000)
        return b""

    async with served(rpc) as server:
        channel = MutableChannel(await netweave.connect(server.url, "lp4,raw"))
        observer = RecordingObserver()
        client = RpcClient(channel, ping_interval=0.5, idle_timeout=2.0, observer=observer)
        call = asyncio.create_task(client.call("hang"))
        await asyncio.sleep(0.3)
        channel.mute()  # the link now drops everything, silently
        muted_at = loop.time()
        with pytest.raises(PeerUnresponsive):
            await call
        # Detected within the bound: 2 s after the last frame heard (at or before muting).
        assert loop.time() - muted_at <= 2.0 + 1e-6
        [event] = observer.of_type(PeerSilent)
        assert (event.stage, event.limit) == ("idle", 2.0)
        with pytest.raises(PeerUnresponsive):
            await client.call("hang")
        await client.close()


async def test_silent_client_is_cut_by_the_server() -> None:
    loop = asyncio.get_running_loop()
    observer = RecordingObserver()
    rpc = RpcServer(ping_interval=1.0, idle_timeout=4.0, observer=observer)
    async with served(rpc) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        await channel.send(encode_frame(Hello(1, 0, 0)))
        start = loop.time()

        async def listen_without_answering() -> None:
            for _ in range(100):  # the HELLO and PINGs arrive; we never answer
                await channel.receive()

        with pytest.raises((ConnectionBroken, netweave.EndOfStream)):
            await listen_without_answering()
        assert loop.time() - start == pytest.approx(4.0, abs=0.01)
        [event] = observer.of_type(PeerSilent)
        assert event.stage == "idle"
        channel.abort()


async def test_client_that_never_finishes_its_handshake_is_cut() -> None:
    loop = asyncio.get_running_loop()
    observer = RecordingObserver()
    rpc = RpcServer(handshake_timeout=2.0, observer=observer)
    async with served(rpc) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        start = loop.time()
        with pytest.raises(ConnectionBroken):
            await channel.receive()
        assert loop.time() - start == pytest.approx(2.0)
        [event] = observer.of_type(PeerSilent)
        assert event.stage == "handshake"
        assert rpc.connections == 0


async def test_slowloris_trickling_a_frame_byte_by_byte_is_cut() -> None:
    loop = asyncio.get_running_loop()
    rpc = RpcServer(ping_interval=1.0, idle_timeout=3.0, handshake_timeout=2.0)
    async with served(rpc) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        assert isinstance(channel, StreamChannel)
        raw = channel.connection
        # A complete HELLO, then a 1000-byte frame trickled one byte every 0.5 s:
        # bytes keep arriving, but no frame ever completes.
        hello = encode_frame(Hello(1, 0, 0))
        await raw.send(len(hello).to_bytes(4, "big") + hello)
        trickle = (1000).to_bytes(4, "big") + b"\x02" * 1000
        start = loop.time()
        cut_at = None
        for byte in trickle:
            try:
                await raw.send(bytes((byte,)))
            except (ConnectionBroken, netweave.ClosedResourceError):
                cut_at = loop.time()
                break
            await asyncio.sleep(0.5)
        assert cut_at is not None
        assert cut_at - start <= 3.0 + 0.5 + 1e-6
        raw.abort()
