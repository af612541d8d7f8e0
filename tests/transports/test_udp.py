"""``udp://``: the datagram suite on IPv4, IPv6 and uvloop, and UDP's own options and errors."""

from __future__ import annotations

import asyncio
import socket

import pytest
from transport_pairs import free_port, has_ipv6_loopback, open_datagram_pair

import netweave
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
from netweave.testing import DatagramConformance
from netweave.transports import DatagramEndpoint, DatagramTransport

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")


class TestUdpIPv4(DatagramConformance):
    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        return await open_datagram_pair("udp://127.0.0.1:0")


@needs_ipv6
class TestUdpIPv6(DatagramConformance):
    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        return await open_datagram_pair("udp://[::1]:0")


class TestUdpUvloop(DatagramConformance):
    event_loops = ("uvloop",)

    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        return await open_datagram_pair("udp://127.0.0.1:0")


class TestUdpSmallMaximum(DatagramConformance):
    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        return await open_datagram_pair("udp://127.0.0.1:0?max_size=1200", "?max_size=1200")


def _udp() -> DatagramTransport:
    _, transport = parse_endpoint("udp://127.0.0.1:1")
    assert isinstance(transport, DatagramTransport)
    return transport


async def _bind(url: str, observer: RecordingObserver | None = None) -> DatagramEndpoint:
    endpoint, _ = parse_endpoint(url)
    return await _udp().bind(endpoint, observer=observer)


async def _connect(url: str, observer: RecordingObserver | None = None) -> DatagramEndpoint:
    endpoint, _ = parse_endpoint(url)
    return await _udp().connect(endpoint, observer=observer)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_family_limits() -> None:
    client, server = await open_datagram_pair("udp://127.0.0.1:0")
    assert client.max_datagram_size == server.max_datagram_size == 65507
    await client.close()
    await server.close()


@needs_ipv6
async def test_ipv6_limit_and_url() -> None:
    client, server = await open_datagram_pair("udp://[::1]:0")
    assert client.max_datagram_size == 65527
    assert server.url.startswith("udp://[::1]:")
    assert server.url == f"udp://[::1]:{server.local_address[1]}"
    await client.close()
    await server.close()


async def test_max_size_option_lowers_the_limit() -> None:
    server = await _bind("udp://127.0.0.1:0?max_size=100")
    assert server.max_datagram_size == 100
    with pytest.raises(UsageError, match="101 bytes exceeds the maximum of 100 bytes"):
        await server.send_to(bytes(101), ("127.0.0.1", 9))
    await server.close()


async def test_max_size_over_the_family_limit_is_refused() -> None:
    with pytest.raises(UsageError, match=r"max_size=70000 is more than one datagram can carry"):
        await _bind("udp://127.0.0.1:0?max_size=70000")


async def test_url_has_the_real_port() -> None:
    server = await _bind("udp://127.0.0.1:0")
    port = server.local_address[1]
    assert port > 0
    assert server.url == f"udp://127.0.0.1:{port}"
    await server.close()


async def test_full_queue_drops_new_datagrams_and_counts_them() -> None:
    server = await _bind("udp://127.0.0.1:0?queue=4")
    client = await _connect(server.url)
    for i in range(10):
        await client.send_to(b"%d" % i)
        await _settle()  # let the loop read each one before the next
    assert server.dropped == 6
    received = [(await server.receive_from())[0] for _ in range(4)]
    assert received == [b"0", b"1", b"2", b"3"]
    await client.send_to(b"room again")
    assert (await server.receive_from())[0] == b"room again"
    await client.close()
    await server.close()


async def test_port_unreachable_surfaces_once_on_a_connected_endpoint() -> None:
    client = await _connect(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    await client.send_to(b"anyone?")
    with pytest.raises(ConnectionBroken, match="refused"):
        await asyncio.wait_for(client.receive_from(), timeout=5)
    await client.send_to(b"the endpoint stays usable")  # no exception
    await client.close()


async def test_address_rules_of_send_to() -> None:
    client, server = await open_datagram_pair("udp://127.0.0.1:0")
    with pytest.raises(UsageError, match=r"is connected to 127\.0\.0\.1"):
        await client.send_to(b"x", ("127.0.0.1", 9))
    await client.send_to(b"to the peer by address", server.local_address)
    assert (await server.receive_from())[0] == b"to the peer by address"
    with pytest.raises(UsageError, match="is not connected: give send_to an address"):
        await server.send_to(b"x")
    await client.close()
    await server.close()


async def test_bind_to_a_port_in_use_fails() -> None:
    first = await _bind("udp://127.0.0.1:0")
    with pytest.raises(ListenFailed, match="pick another port or stop it"):
        await _bind(first.url)
    await first.close()


async def test_connect_to_port_0_fails() -> None:
    with pytest.raises(ConnectFailed, match="port 0 is not a destination"):
        await _connect("udp://127.0.0.1:0")


async def test_events_are_emitted_only_to_an_observer() -> None:
    client_events, server_events = RecordingObserver(), RecordingObserver()
    server = await _bind("udp://127.0.0.1:0", server_events)
    client = await _connect(server.url, client_events)
    await client.send_to(b"12345")
    _, sender = await server.receive_from()
    await server.send_to(b"ok", sender)
    assert (await client.receive_from())[0] == b"ok"
    client.abort()
    await client.close()
    await server.close()
    assert [type(e) for e in client_events] == [
        ConnectionOpened,
        BytesSent,
        BytesReceived,
        ConnectionClosed,
    ]
    opened = client_events.of_type(ConnectionOpened)[0]
    assert (opened.transport, opened.role) == ("udp", "client")
    assert opened.remote == server.url.removeprefix("udp://")
    assert client_events.of_type(BytesSent)[0].count == 5
    assert client_events.of_type(ConnectionClosed)[0].reason == "local-abort"
    assert server_events.of_type(ConnectionOpened)[0].role == "server"
    assert server_events.of_type(ConnectionClosed)[0].reason == "local-close"


async def test_several_receivers_each_get_a_datagram() -> None:
    client, server = await open_datagram_pair("udp://127.0.0.1:0")
    receivers = [asyncio.create_task(server.receive_from()) for _ in range(3)]
    await _settle()
    for i in range(3):
        await client.send_to(b"%d" % i)
    got = sorted([(await task)[0] for task in receivers])
    assert got == [b"0", b"1", b"2"]
    waiting = asyncio.create_task(server.receive_from())
    await _settle()
    await server.close()
    with pytest.raises(ClosedResourceError):
        await waiting
    await client.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("udp://127.0.0.1:0?queue=0", "bad value for option 'queue'"),
        ("udp://127.0.0.1:0?max_size=0", "max_size must be at least 1 byte"),
        ("udp://127.0.0.1:0?nodelay=1", "unknown option 'nodelay' (this scheme accepts: max_size"),
        ("udp://127.0.0.1", "missing port"),
    ],
)
def test_bad_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(InvalidEndpoint, match=message.replace("(", r"\(")):
        parse_endpoint(url)


async def test_a_raw_datagram_channel_refuses_a_str_clearly() -> None:
    async def echo(channel: netweave.Channel[bytes]) -> None:
        async for message in channel:
            await channel.send(message)

    async with netweave.serve("udp://127.0.0.1:0", "raw", echo) as server:
        channel = await netweave.connect(server.url, "raw")
        async with channel:
            with pytest.raises(netweave.UsageError, match="cannot send a str"):
                await channel.send("text")  # type: ignore[arg-type]
            await channel.send(b"bytes")
            assert await channel.receive() == b"bytes"
