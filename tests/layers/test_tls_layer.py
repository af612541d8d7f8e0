"""The sans-IO TLS layer, driven by hand: two layers pass records between them.

Certificates are made on the fly with trustme; nothing touches a socket.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave.errors import ClosedResourceError, TlsError, UsageError
from netweave.layers import Tls

HOST = "example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def pump(a: Tls, b: Tls) -> tuple[bytes, bytes]:
    """Move records both ways until neither side has any; return what each decoded."""
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    for _ in range(20):
        moved = False
        for record in a.data_to_send():
            got_b.extend(b.decode(record))
            moved = True
        for record in b.data_to_send():
            got_a.extend(a.decode(record))
            moved = True
        if not moved:
            break
    return b"".join(got_a), b"".join(got_b)


def connected(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> tuple[Tls, Tls]:
    client = Tls(client_ctx, server_side=False, server_hostname=HOST)
    server = Tls(server_ctx, server_side=True)
    pump(client, server)
    assert client.handshake_complete
    assert server.handshake_complete
    return client, server


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def test_handshake_and_data_both_ways(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = connected(client_ctx, server_ctx)
    assert client.version == "TLSv1.3"
    assert client.cipher is not None
    records = client.encode(b"ping")
    assert b"ping" not in records
    assert server.decode(records) == [b"ping"]
    assert client.decode(server.encode(b"pong" * 1000)) == [b"pong" * 1000]
    assert client.peercert is not None
    assert ("DNS", HOST) in client.peercert["subjectAltName"]
    assert server.peercert is None  # no client certificate asked for


def test_records_fed_one_byte_at_a_time(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client = Tls(client_ctx, server_side=False, server_hostname=HOST)
    server = Tls(server_ctx, server_side=True)
    for _ in range(10):
        for record in client.data_to_send():
            for piece in byte_by_byte(record):
                assert server.decode(piece) == []
        for record in server.data_to_send():
            for piece in byte_by_byte(record):
                assert client.decode(piece) == []
    assert client.handshake_complete
    assert server.handshake_complete
    message = bytes(range(256)) * 100
    received = [
        unit for piece in byte_by_byte(client.encode(message)) for unit in server.decode(piece)
    ]
    assert b"".join(received) == message
    assert server.buffered == 0


def test_data_sent_before_the_handshake_is_queued(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client = Tls(client_ctx, server_side=False, server_hostname=HOST)
    server = Tls(server_ctx, server_side=True)
    hello = client.encode(b"early")  # starts the handshake: this is the ClientHello
    assert hello
    assert client.buffered == len(b"early")
    server.decode(hello)
    _, at_server = pump(client, server)
    assert at_server == b"early"
    assert client.buffered == 0


def test_queue_before_handshake_is_bounded(client_ctx: ssl.SSLContext) -> None:
    client = Tls(client_ctx, server_side=False, server_hostname=HOST, max_pending=10)
    client.encode(b"0123456789")
    with pytest.raises(UsageError, match="max_pending"):
        client.encode(b"x")


def test_verification_is_on_by_default(server_ctx: ssl.SSLContext) -> None:
    untrusting = ssl.create_default_context()  # system CAs only: trustme's CA is unknown
    client = Tls(untrusting, server_side=False, server_hostname=HOST)
    server = Tls(server_ctx, server_side=True)
    with pytest.raises(TlsError) as info:
        pump(client, server)
    assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
    assert info.value.layer == "tls"
    assert "unable to get local issuer certificate" in str(info.value)
    assert info.value.verify_message
    # The client queued an alert so the server learns why.
    alert = client.data_to_send()
    assert alert
    with pytest.raises(TlsError) as server_info:
        server.decode(alert[0])
    assert server_info.value.reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert "does not trust the CA" in str(server_info.value)


def test_hostname_mismatch_is_refused(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client = Tls(client_ctx, server_side=False, server_hostname="other.test")
    server = Tls(server_ctx, server_side=True)
    with pytest.raises(TlsError, match=r"other\.test") as info:
        pump(client, server)
    assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"


def test_client_context_needs_a_hostname(client_ctx: ssl.SSLContext) -> None:
    with pytest.raises(UsageError, match="server_hostname"):
        Tls(client_ctx, server_side=False)
    with pytest.raises(UsageError, match="client side"):
        Tls(client_ctx, server_side=True, server_hostname=HOST)


def test_sni_and_alpn(ca: trustme.CA, tmp_path: pytest.TempPathFactory) -> None:
    from netweave.layers import tls_client_context, tls_server_context

    cert = ca.issue_cert(HOST)
    cert_file = tmp_path / "server.pem"  # type: ignore[operator]
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    ca_file = tmp_path / "ca.pem"  # type: ignore[operator]
    ca.cert_pem.write_to_path(str(ca_file))
    server_context = tls_server_context(cert=str(cert_file), alpn=["netweave/2", "netweave/1"])
    client_context = tls_client_context(ca=str(ca_file), alpn=["netweave/1", "netweave/2"])
    client = Tls(client_context, server_side=False, server_hostname=HOST)
    server = Tls(server_context, server_side=True)
    pump(client, server)
    assert server.server_hostname == HOST  # the SNI the client asked for
    assert client.server_hostname == HOST
    # The server's preference wins among protocols both speak.
    assert client.alpn_protocol == server.alpn_protocol == "netweave/2"


def test_mutual_tls_exposes_the_client_identity(ca: trustme.CA) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    ca.issue_cert("client@example.test", common_name="alice").configure_cert(client_ctx)
    _, server = connected(client_ctx, server_ctx)
    peer = server.peercert
    assert peer is not None
    assert ((("commonName", "alice"),)) in peer["subject"]
    assert server.peercert_der is not None


def test_mutual_tls_without_a_client_certificate(
    ca: trustme.CA, client_ctx: ssl.SSLContext
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client = Tls(client_ctx, server_side=False, server_hostname=HOST)
    server = Tls(server_ctx, server_side=True)
    with pytest.raises(TlsError) as info:
        pump(client, server)
    assert info.value.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    # In TLS 1.3 the client finished its side; it learns of the refusal from the alert.
    with pytest.raises(TlsError) as client_info:
        client.decode(server.data_to_send()[0])
    assert client_info.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "client certificate" in str(client_info.value)


def test_close_notify_ends_the_upper_stream(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = connected(client_ctx, server_ctx)
    last = client.encode(b"last words")
    client.send_close_notify()
    assert client.closed
    assert server.decode(last + client.data_to_send()[0]) == [b"last words"]
    assert server.peer_closed
    assert server.end_of_input() == []
    # Half-close: the server can still answer, and the client still reads.
    assert client.decode(server.encode(b"answer")) == [b"answer"]
    server.send_close_notify()
    client.decode(server.data_to_send()[0])
    assert client.peer_closed
    with pytest.raises(ClosedResourceError):
        client.encode(b"more")


def test_truncated_stream_is_an_error(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = connected(client_ctx, server_ctx)
    record = client.encode(b"cut short")
    assert server.decode(record[:-5]) == []
    with pytest.raises(TlsError, match="without a TLS close_notify") as info:
        server.end_of_input()
    assert info.value.reason == "UNEXPECTED_EOF"


def test_truncated_handshake_is_an_error(client_ctx: ssl.SSLContext) -> None:
    client = Tls(client_ctx, server_side=False, server_hostname=HOST)
    client.data_to_send()
    with pytest.raises(TlsError, match="during the TLS handshake") as info:
        client.end_of_input()
    assert info.value.reason == "UNEXPECTED_EOF"


@pytest.mark.parametrize("offset", [-1, -17, 6])
def test_tampered_record_is_detected(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, offset: int
) -> None:
    client, server = connected(client_ctx, server_ctx)
    record = bytearray(client.encode(b"pay 10 euros to bob"))
    record[offset] ^= 0x01
    with pytest.raises(TlsError) as info:
        server.decode(bytes(record))
    assert info.value.reason == "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"
    assert "tampered" in str(info.value)
    # The layer stays failed.
    with pytest.raises(TlsError):
        server.decode(client.encode(b"again"))


@pytest.mark.parametrize(
    "hello", [b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", b"\x16\x09\x09hello, not TLS"]
)
def test_plaintext_peer_is_refused(server_ctx: ssl.SSLContext, hello: bytes) -> None:
    server = Tls(server_ctx, server_side=True)
    with pytest.raises(TlsError, match="does not speak TLS"):
        server.decode(hello)


def test_oversized_record_header_is_refused_at_once(server_ctx: ssl.SSLContext) -> None:
    server = Tls(server_ctx, server_side=True)
    # A handshake record header announcing 65535 bytes: over TLS's record limit.
    with pytest.raises(TlsError):
        server.decode(b"\x16\x03\x01\xff\xff" + b"\x00" * 100)


def test_clone_starts_a_fresh_session(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = connected(client_ctx, server_ctx)
    twin = client.clone()
    assert not twin.handshake_complete
    assert twin.server_hostname == HOST
    fresh_server = server.clone()
    pump(twin, fresh_server)
    assert fresh_server.decode(twin.encode(b"x")) == [b"x"]


@settings(max_examples=200)
@given(data=st.binary(max_size=2048), chunk=st.integers(1, 512))
def test_fuzz_server_input(server_ctx: ssl.SSLContext, data: bytes, chunk: int) -> None:
    """Any bytes from a would-be client give only TlsError, with bounded buffering."""
    server = Tls(server_ctx, server_side=True)
    error: TlsError | None = None
    try:
        for start in range(0, len(data), chunk):
            server.decode(data[start : start + chunk])
            assert server.buffered <= 18 * 1024 + chunk
        server.end_of_input()
    except TlsError as exc:
        error = exc
    assert error is None or error.layer == "tls"


@settings(max_examples=200)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, 10_000),
)
def test_fuzz_mutated_records(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, flips: list[tuple[int, int]], cut: int
) -> None:
    """Mutated or cut application records after the handshake give only TlsError,
    and never unauthenticated plaintext."""
    client, server = connected(client_ctx, server_ctx)
    secret = b"s" * 3000
    wire = bytearray(client.encode(secret))
    for index, mask in flips:
        wire[index % len(wire)] ^= mask
    del wire[cut % (len(wire) + 1) :]
    received: list[bytes] = []
    error: TlsError | None = None
    try:
        received.extend(server.decode(bytes(wire)))
        server.end_of_input()
    except TlsError as exc:
        error = exc
    assert error is None or error.layer == "tls"
    assert secret.startswith(b"".join(received))


def test_tls_at_the_bottom_of_a_stack(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    """Bottom first: tls (stream->stream), framing, compression, codec."""
    from netweave import Stack
    from netweave.layers import Json, LengthPrefix, Zlib

    def stack(tls: Tls) -> Stack:
        return Stack([tls, LengthPrefix(4, max_frame=4096), Zlib(threshold=16), Json()])

    client = stack(Tls(client_ctx, server_side=False, server_hostname=HOST))
    server = stack(Tls(server_ctx, server_side=True))
    assert client.speaks
    wire = client.encode({"early": "x" * 100})  # the ClientHello; the message waits
    received: list[object] = list(server.decode(wire))
    for _ in range(5):
        for data in server.data_to_send():
            received += client.decode(data)
        for data in client.data_to_send():
            received += server.decode(data)
    assert received == [{"early": "x" * 100}]
    assert server.decode(client.encode([1, 2, 3])) == [[1, 2, 3]]
    assert client.decode(server.encode("back")) == ["back"]
