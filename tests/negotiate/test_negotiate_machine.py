"""The sans-IO handshake machines, driven by hand like a protocol trace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netweave.errors import DecodeError, FrameTooLarge, NegotiationFailed, UsageError
from netweave.negotiate import (
    MAX_BODY,
    ClientHandshake,
    Handshake,
    MessageType,
    Offer,
    ServerHandshake,
    encode_hello,
    encode_refuse,
    encode_retry,
    read_message,
)


def exchange(client: Handshake, server: Handshake, *, bytewise: bool = False) -> list[bytes]:
    """Pass bytes both ways until both stop; return every message sent, in order."""
    trace: list[bytes] = []
    for _ in range(10):
        moved = False
        for sender, receiver in ((client, server), (server, client)):
            data = sender.data_to_send()
            if not data:
                continue
            moved = True
            trace.append(data)
            if receiver.state != "running":
                continue
            pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
            for piece in pieces:
                if receiver.state == "running":
                    receiver.receive_data(piece)
        if not moved:
            break
    return trace


def kinds(trace: list[bytes]) -> list[tuple[int, str]]:
    out = []
    for sent in trace:
        rest = sent
        while rest:
            parsed = read_message(rest)
            assert parsed is not None
            message, used = parsed
            out.append((message.version, message.type.name))
            rest = rest[used:]
    return out


@pytest.mark.parametrize("bytewise", [False, True])
def test_agreement_in_one_round_trip(bytewise: bool) -> None:
    client = ClientHandshake(Offer("chat", codecs=["cbor", "json"]))
    server = ServerHandshake(Offer("chat", codecs=["json", "cbor"]))
    trace = exchange(client, server, bytewise=bytewise)
    assert kinds(trace) == [(2, "HELLO"), (2, "AGREE")]
    assert client.state == server.state == "agreed"
    assert client.agreement == server.agreement
    assert client.agreement is not None
    assert client.agreement.codec == "json"
    assert client.leftover == server.leftover == b""
    assert client.buffered == server.buffered == 0


def test_old_server_gets_a_retry_then_agrees_in_version_1() -> None:
    client = ClientHandshake(Offer("chat"))
    server = ServerHandshake(Offer("chat", wire_versions=[1]))
    trace = exchange(client, server)
    assert kinds(trace) == [(2, "HELLO"), (1, "RETRY"), (1, "HELLO"), (1, "AGREE")]
    assert client.agreement == server.agreement
    assert client.agreement is not None
    assert client.agreement.wire_version == 1
    assert client.wire_version == 1


def test_new_only_server_and_old_client_fail_on_both_sides_alike() -> None:
    client = ClientHandshake(Offer("chat", wire_versions=[1]))
    server = ServerHandshake(Offer("chat", wire_versions=[2]))
    trace = exchange(client, server)
    assert kinds(trace) == [(1, "HELLO"), (2, "RETRY"), (2, "REFUSE")]
    assert client.state == server.state == "failed"
    assert isinstance(client.error, NegotiationFailed)
    assert isinstance(server.error, NegotiationFailed)
    assert (
        client.error.reason
        == server.error.reason
        == ("no common hello wire version: the client speaks 1; the server speaks 2")
    )
    assert (client.error.side, server.error.side) == ("local", "remote")
    assert client.error.what == server.error.what == "wire"


def test_server_refusal_reaches_the_client_word_for_word() -> None:
    client = ClientHandshake(Offer("chat", codecs=["cbor"]))
    server = ServerHandshake(Offer("chat", codecs=["json"]))
    trace = exchange(client, server)
    assert kinds(trace) == [(2, "HELLO"), (2, "REFUSE")]
    assert isinstance(client.error, NegotiationFailed)
    assert isinstance(server.error, NegotiationFailed)
    assert client.error.reason == server.error.reason
    assert client.error.what == server.error.what == "codec"
    assert (client.error.side, server.error.side) == ("remote", "local")


def test_client_refuses_a_version_that_cannot_carry_its_requirements() -> None:
    client = ClientHandshake(Offer("chat", required_features={"receipts"}))
    server = ServerHandshake(Offer("chat", wire_versions=[1]))
    trace = exchange(client, server)
    assert kinds(trace) == [(2, "HELLO"), (1, "RETRY"), (1, "REFUSE")]
    assert isinstance(client.error, NegotiationFailed)
    assert isinstance(server.error, NegotiationFailed)
    assert client.error.reason == server.error.reason
    assert "hello wire version 1 carries no feature flags" in client.error.reason


def test_bytes_after_the_agreement_are_handed_over() -> None:
    client = ClientHandshake(Offer("chat"))
    server = ServerHandshake(Offer("chat"))
    hello = client.data_to_send()
    server.receive_data(hello + b"\x00\x00\x00\x01x")  # a pipelined first frame
    assert server.state == "agreed"
    assert server.leftover == b"\x00\x00\x00\x01x"
    client.receive_data(server.data_to_send() + b"early reply")
    assert client.state == "agreed"
    assert client.leftover == b"early reply"


def test_malformed_hello_is_refused_with_a_reason() -> None:
    server = ServerHandshake(Offer("chat"))
    bad = bytearray(encode_hello(Offer("chat").hello(2), 2))
    bad[9] = 0x7F  # the protocol field's length now runs past the body
    server.receive_data(bytes(bad))
    assert server.state == "failed"
    assert isinstance(server.error, DecodeError)
    answer = server.data_to_send()
    client = ClientHandshake(Offer("chat"))
    client.data_to_send()
    client.receive_data(answer)
    assert isinstance(client.error, NegotiationFailed)
    assert client.error.what == "malformed"
    assert "runs past" in client.error.reason


def test_a_peer_that_is_not_netweave_gets_no_answer() -> None:
    server = ServerHandshake(Offer("chat"))
    server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(server.error, DecodeError)
    assert server.data_to_send() == b""


def test_oversized_message_is_refused_from_its_header() -> None:
    server = ServerHandshake(Offer("chat"))
    server.receive_data(b"NWHS\x02\x01\xff\xff")
    assert isinstance(server.error, FrameTooLarge)
    assert server.buffered == 0


@pytest.mark.parametrize(
    ("machine", "message", "text"),
    [
        ("client", encode_hello(Offer("x").hello(2), 2), "unexpected HELLO from the server"),
        ("server", encode_retry(2, (1,)), "unexpected RETRY from the client"),
        (
            "server",
            encode_hello(Offer("x").hello(2), 2, MessageType.AGREE),
            "unexpected AGREE from the client",
        ),
    ],
)
def test_unexpected_messages(machine: str, message: bytes, text: str) -> None:
    handshake: Handshake = (
        ClientHandshake(Offer("x")) if machine == "client" else ServerHandshake(Offer("x"))
    )
    handshake.data_to_send()
    handshake.receive_data(message)
    assert isinstance(handshake.error, DecodeError)
    assert text in str(handshake.error)


def test_only_one_retry() -> None:
    client = ClientHandshake(Offer("x"))
    client.data_to_send()
    client.receive_data(encode_retry(1, (1,)))
    assert client.state == "running"
    client.data_to_send()
    client.receive_data(encode_retry(1, (1,)))
    assert isinstance(client.error, DecodeError)
    server = ServerHandshake(Offer("x", wire_versions=[1]))
    server.receive_data(encode_hello(Offer("x").hello(2), 2))
    server.data_to_send()
    server.receive_data(encode_hello(Offer("x").hello(2), 2))
    assert isinstance(server.error, DecodeError)


def test_agree_in_another_wire_version_is_refused() -> None:
    client = ClientHandshake(Offer("x"))
    client.data_to_send()
    client.receive_data(encode_hello(Offer("x").hello(1), 1, MessageType.AGREE))
    assert isinstance(client.error, DecodeError)


def test_peer_hanging_up() -> None:
    for machine in (ClientHandshake(Offer("x")), ServerHandshake(Offer("x"))):
        machine.end_of_input()
        assert isinstance(machine.error, NegotiationFailed)
        assert machine.error.what == "closed"
        assert machine.error.side == "remote"
        with pytest.raises(UsageError):
            machine.receive_data(b"more")


def test_refuse_from_the_client_after_retry() -> None:
    server = ServerHandshake(Offer("x", wire_versions=[1]))
    server.receive_data(encode_hello(Offer("x").hello(2), 2))
    server.receive_data(encode_refuse(1, "tls", "the client requires TLS, but ..."))
    assert isinstance(server.error, NegotiationFailed)
    assert server.error.what == "tls"
    assert server.error.side == "remote"


@settings(max_examples=300)
@given(
    data=st.binary(max_size=400),
    chunk=st.integers(1, 64),
    side=st.sampled_from(["client", "server"]),
)
def test_fuzz_machines_never_raise(data: bytes, chunk: int, side: str) -> None:
    """Whatever the peer sends, a machine ends agreed, failed with a protocol or
    negotiation error, or still waiting, holding at most one message."""
    machine: Handshake = (
        ClientHandshake(Offer("x")) if side == "client" else ServerHandshake(Offer("x"))
    )
    machine.data_to_send()
    for start in range(0, len(data), chunk):
        if machine.state != "running":
            break
        machine.receive_data(data[start : start + chunk])
        assert machine.buffered <= 8 + MAX_BODY
    if machine.state == "failed":
        assert isinstance(machine.error, (NegotiationFailed, DecodeError, FrameTooLarge))


@settings(max_examples=300)
@given(index=st.integers(0, 10_000), mask=st.integers(1, 255))
def test_fuzz_mutated_exchange(index: int, mask: int) -> None:
    """A one-byte mutation of the client's HELLO: the server agrees or fails cleanly."""
    client = ClientHandshake(Offer("chat", codecs=["json", "cbor"], features={"a"}))
    server = ServerHandshake(Offer("chat", codecs=["cbor"], features={"a"}))
    hello = bytearray(client.data_to_send())
    hello[index % len(hello)] ^= mask
    server.receive_data(bytes(hello))
    if server.state == "failed":
        assert isinstance(server.error, (NegotiationFailed, DecodeError, FrameTooLarge))
    answer = server.data_to_send()
    if answer and server.state != "running":
        client.receive_data(answer)
        # Still running only after a RETRY, and then with a new HELLO to send.
        assert client.state != "running" or client.data_to_send()
