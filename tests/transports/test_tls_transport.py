"""TLS over streams: ``start_tls`` over memory pairs and TCP, ``tls://`` URLs, and the
stream conformance suite. Certificates are made on the fly with trustme."""

from __future__ import annotations

import asyncio
import functools
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

import netweave
from netweave.endpoints import parse_endpoint
from netweave.errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    InvalidEndpoint,
    PeerUnresponsive,
    TlsError,
    UsageError,
)
from netweave.observe import BytesSent, ConnectionClosed, Event, RecordingObserver
from netweave.testing import StreamConformance, memory_stream_pair
from netweave.testing._streams import receive_exactly, receive_until_eof
from netweave.transports import (
    StreamConnection,
    StreamTransport,
    TlsConnection,
    TlsListener,
    TlsTransport,
    start_tls,
)

HOST = "example.test"


@functools.cache
def pki() -> dict[str, Any]:
    """One CA, a server certificate for HOST and 127.0.0.1, a client certificate."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return {"ca": ca, "server": server, "client": client}


def server_ctx() -> ssl.SSLContext:
    return pki()["server"]  # type: ignore[no-any-return]


def client_ctx() -> ssl.SSLContext:
    return pki()["client"]  # type: ignore[no-any-return]


async def tls_pair(
    chunks: tuple[int, ...] | None = None, capacity: int = 256 * 1024
) -> tuple[TlsConnection, TlsConnection]:
    a, b = memory_stream_pair(chunks=chunks, capacity=capacity)
    client, server = await asyncio.gather(
        start_tls(a, client_ctx(), server_side=False, server_hostname=HOST),
        start_tls(b, server_ctx(), server_side=True),
    )
    return client, server


@pytest.fixture
def cert_files(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ca.issue_cert(HOST, "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client = ca.issue_cert("alice@example.test", common_name="alice")
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return {name: str(path) for name, path in files.items()}


# ---------------------------------------------------------------------------
# The stream conformance suite, over memory pairs and over TCP
# ---------------------------------------------------------------------------


class TestTlsOverMemory(StreamConformance):
    backpressure_limit = 4 * 1024 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await tls_pair()


class TestTlsOverFragmentedMemory(StreamConformance):
    """Every ciphertext receive returns 1, 3 or 7 bytes: records arrive in pieces."""

    bulk_size = 128 * 1024
    backpressure_limit = 512 * 1024

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await tls_pair(chunks=(1, 3, 7), capacity=16 * 1024)


class TestTlsOverTcp(StreamConformance):
    event_loops = ("asyncio", "uvloop")  # see conftest.py

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        transport = TlsTransport(client_context=client_ctx(), server_context=server_ctx())
        listen, _ = parse_endpoint("tls://127.0.0.1:0")
        listener = await transport.listen(listen)
        try:
            target, _ = parse_endpoint(listener.url + f"?server_hostname={HOST}")
            client = await transport.connect(target)
            server = await listener.accept()
        finally:
            await listener.close()
        return client, server


# ---------------------------------------------------------------------------
# start_tls over any stream
# ---------------------------------------------------------------------------


async def test_peer_information_is_exposed() -> None:
    client, server = await tls_pair()
    async with client, server:
        assert client.extra("tls_version") == "TLSv1.3"
        assert client.extra("cipher")[1] == "TLSv1.3"
        assert ("DNS", HOST) in client.extra("peercert")["subjectAltName"]
        assert client.extra("server_hostname") == HOST
        assert server.extra("peercert") is None
        assert server.extra("peercert", "none") == "none"
        assert client.extra("alpn_protocol") is None
        assert isinstance(client.extra("ssl_object"), ssl.SSLObject)
        assert client.extra("no-such-thing", 42) == 42
        assert isinstance(client.inner, StreamConnection)


async def test_large_messages_are_split_into_records() -> None:
    client, server = await tls_pair()
    async with client, server:
        data = bytes(range(256)) * 8192  # 2 MiB
        sending = asyncio.create_task(client.send(data))
        assert await receive_exactly(server, len(data)) == data
        await sending


class RecordCounter(StreamConnection):
    """Passes a connection through, counting the TLS records it receives (by header)."""

    def __init__(self, inner: StreamConnection) -> None:
        self.inner = inner
        self.records = 0
        self._skip = 0  # bytes left of the current record's body
        self._header = b""

    def _count(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 5 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) == 5:
                self.records += 1
                self._skip = int.from_bytes(self._header[3:5], "big")
                self._header = b""

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send(data)

    async def receive(self, max_bytes: int | None = None) -> bytes:
        chunk = await self.inner.receive(max_bytes)
        self._count(chunk)
        return chunk

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def close(self) -> None:
        await self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    @property
    def local_address(self) -> str:
        return self.inner.local_address

    @property
    def remote_address(self) -> str:
        return self.inner.remote_address

    @property
    def is_closing(self) -> bool:
        return self.inner.is_closing


async def tls_client_over_tcp(
    observer: Any = None,
) -> tuple[StreamConnection, RecordCounter, TlsConnection]:
    """A ``tls://`` client, and the server's end: TLS over a record-counting TCP connection."""
    endpoint, tcp = parse_endpoint("tcp://127.0.0.1:0")
    assert isinstance(tcp, StreamTransport)
    listener = await tcp.listen(endpoint)
    try:
        transport = TlsTransport(client_context=client_ctx())
        target, _ = parse_endpoint(
            listener.url.replace("tcp://", "tls://") + f"?server_hostname={HOST}"
        )
        connecting = asyncio.create_task(transport.connect(target, observer=observer))
        counter = RecordCounter(await listener.accept())
        server = await start_tls(counter, server_ctx(), server_side=True)
        client = await connecting
    finally:
        await listener.close()
    return client, counter, server


async def test_many_small_channel_sends_coalesce_into_few_records_and_writes() -> None:
    """1000 small messages sent back to back leave as a handful of records and writes,
    not one record (and one encryption) per message."""
    recorder = RecordingObserver()
    client, counter, server = await tls_client_over_tcp(recorder)
    messages = [b"small message %d" % i for i in range(1000)]
    expected = b"".join(len(m).to_bytes(4, "big") + m for m in messages)
    async with server:
        channel: netweave.StreamChannel[bytes] = netweave.StreamChannel(
            client, netweave.Stack.parse("lp4,raw")
        )
        handshake_records, handshake_writes = counter.records, len(recorder.of_type(BytesSent))
        for message in messages:
            await channel.send(message)
        await channel.close()
        assert await receive_until_eof(server, len(expected)) == expected
    records = counter.records - handshake_records
    writes = len(recorder.of_type(BytesSent)) - handshake_writes
    # 21 KiB of plaintext: two full 16 KiB records at most, plus close_notify.
    assert 1 <= records <= 4, f"{records} records for {len(messages)} messages"
    assert 1 <= writes <= 4, f"{writes} writes for {len(messages)} messages"


async def test_send_nowait_holds_small_data_until_the_loop_runs() -> None:
    client, _counter, server = await tls_client_over_tcp()
    async with client, server:
        assert client.send_nowait(b"first ", more=True)
        assert client.send_nowait(b"second")
        assert await receive_exactly(server, 12) == b"first second"
        assert not client.send_nowait(b"x" * (16 * 1024 + 1)), "over one record: use send"
        await client.send_eof()
        assert not client.send_nowait(b"late")
        assert await receive_until_eof(server, 0) == b""


async def test_send_nowait_needs_a_fast_inner_connection() -> None:
    client, server = await tls_pair()  # memory streams have no fast path
    async with client, server:
        assert not client.send_nowait(b"data")
        await client.send(b"data")
        assert await receive_exactly(server, 4) == b"data"


async def test_small_sends_still_wait_for_a_peer_that_does_not_read() -> None:
    """Coalesced small sends keep backpressure: the sender blocks, nothing is lost,
    order is kept."""
    client, _counter, server = await tls_client_over_tcp()
    piece = bytes(range(256)) * 4
    limit = 32 * 1024 * 1024
    async with client, server:
        sent = 0

        async def writer() -> None:
            nonlocal sent
            while sent < limit:
                await client.send(piece)
                sent += len(piece)

        task = asyncio.create_task(writer())
        try:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            assert not done, f"send never waited: {sent} bytes accepted, none read"
            received = bytearray()
            while len(received) < limit:
                chunk = await server.receive()
                assert chunk, "end of stream in the middle of the data"
                received += chunk
            await task
        finally:
            task.cancel()
        assert len(received) == limit
        assert received == piece * (limit // len(piece))


async def test_handshake_timeout_cuts_off_a_silent_peer() -> None:
    a, b = memory_stream_pair()
    async with b:
        with pytest.raises(PeerUnresponsive, match=r"did not finish within 0\.05 s"):
            await start_tls(
                a, client_ctx(), server_side=False, server_hostname=HOST, handshake_timeout=0.05
            )
        assert a.is_closing
        # The silent peer saw the connection reset (after the ClientHello).
        assert (await b.receive()).startswith(b"\x16\x03")  # a TLS handshake record
        with pytest.raises(ConnectionBroken):
            await b.receive()


async def test_a_peer_hanging_up_mid_handshake_is_a_tls_error() -> None:
    a, b = memory_stream_pair()

    async def hang_up() -> None:
        await b.receive()  # the ClientHello
        await b.close()

    peer = asyncio.create_task(hang_up())
    with pytest.raises(TlsError, match="during the TLS handshake") as info:
        await start_tls(a, client_ctx(), server_side=False, server_hostname=HOST)
    assert info.value.reason == "UNEXPECTED_EOF"
    await peer


async def test_untrusted_certificate_fails_both_sides() -> None:
    a, b = memory_stream_pair()
    untrusting = ssl.create_default_context()
    results = await asyncio.gather(
        start_tls(a, untrusting, server_side=False, server_hostname=HOST),
        start_tls(b, server_ctx(), server_side=True),
        return_exceptions=True,
    )
    client_error, server_error = results
    assert isinstance(client_error, TlsError)
    assert client_error.reason == "CERTIFICATE_VERIFY_FAILED"
    assert isinstance(server_error, TlsError)
    assert server_error.reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert a.is_closing
    assert b.is_closing


async def test_close_notify_half_close() -> None:
    client, server = await tls_pair()
    async with client, server:
        await client.send(b"request")
        await client.send_eof()
        assert await receive_until_eof(server, 100) == b"request"
        await server.send(b"response")
        await server.close()
        assert await receive_until_eof(client, 100) == b"response"


async def test_truncated_stream_raises_a_clear_error() -> None:
    client, server = await tls_pair()
    await client.send(b"complete")
    await client.inner.send_eof()  # end the TCP-level stream without close_notify
    assert await receive_exactly(server, 8) == b"complete"
    with pytest.raises(TlsError, match="truncated") as info:
        await server.receive()
    assert info.value.reason == "UNEXPECTED_EOF"
    assert server.is_closing
    with pytest.raises(ClosedResourceError, match="after a TLS error"):
        await server.receive()
    client.abort()
    await server.close()


async def test_tampered_record_closes_the_connection() -> None:
    """A relay in the middle flips one bit of an application record."""
    a, relay_in = memory_stream_pair()
    relay_out, b = memory_stream_pair()
    tamper = asyncio.Event()

    async def relay(source: StreamConnection, sink: StreamConnection, flip: bool) -> None:
        while chunk := await source.receive():
            if flip and tamper.is_set():
                chunk = bytes([*chunk[:-1], chunk[-1] ^ 1])
            await sink.send(chunk)
        await sink.send_eof()

    relays = [
        asyncio.create_task(relay(relay_in, relay_out, flip=True)),
        asyncio.create_task(relay(relay_out, relay_in, flip=False)),
    ]
    client, server = await asyncio.gather(
        start_tls(a, client_ctx(), server_side=False, server_hostname=HOST),
        start_tls(b, server_ctx(), server_side=True),
    )
    await client.send(b"honest")
    assert await receive_exactly(server, 6) == b"honest"
    tamper.set()
    await client.send(b"pay mallory")
    with pytest.raises(TlsError, match="tampered") as info:
        await server.receive()
    assert info.value.reason == "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"
    assert server.is_closing
    with pytest.raises(ClosedResourceError, match="tampered"):
        await server.send(b"x")
    for task in relays:
        task.cancel()
    await asyncio.gather(*relays, return_exceptions=True)
    client.abort()
    await server.close()


async def test_tls_over_unix_socket(sock_dir: Path) -> None:
    endpoint, transport = parse_endpoint(f"unix://{sock_dir}/s")
    assert isinstance(transport, StreamTransport)
    listener = await transport.listen(endpoint)
    raw_client = await transport.connect(endpoint)
    raw_server = await listener.accept()
    await listener.close()
    client, server = await asyncio.gather(
        start_tls(raw_client, client_ctx(), server_side=False, server_hostname=HOST),
        start_tls(raw_server, server_ctx(), server_side=True),
    )
    async with client, server:
        await client.send(b"over a unix socket")
        assert await receive_exactly(server, 18) == b"over a unix socket"


# ---------------------------------------------------------------------------
# tls:// URLs through connect/serve
# ---------------------------------------------------------------------------


async def echo(channel: netweave.Channel[bytes]) -> None:
    async for message in channel:
        await channel.send(message)


async def test_tls_url_round_trip(cert_files: dict[str, str]) -> None:
    url = f"tls://127.0.0.1:0?cert={cert_files['cert']}&key={cert_files['key']}&alpn=echo/1"
    async with netweave.serve(url, "lp4,raw", echo) as server:
        assert server.url.startswith("tls://127.0.0.1:")
        target = f"{server.url}?ca={cert_files['ca']}&alpn=echo/1&server_hostname={HOST}"
        channel = await netweave.connect(target, "lp4,raw")
        assert isinstance(channel, netweave.StreamChannel)
        async with channel:
            await channel.send(b"hello over tls")
            assert await channel.receive() == b"hello over tls"
            assert channel.connection.extra("alpn_protocol") == "echo/1"
            assert channel.connection.extra("server_hostname") == HOST


async def test_tls_url_verifies_by_default(cert_files: dict[str, str]) -> None:
    events: list[Event] = []
    failed = asyncio.Event()

    def observe(event: Event) -> None:
        events.append(event)
        if isinstance(event, ConnectionClosed) and event.reason == "tls-handshake-failed":
            failed.set()

    url = f"tls://127.0.0.1:0?cert={cert_files['cert']}&key={cert_files['key']}"
    async with netweave.serve(url, "lp4,raw", echo, observer=observe) as server:
        with pytest.raises(TlsError, match="certificate verification failed") as info:
            await netweave.connect(server.url, "lp4,raw")
        assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
        async with asyncio.timeout(5):
            await failed.wait()
        # Explicitly opting out connects (tests only!).
        channel = await netweave.connect(server.url + "?verify=0", "lp4,raw")
        async with channel:
            await channel.send(b"x")
            assert await channel.receive() == b"x"


async def test_mutual_tls_identity_on_the_server_channel(cert_files: dict[str, str]) -> None:
    seen: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def who(channel: netweave.Channel[bytes]) -> None:
        assert isinstance(channel, netweave.StreamChannel)
        seen.set_result(channel.connection.extra("peercert"))
        await echo(channel)

    url = (
        f"tls://127.0.0.1:0?cert={cert_files['cert']}&key={cert_files['key']}&ca={cert_files['ca']}"
    )
    async with netweave.serve(url, "lp4,raw", who) as server:
        base = f"{server.url}?ca={cert_files['ca']}&server_hostname={HOST}"
        with_cert = f"{base}&cert={cert_files['client_cert']}&key={cert_files['client_key']}"
        channel = await netweave.connect(with_cert, "lp4,raw")
        async with channel:
            await channel.send(b"me")
            assert await channel.receive() == b"me"
        async with asyncio.timeout(5):
            peer = await seen
        assert (("commonName", "alice"),) in peer["subject"]
        # Without a client certificate the server refuses; TLS 1.3 clients learn it
        # on their first read.
        channel = await netweave.connect(base, "lp4,raw")
        async with channel:
            await channel.send(b"anyone?")
            with pytest.raises(TlsError) as info:
                await channel.receive()
            assert info.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


async def test_connect_handshake_timeout_is_connect_failed() -> None:
    """A TCP server that accepts but never speaks TLS."""
    silent: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectFailed, match=r"did not finish within 0\.1 s"):
            await netweave.connect(
                f"tls://127.0.0.1:{port}?verify=0&handshake_timeout=0.1", "lp4,raw"
            )
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_listener_cuts_off_silent_clients_without_blocking_others() -> None:
    failures = asyncio.Event()

    def observe(event: Event) -> None:
        if isinstance(event, ConnectionClosed) and event.reason == "tls-handshake-failed":
            failures.set()

    transport = TlsTransport(client_context=client_ctx(), server_context=server_ctx())
    listen, _ = parse_endpoint("tls://127.0.0.1:0?handshake_timeout=0.2")
    listener = await transport.listen(listen, observer=observe)
    assert isinstance(listener, TlsListener)
    try:
        host, port = listener.url.removeprefix("tls://").rsplit(":", 1)
        _, silent = await asyncio.open_connection(host, int(port))  # never sends a ClientHello
        target, _ = parse_endpoint(f"{listener.url}?server_hostname={HOST}")
        client = await transport.connect(target)  # not held up by the silent one
        server = await listener.accept()
        async with client, server:
            await client.send(b"hi")
            assert await server.receive() == b"hi"
        async with asyncio.timeout(5):
            await failures.wait()
        assert listener.failed_handshakes == 1
        silent.close()
    finally:
        await listener.close()
    with pytest.raises(ClosedResourceError):
        await listener.accept()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tls://127.0.0.1:1?verify=maybe", "bad value for option 'verify'"),
        ("tls://127.0.0.1:1?alpn=", "bad value for option 'alpn'"),
        ("tls://127.0.0.1:1?cipher=x", "unknown option 'cipher'"),
    ],
)
def test_bad_url_options(url: str, message: str) -> None:
    with pytest.raises(InvalidEndpoint, match=message):
        parse_endpoint(url)


async def test_listening_needs_a_certificate() -> None:
    with pytest.raises(UsageError, match="needs its certificate"):
        async with netweave.serve("tls://127.0.0.1:0", "lp4,raw", echo):
            pass


async def test_missing_certificate_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(UsageError, match=r"nope\.pem"):
        await netweave.connect(f"tls://127.0.0.1:1?ca={missing}", "lp4,raw")


# ---------------------------------------------------------------------------
# Interoperability with a TLS stack netweave did not write: Python's ssl module
# ---------------------------------------------------------------------------


async def test_client_against_asyncio_tls_server(cert_files: dict[str, str]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(4)
        writer.write(b"got " + data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        endpoint, transport = parse_endpoint(
            f"tls://127.0.0.1:{port}?ca={cert_files['ca']}&server_hostname={HOST}"
        )
        assert isinstance(transport, StreamTransport)
        conn = await transport.connect(endpoint)
        async with conn:
            await conn.send(b"ping")
            assert await receive_until_eof(conn, 100) == b"got ping"
    finally:
        server.close()
        await server.wait_closed()


async def test_asyncio_tls_client_against_our_listener(cert_files: dict[str, str]) -> None:
    url = f"tls://127.0.0.1:0?cert={cert_files['cert']}&key={cert_files['key']}"
    endpoint, transport = parse_endpoint(url)
    assert isinstance(transport, StreamTransport)
    listener = await transport.listen(endpoint)
    try:
        host, port = listener.url.removeprefix("tls://").rsplit(":", 1)
        context = ssl.create_default_context(cafile=cert_files["ca"])
        connecting = asyncio.create_task(
            asyncio.open_connection(host, int(port), ssl=context, server_hostname=HOST)
        )
        conn = await listener.accept()
        reader, writer = await connecting
        async with conn:
            writer.write(b"from asyncio")
            await writer.drain()
            assert await receive_exactly(conn, 12) == b"from asyncio"
            await conn.send(b"from netweave")
            assert await reader.readexactly(13) == b"from netweave"
            writer.close()  # asyncio sends close_notify, then waits for ours
            closing = asyncio.create_task(writer.wait_closed())
            assert await conn.receive() == b""
            await conn.close()
            async with asyncio.timeout(5):
                await closing
    finally:
        await listener.close()
