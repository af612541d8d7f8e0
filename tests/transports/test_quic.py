"""``quic://`` over real loopback UDP: the stream and datagram suites, several streams on
one connection, ``netweave.connect``/``serve``, certificates, options and errors."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from collections.abc import AsyncIterator

import pytest
from test_quic_support import HOST, Pem, UsesPem, connect, listen, quic_pair, quic_pem
from transport_pairs import free_port, has_ipv6_loopback

import netweave
from netweave.endpoints import parse_endpoint
from netweave.errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    InvalidEndpoint,
    MissingDependency,
    TlsError,
    UsageError,
)
from netweave.observe import (
    BytesReceived,
    BytesSent,
    ConnectionClosed,
    ConnectionOpened,
    RecordingObserver,
)
from netweave.testing import DatagramConformance, StreamConformance
from netweave.testing._streams import receive_exactly
from netweave.transports import (
    DatagramEndpoint,
    QuicConnection,
    QuicDatagrams,
    QuicStream,
    QuicTransport,
    StreamConnection,
)

__all__ = ["quic_pem"]  # the fixture, imported so pytest finds it

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def connection_of(stream: StreamConnection) -> QuicConnection:
    connection = stream.extra("quic_connection")
    assert isinstance(connection, QuicConnection)
    return connection


# ---------------------------------------------------------------------------
# The stream conformance suite
# ---------------------------------------------------------------------------


class TestQuicStreams(UsesPem, StreamConformance):
    """The first stream of a connection, as ``connect`` and ``accept`` give it."""

    bulk_size = 1024 * 1024
    # Buffered at most: the peer's 1 MiB stream window plus our 256 KiB of unsent data.
    backpressure_limit = 2 * 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await quic_pair(self.pem)


#: Options for the variants below: 128 KiB windows keep their backpressure tests short.
SMALL = "&read_high_water=128k"


@needs_ipv6
class TestQuicStreamsIPv6(UsesPem, StreamConformance):
    bulk_size = 256 * 1024
    backpressure_limit = 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await quic_pair(
            self.pem, address="[::1]:0", listen_options=SMALL, connect_options=SMALL
        )


class TestQuicStreamsSmallWindows(UsesPem, StreamConformance):
    """A 16 KiB stream window and a 4 KiB high-water mark: credit flows all the time."""

    bulk_size = 256 * 1024
    backpressure_limit = 256 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        options = "&read_high_water=16k&write_high_water=4k"
        return await quic_pair(self.pem, listen_options=options, connect_options=options)


class TestQuicStreamsUvloop(UsesPem, StreamConformance):
    event_loops = ("uvloop",)  # see conftest.py
    bulk_size = 256 * 1024
    backpressure_limit = 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await quic_pair(self.pem, listen_options=SMALL, connect_options=SMALL)


class TestQuicServerOpenedStreams(UsesPem, StreamConformance):
    """A stream the *server* opens on a connection, accepted by the client."""

    bulk_size = 256 * 1024
    backpressure_limit = 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        first_client, first_server = await quic_pair(
            self.pem, listen_options=SMALL, connect_options=SMALL
        )
        opened = await connection_of(first_server).open_stream()
        accepted = await connection_of(first_client).accept_stream()
        # The first stream's ends are done; the connection lives on for the new stream.
        await first_server.close()
        await first_client.close()
        return accepted, opened


# ---------------------------------------------------------------------------
# Datagrams (RFC 9221)
# ---------------------------------------------------------------------------


class TestQuicDatagrams(UsesPem, DatagramConformance):
    """Both ends of a QUIC connection are connected, so ``test_addresses`` says so."""

    streams: list[StreamConnection]

    @pytest.fixture(autouse=True)
    async def _close_streams(self) -> AsyncIterator[None]:
        """The suite closes the datagram endpoints; the streams (and so the connection)
        are closed here."""
        self.streams = []
        yield
        for stream in self.streams:
            await stream.close()

    async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
        client, server = await quic_pair(self.pem)
        self.streams += [client, server]
        return connection_of(client).datagrams, connection_of(server).datagrams

    async def test_addresses(self) -> None:
        async with self.connected() as (client, server):
            assert client.remote == server.local_address
            assert server.remote == client.local_address
            for end in (client, server):
                assert end.url.startswith("quic://")
                assert 1100 <= end.max_datagram_size < 1200
                assert end.dropped == 0
            await client.send_to(b"x", client.remote)
            with pytest.raises(UsageError, match="is connected to"):
                await client.send_to(b"x", ("127.0.0.2", 9))
            assert (await server.receive_from())[0] == b"x"


async def test_datagrams_off_on_either_side_is_a_usage_error(quic_pem: Pem) -> None:
    client, server = await quic_pair(quic_pem, connect_options="&max_datagram_frame_size=0")
    async with client, server:
        for end in (client, server):
            datagrams = connection_of(end).datagrams
            assert datagrams.max_datagram_size == 0
            with pytest.raises(UsageError, match="does not accept QUIC datagrams"):
                await datagrams.send_to(b"x")


async def test_closing_the_datagrams_keeps_the_streams(quic_pem: Pem) -> None:
    client, server = await quic_pair(quic_pem)
    async with client, server:
        datagrams = connection_of(client).datagrams
        await datagrams.close()
        with pytest.raises(ClosedResourceError):
            await datagrams.send_to(b"x")
        await client.send(b"still here")
        assert await receive_exactly(server, 10) == b"still here"
        await connection_of(server).datagrams.send_to(b"dropped on arrival")
        await server.send(b"!")
        assert await client.receive() == b"!"


async def test_datagrams_end_with_the_connection(quic_pem: Pem) -> None:
    client, server = await quic_pair(quic_pem)
    datagrams = connection_of(server).datagrams
    waiting = asyncio.create_task(datagrams.receive_from())
    await asyncio.sleep(0)
    client.abort()
    with pytest.raises(ConnectionBroken, match="aborted"):
        await asyncio.wait_for(waiting, 10)
    with pytest.raises(ConnectionBroken):
        await datagrams.send_to(b"x")
    await server.close()
    await client.close()


# ---------------------------------------------------------------------------
# Several streams on one connection
# ---------------------------------------------------------------------------


async def test_many_streams_move_data_both_ways_at_once(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    first = await connect(quic_pem.client(listener.url))
    connection = connection_of(first)
    streams = [first, *[await connection.open_stream() for _ in range(7)]]
    accepted = [await listener.accept() for _ in streams]
    await listener.close()
    by_id = {stream.extra("stream_id"): stream for stream in accepted}
    assert sorted(by_id) == [0, 4, 8, 12, 16, 20, 24, 28]
    rng = random.Random(5)
    payloads = {stream.stream_id: rng.randbytes(rng.randint(1, 200_000)) for stream in streams}

    async def exchange(mine: QuicStream) -> None:
        theirs = by_id[mine.stream_id]
        data = payloads[mine.stream_id]
        async with asyncio.TaskGroup() as group:
            group.create_task(mine.send(data))
            group.create_task(theirs.send(data[::-1]))
            up = group.create_task(receive_exactly(theirs, len(data)))
            down = group.create_task(receive_exactly(mine, len(data)))
        assert up.result() == data
        assert down.result() == data[::-1]

    async with asyncio.timeout(30):
        await asyncio.gather(*(exchange(stream) for stream in streams))
        for stream in accepted:
            await stream.close()
        for stream in streams:
            assert await stream.receive() == b""
            await stream.close()
    assert connection.is_closing  # its last stream closed, so did the connection


async def test_resetting_one_stream_leaves_the_others_alone(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    client = await connect(quic_pem.client(listener.url))
    other = await connection_of(client).open_stream()
    server, other_server = [await listener.accept() for _ in range(2)]
    await listener.close()
    await other.send(b"hello")
    assert await receive_exactly(other_server, 5) == b"hello"
    other.abort()
    with pytest.raises(ConnectionBroken, match="reset the stream"):
        await other_server.receive()
    with pytest.raises(ConnectionBroken, match="stopped reading"):
        await other_server.send(b"too late")
    await client.send(b"first lives")
    assert await receive_exactly(server, 11) == b"first lives"
    await server.send(b"yes")
    assert await receive_exactly(client, 3) == b"yes"
    for end in (other_server, server, client):
        await end.close()


async def test_one_large_send_waits_for_the_reader(quic_pem: Pem) -> None:
    """A single 1.5 MiB send to a peer that does not read blocks (it is handed to QUIC a
    step at a time) and completes once the peer reads."""
    client, server = await quic_pair(quic_pem, listen_options="&read_high_water=64k")
    async with client, server:
        data = random.Random(9).randbytes(1536 * 1024)
        sending = asyncio.create_task(client.send(data))
        done, _ = await asyncio.wait({sending}, timeout=0.2)
        assert not done, "the send finished although the peer read nothing"
        assert await receive_exactly(server, len(data)) == data
        await sending


async def test_a_stream_is_announced_before_any_data(quic_pem: Pem) -> None:
    """The server can speak first on a stream the client opened but never wrote to."""
    listener = await listen(quic_pem.server())
    client = await connect(quic_pem.client(listener.url))
    second = await connection_of(client).open_stream()
    servers = [await asyncio.wait_for(listener.accept(), 10) for _ in range(2)]
    await listener.close()
    for index, end in enumerate(servers):
        await end.send(b"greeting %d" % index)
    assert await receive_exactly(client, 10) == b"greeting 0"
    assert await receive_exactly(second, 10) == b"greeting 1"
    for end in (*servers, second, client):
        await end.close()


async def test_a_full_backlog_refuses_further_streams(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server(options="&backlog=1"))
    client = await connect(quic_pem.client(listener.url))
    extra = [await connection_of(client).open_stream() for _ in range(2)]
    for stream in extra:
        with pytest.raises(ConnectionBroken, match="reset the stream"):
            await asyncio.wait_for(stream.receive(), 10)
    assert listener.refused_streams == 2
    server = await listener.accept()
    await client.send(b"ok")
    assert await receive_exactly(server, 2) == b"ok"
    await listener.close()
    for end in (server, *extra, client):
        await end.close()


async def test_closing_the_listener_keeps_accepted_streams(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    client = await connect(quic_pem.client(listener.url))
    server = await listener.accept()
    await listener.close()
    await listener.close()
    with pytest.raises(ClosedResourceError):
        await listener.accept()
    await client.send(b"after the listener")
    assert await receive_exactly(server, 18) == b"after the listener"
    await server.close()
    assert await client.receive() == b""
    await client.close()
    # The last connection ended, so the closed listener released its port.
    port = int(listener.url.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))


async def test_unknown_versions_get_version_negotiation_and_garbage_is_ignored(
    quic_pem: Pem,
) -> None:
    listener = await listen(quic_pem.server())
    port = int(listener.url.rsplit(":", 1)[1])
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            replies.put_nowait(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(b"\x00not quic")
        dcid, scid = bytes(range(8)), bytes(range(8, 16))
        # A long-header Initial of version 0x1a2a3a4a (reserved for negotiation tests).
        packet = b"\xc0" + (0x1A2A3A4A).to_bytes(4, "big") + b"\x08" + dcid + b"\x08" + scid
        transport.sendto(packet.ljust(1200, b"\x00"))
        reply = await asyncio.wait_for(replies.get(), 10)
        assert reply[0] & 0x80, "a long header"
        assert reply[1:5] == bytes(4), "version 0: Version Negotiation"
        assert reply[5:14] == b"\x08" + scid  # addressed back to the sender's connection ID
        assert (1).to_bytes(4, "big") in reply[14:], "offers QUIC version 1"
    finally:
        transport.close()
    stream = await connect(quic_pem.client(listener.url))
    await stream.send(b"still serving")
    server = await listener.accept()
    assert await receive_exactly(server, 13) == b"still serving"
    for end in (stream, server, listener):
        await end.close()


async def test_open_connection_stays_open_without_streams(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    endpoint, _ = parse_endpoint(quic_pem.client(listener.url))
    connection = await QuicTransport().open_connection(endpoint)
    assert connection.alpn_protocol == "netweave"
    stream = await connection.open_stream()
    await stream.send(b"one")
    server = await listener.accept()
    assert await receive_exactly(server, 3) == b"one"
    await stream.close()
    assert not connection.is_closing
    again = await connection.open_stream()
    await again.send(b"two")
    server_again = await listener.accept()
    assert await receive_exactly(server_again, 3) == b"two"
    await connection.close()
    await connection.close()
    assert connection.is_closing
    with pytest.raises(ClosedResourceError):
        await again.send(b"x")
    with pytest.raises(ClosedResourceError):
        await connection.open_stream()
    with pytest.raises(ConnectionBroken):
        await asyncio.wait_for(server_again.receive(), 10)
    for end in (server, server_again, again):
        await end.close()
    await listener.close()


# ---------------------------------------------------------------------------
# netweave.connect / serve
# ---------------------------------------------------------------------------


async def test_connect_and_serve_exchange_messages(quic_pem: Pem) -> None:
    async def echo(channel: netweave.Channel[object]) -> None:
        async for message in channel:
            await channel.send({"echo": message})

    async with await netweave.serve(quic_pem.server(), "lp4,json", echo) as server:
        assert server.url.startswith("quic://127.0.0.1:")
        channel = await netweave.connect(quic_pem.client(server.url), "lp4,json")
        async with channel:
            for index in range(20):
                await channel.send({"n": index, "text": "x" * index})
                assert await channel.receive() == {"echo": {"n": index, "text": "x" * index}}


# ---------------------------------------------------------------------------
# Certificates and handshake failures
# ---------------------------------------------------------------------------


async def test_an_untrusted_certificate_fails_the_connect(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    async with listener:
        url = f"{listener.url}?ca={quic_pem.other_ca}"
        with pytest.raises(ConnectFailed, match="certificate verification failed") as info:
            await connect(url)
        assert "ca=" in str(info.value)
        cause = info.value.__cause__
        assert isinstance(cause, TlsError)
        assert cause.reason == "CERTIFICATE_VERIFY_FAILED"


async def test_a_wrong_server_hostname_fails_the_connect(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    async with listener:
        with pytest.raises(ConnectFailed, match="doesn't match"):
            await connect(quic_pem.client(listener.url, "&server_hostname=other.example"))
        stream = await connect(quic_pem.client(listener.url, f"&server_hostname={HOST}"))
        await stream.close()


async def test_verify_off_accepts_any_certificate(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server())
    async with listener:
        stream = await connect(f"{listener.url}?verify=0")
        await stream.send(b"unverified")
        server = await listener.accept()
        assert await receive_exactly(server, 10) == b"unverified"
        await stream.close()
        await server.close()


async def test_alpn_must_match(quic_pem: Pem) -> None:
    listener = await listen(quic_pem.server(options="&alpn=h3"))
    async with listener:
        with pytest.raises(ConnectFailed, match="ALPN") as info:
            await connect(quic_pem.client(listener.url))
        assert isinstance(info.value.__cause__, TlsError)
        stream = await connect(quic_pem.client(listener.url, "&alpn=h3"))
        assert connection_of(stream).alpn_protocol == "h3"
        assert stream.extra("alpn_protocol") == "h3"
        await stream.close()


async def test_nobody_listening_is_connect_failed() -> None:
    port = free_port(socket.SOCK_DGRAM)
    with pytest.raises(ConnectFailed, match=f"quic://127.0.0.1:{port}"):
        await connect(f"quic://127.0.0.1:{port}?verify=0&connect_timeout=5")


async def test_connect_to_port_zero_is_connect_failed() -> None:
    with pytest.raises(ConnectFailed, match="port 0"):
        await connect("quic://127.0.0.1:0?verify=0")


# ---------------------------------------------------------------------------
# Options and configuration errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("congestion_control=bbr", "reno, cubic"),
        ("idle_timeout=0", "above 0"),
        ("read_high_water=1k", "stalls"),
        ("verify=maybe", "boolean"),
        ("alpn=,", "protocol names"),
        ("nodelay=1", "unknown option"),
    ],
)
def test_bad_options_are_invalid_endpoints(query: str, message: str) -> None:
    with pytest.raises(InvalidEndpoint, match=message):
        parse_endpoint(f"quic://127.0.0.1:4433?{query}")


async def test_configuration_errors_are_usage_errors(quic_pem: Pem) -> None:
    with pytest.raises(UsageError, match="needs its certificate"):
        await listen("quic://127.0.0.1:0")
    with pytest.raises(UsageError, match="cannot require client certificates"):
        await listen(quic_pem.server(options=f"&ca={quic_pem.ca}"))
    with pytest.raises(UsageError, match="holds no private key"):
        await listen(f"quic://127.0.0.1:0?cert={quic_pem.cert}")
    with pytest.raises(UsageError, match="cannot read the certificate"):
        await listen("quic://127.0.0.1:0?cert=/nonexistent/cert.pem")
    with pytest.raises(UsageError, match="present no certificate"):
        await connect(f"quic://127.0.0.1:4433?cert={quic_pem.cert}")
    with pytest.raises(UsageError, match="cannot read the CA file"):
        await connect("quic://127.0.0.1:4433?ca=/nonexistent/ca.pem")
    with pytest.raises(UsageError, match="is not PEM certificates"):
        await connect(f"quic://127.0.0.1:4433?ca={quic_pem.key}")


async def test_cubic_congestion_control_moves_data(quic_pem: Pem) -> None:
    options = "&congestion_control=cubic"
    client, server = await quic_pair(quic_pem, listen_options=options, connect_options=options)
    async with client, server:
        data = random.Random(3).randbytes(300_000)
        sending = asyncio.create_task(client.send(data))
        assert await receive_exactly(server, len(data)) == data
        await sending


async def test_the_registry_knows_quic() -> None:
    _, transport = parse_endpoint("quic://127.0.0.1:4433")
    assert isinstance(transport, QuicTransport)
    assert transport.kind == "stream"


async def test_a_missing_aioquic_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, quic_pem: Pem
) -> None:
    import netweave.transports

    for module in ("_quic_engine", "_quic_config"):
        monkeypatch.delitem(sys.modules, f"netweave.transports.{module}", raising=False)
        monkeypatch.delattr(netweave.transports, module, raising=False)
    for name in [name for name in sys.modules if name.split(".")[0] == "aioquic"] + ["aioquic"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency, match=r"pip install 'netweave\[quic\]'"):
        await connect(quic_pem.client("quic://127.0.0.1:4433"))


# ---------------------------------------------------------------------------
# Observer events
# ---------------------------------------------------------------------------


async def test_observer_sees_streams_open_move_bytes_and_close(quic_pem: Pem) -> None:
    seen = RecordingObserver()
    endpoint, transport = parse_endpoint(quic_pem.server())
    listener = await transport.listen(endpoint, observer=seen)
    target, _ = parse_endpoint(quic_pem.client(listener.url))
    client = await transport.connect(target, observer=seen)
    server = await listener.accept()
    await listener.close()
    await client.send(b"12345")
    assert await receive_exactly(server, 5) == b"12345"
    await client.close()
    assert await server.receive() == b""
    await server.close()
    opened = seen.of_type(ConnectionOpened)
    assert sorted(event.role for event in opened) == ["client", "server"]
    assert all(event.transport == "quic" and "stream 0" in event.source for event in opened)
    assert sum(event.count for event in seen.of_type(BytesSent)) >= 5
    assert sum(event.count for event in seen.of_type(BytesReceived)) >= 5
    reasons = sorted(event.reason for event in seen.of_type(ConnectionClosed))
    assert reasons == ["local-close", "peer-eof"]


# ---------------------------------------------------------------------------
# extra() and repr
# ---------------------------------------------------------------------------


async def test_extra_names_the_connection_and_the_socket(quic_pem: Pem) -> None:
    client, server = await quic_pair(quic_pem)
    async with client, server:
        assert isinstance(client, QuicStream)
        assert client.extra("stream_id") == 0
        assert client.extra("quic_connection") is client.connection
        assert client.extra("socket") is not None
        assert client.extra("peername")[:2] == (
            "127.0.0.1",
            int(server.local_address.split(":")[1]),
        )
        assert client.extra("no-such-thing", 7) == 7
        assert isinstance(client.connection.datagrams, QuicDatagrams)
        assert "quic 127.0.0.1:" in repr(client)
        with pytest.raises(UsageError, match="go to accept"):
            await connection_of(server).accept_stream()
