"""Negotiation over real connections: memory pairs and TCP; failures on both sides, the
handshake timeout, feature flags with and without, and the TLS upgrade."""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from typing import Any

import pytest
import trustme

from netweave import negotiate
from netweave.errors import (
    DecodeError,
    InvalidStackSpec,
    MissingDependency,
    NegotiationFailed,
    PeerUnresponsive,
    UsageError,
)
from netweave.layers import Zstd
from netweave.negotiate import NegotiatedChannel, Offer
from netweave.testing import memory_stream_pair
from netweave.transports import StreamConnection, TlsConnection

HOST = "example.test"


async def pair(
    client_offer: Offer, server_offer: Offer, **options: Any
) -> tuple[NegotiatedChannel[Any], NegotiatedChannel[Any]]:
    a, b = memory_stream_pair()
    client_options = {k: v for k, v in options.items() if k.startswith("client_")}
    server_options = {k: v for k, v in options.items() if k.startswith("server_")}
    return await asyncio.gather(
        negotiate.client(a, client_offer, **{k[7:]: v for k, v in client_options.items()}),
        negotiate.server(b, server_offer, **{k[7:]: v for k, v in server_options.items()}),
    )


async def test_agreed_stack_carries_messages() -> None:
    client_offer = Offer(
        "chat", versions=[2, 1], codecs=["msgpack", "json"], compression=["zstd", "none"]
    )
    server_offer = Offer(
        "chat", versions=[1, 2], codecs=["json"], compression=["zstd:level=5", "none"]
    )
    client, server = await pair(client_offer, server_offer)
    async with client, server:
        assert client.agreement == server.agreement
        assert client.agreement.version == 1
        assert (
            client.stack.spec
            == server.stack.spec
            == "lp4:max=1048576,zstd:level=5:max=1048576,json"
        )
        assert isinstance(client.stack.layers[1], Zstd)
        await client.send({"text": "hello " * 100})
        assert await server.receive() == {"text": "hello " * 100}
        await server.send(["reply"])
        assert await client.receive() == ["reply"]
        await client.send_eof()
        assert [message async for message in server] == []


async def test_mismatch_fails_on_both_sides_with_a_clean_close() -> None:
    a, b = memory_stream_pair()
    results = await asyncio.gather(
        negotiate.client(a, Offer("chat", codecs=["cbor"])),
        negotiate.server(b, Offer("chat", codecs=["json", "msgpack"])),
        return_exceptions=True,
    )
    client_error, server_error = results
    assert isinstance(client_error, NegotiationFailed)
    assert isinstance(server_error, NegotiationFailed)
    assert (
        client_error.reason
        == server_error.reason
        == ("no common codec: the client offers cbor; the server accepts json, msgpack")
    )
    assert client_error.what == server_error.what == "codec"
    assert client_error.side == "remote"
    assert server_error.side == "local"
    assert a.is_closing
    assert b.is_closing


async def test_refused_peer_sees_the_reason_then_a_clean_end_of_stream() -> None:
    a, b = memory_stream_pair()
    serving = asyncio.create_task(negotiate.server(b, Offer("kv")))
    await a.send(negotiate.encode_hello(Offer("chat").hello(2), 2))
    answer = b""
    while chunk := await a.receive():  # no ConnectionBroken: the server closed cleanly
        answer += chunk
    parsed = negotiate.read_message(answer)
    assert parsed is not None
    assert parsed[0].type == negotiate.MessageType.REFUSE
    assert negotiate.decode_refuse(parsed[0].body)[0] == "protocol"
    with pytest.raises(NegotiationFailed, match="protocol mismatch"):
        await serving
    await a.close()


@pytest.mark.parametrize("side", ["client", "server"])
async def test_a_silent_peer_is_cut_off(side: str) -> None:
    a, b = memory_stream_pair()
    async with b:
        run = negotiate.client if side == "client" else negotiate.server
        with pytest.raises(PeerUnresponsive, match=r"did not finish within 0\.05 s"):
            await run(a, Offer("chat"), handshake_timeout=0.05)
        assert a.is_closing


async def test_a_peer_hanging_up_mid_negotiation() -> None:
    a, b = memory_stream_pair()

    async def read_hello_then_hang_up() -> None:
        await b.receive()
        await b.close()

    peer = asyncio.create_task(read_hello_then_hang_up())
    with pytest.raises(NegotiationFailed, match="closed the connection") as info:
        await negotiate.client(a, Offer("chat"))
    assert info.value.what == "closed"
    await peer


async def test_a_peer_speaking_something_else() -> None:
    a, b = memory_stream_pair()
    await a.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(DecodeError, match="does not speak netweave negotiation"):
        await negotiate.server(b, Offer("chat"))
    assert b.is_closing
    await a.close()


async def test_messages_sent_right_after_the_agreement_are_not_lost() -> None:
    """The server speaks first: its messages may arrive in the same read as the AGREE."""
    a, b = memory_stream_pair()
    client_task = asyncio.create_task(negotiate.client(a, Offer("chat")))
    server = await negotiate.server(b, Offer("chat"))
    for i in range(3):
        await server.send({"n": i})
    client = await client_task
    assert [await client.receive() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    await client.close()
    await server.close()


# ---------------------------------------------------------------------------
# Feature flags: the same scenario with and without each flag
# ---------------------------------------------------------------------------

FLAGS = ["receipts", "shout"]


async def chat_scenario(client_features: set[str], server_features: set[str]) -> list[Any]:
    """The client sends two lines; what comes back depends only on agreed features."""
    client, server = await pair(
        Offer("chat", features=client_features), Offer("chat", features=server_features)
    )

    async def serve_lines() -> None:
        async for line in server:
            text = line.upper() if server.has_feature("shout") else line
            if server.has_feature("receipts"):
                await server.send({"receipt": text})
            await server.send(text)

    serving = asyncio.create_task(serve_lines())
    replies: list[Any] = []
    async with client:
        for line in ("hi", "bye"):
            await client.send(line)
            if client.has_feature("receipts"):
                replies.append(await client.receive())
            replies.append(await client.receive())
        await client.send_eof()
        await serving
    await server.close()
    return replies


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("enabled", [True, False], ids=["with", "without"])
async def test_feature_flag_scenario(flag: str, enabled: bool) -> None:
    on_client = {flag} if enabled else set()
    replies = await chat_scenario(on_client, set(FLAGS))
    if flag == "receipts":
        expected: list[Any] = (
            [{"receipt": "hi"}, "hi", {"receipt": "bye"}, "bye"] if enabled else ["hi", "bye"]
        )
    else:
        expected = ["HI", "BYE"] if enabled else ["hi", "bye"]
    assert replies == expected


async def test_a_feature_only_one_side_offers_is_off() -> None:
    assert await chat_scenario({"shout"}, set()) == ["hi", "bye"]


# ---------------------------------------------------------------------------
# TLS upgrade
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client, server


async def test_tls_upgrade_when_both_agree(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    client_ctx, server_ctx = contexts
    client, server = await pair(
        Offer("chat", tls="optional", compression=["zlib"]),
        Offer("chat", tls="required", compression=["zlib"]),
        client_tls_context=client_ctx,
        client_server_hostname=HOST,
        server_tls_context=server_ctx,
    )
    async with client, server:
        assert client.agreement.tls
        assert isinstance(client.connection, TlsConnection)
        assert isinstance(server.connection, TlsConnection)
        assert client.peer_certificate is not None
        assert ("DNS", HOST) in client.peer_certificate["subjectAltName"]
        assert server.peer_certificate is None
        await client.send({"secret": "x" * 1000})
        assert await server.receive() == {"secret": "x" * 1000}
        await server.send("ok")
        assert await client.receive() == "ok"


async def test_no_tls_when_one_side_never_uses_it(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client_ctx, _ = contexts
    client, server = await pair(
        Offer("chat", tls="optional"),
        Offer("chat"),
        client_tls_context=client_ctx,
        client_server_hostname=HOST,
    )
    async with client, server:
        assert not client.agreement.tls
        assert not isinstance(client.connection, TlsConnection)
        assert client.peer_certificate is None


async def test_required_tls_against_never(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    _, server_ctx = contexts
    a, b = memory_stream_pair()
    results = await asyncio.gather(
        negotiate.client(a, Offer("chat")),
        negotiate.server(b, Offer("chat", tls="required"), tls_context=server_ctx),
        return_exceptions=True,
    )
    assert all(isinstance(result, NegotiationFailed) for result in results)
    assert {str(result) for result in results} == {
        "the server requires TLS, but the client does not offer it"
    }


async def test_tls_offer_needs_a_context_before_any_io() -> None:
    a, b = memory_stream_pair()
    with pytest.raises(UsageError, match="tls_context"):
        await negotiate.client(a, Offer("chat", tls="optional"))
    client_ctx = ssl.create_default_context()
    with pytest.raises(UsageError, match="server_hostname"):
        await negotiate.client(a, Offer("chat", tls="optional"), tls_context=client_ctx)
    assert not a.is_closing
    await a.send(b"still usable")
    assert await b.receive() == b"still usable"


# ---------------------------------------------------------------------------
# Checks before any I/O
# ---------------------------------------------------------------------------


async def test_unknown_names_fail_before_any_byte_is_sent() -> None:
    a, b = memory_stream_pair()
    with pytest.raises(InvalidStackSpec, match="nope"):
        await negotiate.client(a, Offer("chat", codecs=["json", "nope"]))
    with pytest.raises(InvalidStackSpec, match="frobnicate"):
        await negotiate.server(b, Offer("chat", codecs=["protobuf:frobnicate=1"]))
    await a.send(b"first")
    assert await b.receive() == b"first"


async def test_missing_extra_is_named_before_any_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    a, _ = memory_stream_pair()
    with pytest.raises(MissingDependency, match=r"netweave\[zstd\]"):
        await negotiate.client(a, Offer("chat", compression=["zstd", "none"]))


# ---------------------------------------------------------------------------
# URLs: negotiate.connect / negotiate.serve over TCP
# ---------------------------------------------------------------------------


async def test_connect_and_serve_over_tcp(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []

    async def handler(channel: NegotiatedChannel[Any]) -> None:
        seen.append(channel.agreement)
        async for message in channel:
            await channel.send({"echo": message, "v": channel.agreement.version})

    policy = Offer("echo", versions=[2, 1], compression=["lz4", "none"])
    async with negotiate.serve("tcp://127.0.0.1:0", policy, handler) as server:
        channel = await negotiate.connect(
            server.url, Offer("echo", versions=[1, 2], compression=["lz4"])
        )
        async with channel:
            assert channel.agreement.compression == "lz4"
            await channel.send("ping")
            assert await channel.receive() == {"echo": "ping", "v": 2}
        # A client that fails negotiation never reaches the handler.
        with caplog.at_level(logging.INFO, logger="netweave.negotiate"):
            with pytest.raises(NegotiationFailed, match="protocol mismatch"):
                await negotiate.connect(server.url, Offer("other"))
            for _ in range(100):
                if "negotiation with" in caplog.text:
                    break
                await asyncio.sleep(0)
        assert "protocol mismatch" in caplog.text
        assert len(seen) == 1


async def test_connect_refuses_datagram_urls() -> None:
    with pytest.raises(UsageError, match="byte stream"):
        await negotiate.connect("udp://127.0.0.1:9", Offer("x"))


async def test_negotiation_over_any_stream_connection() -> None:
    """The driver takes any StreamConnection, here one that delivers 1 byte per receive."""
    a, b = memory_stream_pair(chunks=[1])
    conns: tuple[StreamConnection, StreamConnection] = (a, b)
    client, server = await asyncio.gather(
        negotiate.client(conns[0], Offer("chat", compression=["zlib:threshold=0"])),
        negotiate.server(conns[1], Offer("chat", compression=["zlib"])),
    )
    async with client, server:
        await client.send("tiny")
        assert await server.receive() == "tiny"


def test_offer_from_a_stack_spec_with_alternatives() -> None:
    offer = negotiate.offer_from_spec(
        "chat", "lp4|varint, zstd:level=3|lz4|none, msgpack|json", versions=[2, 1]
    )
    assert offer == Offer(
        "chat",
        versions=[2, 1],
        framings=["lp4", "varint"],
        compression=["zstd:level=3", "lz4", "none"],
        codecs=["msgpack", "json"],
    )
    assert negotiate.offer_from_spec("chat", "line,text").compression == ("none",)
    with pytest.raises(InvalidStackSpec, match="nope"):
        negotiate.offer_from_spec("chat", "lp4,nope")
