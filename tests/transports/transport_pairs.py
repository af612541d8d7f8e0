"""Helpers for transport tests: open a connected pair through a real listener."""

from __future__ import annotations

import socket

from netweave.endpoints import parse_endpoint
from netweave.transports import (
    DatagramEndpoint,
    DatagramTransport,
    StreamConnection,
    StreamTransport,
)


async def open_stream_pair(
    listen_url: str, connect_url: str | None = None
) -> tuple[StreamConnection, StreamConnection]:
    """Listen on ``listen_url``, connect (to ``connect_url`` or the listener's URL), accept.

    The listener is closed before returning; the two connections stay open.
    """
    endpoint, transport = parse_endpoint(listen_url)
    assert isinstance(transport, StreamTransport)
    listener = await transport.listen(endpoint)
    try:
        target, connector = parse_endpoint(connect_url or listener.url)
        assert isinstance(connector, StreamTransport)
        client = await connector.connect(target)
        server = await listener.accept()
    finally:
        await listener.close()
    return client, server


async def open_datagram_pair(
    bind_url: str, options: str = ""
) -> tuple[DatagramEndpoint, DatagramEndpoint]:
    """Bind on ``bind_url`` and connect an endpoint to it: ``(client, server)``."""
    endpoint, transport = parse_endpoint(bind_url)
    assert isinstance(transport, DatagramTransport)
    server = await transport.bind(endpoint)
    target, _ = parse_endpoint(server.url + options)
    client = await transport.connect(target)
    return client, server


def has_ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound on this machine."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
