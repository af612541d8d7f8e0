"""Helpers shared by the ``quic://`` tests (this module holds no tests).

Certificates come from trustme, with RSA keys: their signatures have a fixed
size, so a simulated handshake sends the same packet sizes on every run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from netweave.endpoints import parse_endpoint
from netweave.transports import QuicListener, QuicStream, QuicTransport, StreamConnection

HOST = "quic.example"


@dataclass(frozen=True)
class Pem:
    """PEM files: a CA, a server certificate (for HOST, 127.0.0.1, ::1 and the
    simulator's host "server") and its key, and a CA nobody's certificate is from."""

    ca: str
    cert: str
    key: str
    other_ca: str

    def server(self, address: str = "127.0.0.1:0", options: str = "") -> str:
        return f"quic://{address}?cert={self.cert}&key={self.key}{options}"

    def client(self, url: str, options: str = "") -> str:
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}ca={self.ca}{options}"


@functools.cache
def _write_pem(directory: str) -> Pem:
    root = Path(directory)
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert(HOST, "127.0.0.1", "::1", "server", key_type=trustme.KeyType.RSA)
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    issued.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    issued.private_key_pem.write_to_path(str(root / "key.pem"))
    trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.write_to_path(str(root / "other.pem"))
    return Pem(
        str(root / "ca.pem"), str(root / "cert.pem"), str(root / "key.pem"), str(root / "other.pem")
    )


@pytest.fixture(scope="session")
def quic_pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    """The PEM files, made once per test session."""
    return _write_pem(str(tmp_path_factory.mktemp("quic-pem")))


class UsesPem:
    """Mix-in for test classes: ``self.pem`` is set before each test."""

    pem: Pem

    @pytest.fixture(autouse=True)
    def _use_pem(self, quic_pem: Pem) -> None:
        self.pem = quic_pem


async def listen(url: str) -> QuicListener:
    endpoint, transport = parse_endpoint(url)
    assert isinstance(transport, QuicTransport)
    listener = await transport.listen(endpoint)
    assert isinstance(listener, QuicListener)
    return listener


async def connect(url: str) -> QuicStream:
    endpoint, transport = parse_endpoint(url)
    assert isinstance(transport, QuicTransport)
    stream = await transport.connect(endpoint)
    assert isinstance(stream, QuicStream)
    return stream


async def quic_pair(
    pem: Pem, *, listen_options: str = "", connect_options: str = "", address: str = "127.0.0.1:0"
) -> tuple[StreamConnection, StreamConnection]:
    """Listen, connect, accept, close the listener: the first stream's two ends."""
    listener = await listen(pem.server(address, listen_options))
    try:
        client = await connect(pem.client(listener.url, connect_options))
        server = await listener.accept()
    finally:
        await listener.close()
    return client, server
