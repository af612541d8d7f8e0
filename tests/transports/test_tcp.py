"""``tcp://``: the stream suite on IPv4, IPv6 and uvloop, and TCP's own options and errors."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from transport_pairs import free_port, has_ipv6_loopback, open_stream_pair

from netweave.endpoints import parse_endpoint
from netweave.errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
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
from netweave.testing import StreamConformance
from netweave.transports import Listener, StreamConnection, StreamTransport

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")


class TestTcpIPv4(StreamConformance):
    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await open_stream_pair("tcp://127.0.0.1:0")


@needs_ipv6
class TestTcpIPv6(StreamConformance):
    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await open_stream_pair("tcp://[::1]:0")


class TestTcpUvloop(StreamConformance):
    event_loops = ("uvloop",)

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await open_stream_pair("tcp://127.0.0.1:0")

    async def test_runs_on_uvloop(self) -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")


class TestTcpSmallBuffers(StreamConformance):
    """Tiny high-water marks: coalescing and read pausing under constant pressure."""

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        options = "?write_high_water=4k&read_high_water=4k"
        return await open_stream_pair(f"tcp://127.0.0.1:0{options}", None)


def _tcp() -> StreamTransport:
    _, transport = parse_endpoint("tcp://127.0.0.1:1")
    assert isinstance(transport, StreamTransport)
    return transport


async def _listen(url: str, observer: RecordingObserver | None = None) -> Listener:
    endpoint, _ = parse_endpoint(url)
    return await _tcp().listen(endpoint, observer=observer)


async def _connect(url: str, observer: RecordingObserver | None = None) -> StreamConnection:
    endpoint, _ = parse_endpoint(url)
    return await _tcp().connect(endpoint, observer=observer)


def _opt(connection: StreamConnection, level: int, name: int) -> int:
    sock = connection.extra("socket")
    assert sock is not None
    value: int = sock.getsockopt(level, name)
    return value


class TestSocketOptions:
    event_loops = ("asyncio", "uvloop")  # each test runs on both (see conftest.py)

    async def test_nodelay_is_on_by_default_on_both_ends(self) -> None:
        client, server = await open_stream_pair("tcp://127.0.0.1:0")
        for end in (client, server):
            assert _opt(end, socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert _opt(end, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        client.abort()
        server.abort()

    async def test_nodelay_0_turns_it_off(self) -> None:
        url = "tcp://127.0.0.1:0?nodelay=0"
        listener = await _listen(url)
        client = await _connect(listener.url + "?nodelay=0")
        server = await listener.accept()
        await listener.close()
        for end in (client, server):
            assert _opt(end, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        client.abort()
        server.abort()


@pytest.mark.skipif(not hasattr(socket, "TCP_KEEPIDLE"), reason="no TCP_KEEPIDLE on this OS")
async def test_keepalive_idle_interval_count_are_applied() -> None:
    options = "keepalive=1&keepalive_idle=7&keepalive_interval=3&keepalive_count=4"
    # the listener's options apply to the ends it accepts, the URL's to the client
    client, server = await open_stream_pair(f"tcp://127.0.0.1:0?{options}")
    listener = await _listen("tcp://127.0.0.1:0")
    other = await _connect(f"{listener.url}?{options}")
    for end in (server, other):
        assert _opt(end, socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert _opt(end, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        assert _opt(end, socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
        assert _opt(end, socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    assert _opt(client, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0  # its URL had none
    for end in (client, server, other):
        end.abort()
    await listener.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_KEEPIDLE"), reason="no TCP_KEEPIDLE on this OS")
async def test_a_keepalive_knob_turns_keepalive_on() -> None:
    listener = await _listen("tcp://127.0.0.1:0")
    client = await _connect(f"{listener.url}?keepalive_idle=30")
    assert _opt(client, socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
    assert _opt(client, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    client.abort()
    await listener.close()


async def test_connect_timeout() -> None:
    # A listening socket that never accepts, with its queue full: the kernel
    # ignores further SYNs, so the next connection attempt hangs.
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        port = stuck.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ConnectFailed, match=r"timed out after 0\.2 s") as caught:
                await _connect(f"tcp://127.0.0.1:{port}?connect_timeout=0.2")
            assert loop.time() - start < 5
            assert "connect_timeout" in str(caught.value)
        finally:
            for filler in fillers:
                filler.close()


async def test_connection_refused() -> None:
    port = free_port()
    with pytest.raises(ConnectFailed, match=rf"cannot connect to tcp://127.0.0.1:{port}") as e:
        await _connect(f"tcp://127.0.0.1:{port}")
    assert "refused" in str(e.value).lower()
    assert isinstance(e.value.__cause__, ConnectionRefusedError)


async def test_connect_to_port_0_is_refused_before_any_io() -> None:
    with pytest.raises(ConnectFailed, match="port 0 is not a destination"):
        await _connect("tcp://127.0.0.1:0")


@pytest.mark.parametrize("reuse", ["1", "0"])
async def test_port_in_use_names_the_fix(reuse: str) -> None:
    listener = await _listen("tcp://127.0.0.1:0")
    with pytest.raises(ListenFailed, match="pick another port or stop it") as caught:
        await _listen(f"{listener.url}?reuse_address={reuse}")
    assert listener.url.removeprefix("tcp://") in str(caught.value)
    await listener.close()


@pytest.mark.parametrize(("option", "expected"), [("", True), ("?reuse_address=0", False)])
async def test_reuse_address(option: str, expected: bool) -> None:
    listener = await _listen(f"tcp://127.0.0.1:0{option}")
    sockets = listener.extra("sockets")
    assert sockets
    assert bool(sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)) is expected
    await listener.close()


async def test_backlog_bounds_the_accept_queue() -> None:
    listener = await _listen("tcp://127.0.0.1:0?backlog=1")
    first = await _connect(listener.url)
    extra = [await _connect(listener.url) for _ in range(2)]
    for client in extra:  # aborted by the listener: a reset, not a silent queue
        with pytest.raises(ConnectionBroken):
            await client.receive()
    assert listener.refused == 2
    accepted = await listener.accept()
    await first.send(b"queued one")
    assert await accepted.receive() == b"queued one"
    for conn in (first, accepted):
        await conn.close()
    await listener.close()


async def test_listener_close_keeps_accepted_connections_and_frees_the_port() -> None:
    listener = await _listen("tcp://127.0.0.1:0")
    url = listener.url
    client = await _connect(url)
    server = await listener.accept()
    pending = await _connect(url)
    await asyncio.wait_for(listener.close(), timeout=5)
    await listener.close()  # idempotent
    with pytest.raises(ClosedResourceError):
        await listener.accept()
    await client.send(b"still here")
    assert await server.receive() == b"still here"
    with pytest.raises(ConnectionBroken):
        await pending.receive()
    again = await _listen(url)  # the port is free again
    await again.close()
    for conn in (client, server):
        await conn.close()


async def test_second_accept_is_usage_error() -> None:
    listener = await _listen("tcp://127.0.0.1:0")
    first = asyncio.create_task(listener.accept())
    await asyncio.sleep(0)
    with pytest.raises(UsageError, match="already accepting"):
        await listener.accept()
    await listener.close()
    with pytest.raises(ClosedResourceError):
        await first


@needs_ipv6
async def test_ipv6_listener_url_has_brackets_and_the_real_port() -> None:
    listener = await _listen("tcp://[::1]:0")
    assert listener.url.startswith("tcp://[::1]:")
    assert int(listener.url.rsplit(":", 1)[1]) > 0
    client = await _connect(listener.url)
    server = await listener.accept()
    assert client.remote_address == listener.url.removeprefix("tcp://")
    for conn in (client, server):
        await conn.close()
    await listener.close()


async def test_events_are_emitted_only_to_an_observer() -> None:
    client_events, server_events = RecordingObserver(), RecordingObserver()
    listener = await _listen("tcp://127.0.0.1:0", server_events)
    client = await _connect(listener.url, client_events)
    server = await listener.accept()
    await client.send(b"hello")
    assert await server.receive() == b"hello"
    await client.close()
    assert await server.receive() == b""
    await server.close()
    await listener.close()
    assert [type(e) for e in client_events] == [ConnectionOpened, BytesSent, ConnectionClosed]
    assert [type(e) for e in server_events] == [
        ConnectionOpened,
        BytesReceived,
        ConnectionClosed,
    ]
    opened = server_events.of_type(ConnectionOpened)[0]
    assert (opened.transport, opened.role) == ("tcp", "server")
    assert opened.local == client.remote_address
    assert server_events.of_type(ConnectionClosed)[0].reason == "local-close"


async def test_abort_is_reported_as_local_abort_and_peer_reset() -> None:
    client_events, server_events = RecordingObserver(), RecordingObserver()
    listener = await _listen("tcp://127.0.0.1:0", server_events)
    client = await _connect(listener.url, client_events)
    server = await listener.accept()
    client.abort()
    with pytest.raises(ConnectionBroken, match="reset"):
        await server.receive()
    await server.close()
    await client.close()
    await listener.close()
    assert client_events.of_type(ConnectionClosed)[0].reason == "local-abort"
    assert server_events.of_type(ConnectionClosed)[0].reason == "peer-reset"
