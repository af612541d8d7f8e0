"""Opening simulated sockets: binding, port choice, and the three asyncio entry points.

Rules of this file: these functions check addresses and ports the way Linux
does and fail the way asyncio then fails (``OSError`` with EADDRINUSE or
EADDRNOTAVAIL and asyncio's "error while attempting to bind" text,
``socket.gaierror`` for unknown names, ``OverflowError`` for ports out of
range). A host may bind its own address, any 127.x address, or the wildcard.
Port 0 takes the host's next free ephemeral port.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._context import current_host
from ._datagram import SimDatagramTransport
from ._host import WILDCARD
from ._server import SimServer
from ._stream import open_stream

if TYPE_CHECKING:
    from ._host import Host
    from ._network import Network

__all__ = ["bind_address", "listen", "open_connection", "open_datagram"]

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def _check_port(port: int, call: str) -> int:
    port = int(port)
    if not 0 <= port <= 65535:
        raise OverflowError(f"{call}(): port must be 0-65535.")
    return port


def _in_use(ip: str, port: int) -> OSError:
    return OSError(
        errno.EADDRINUSE,
        f"error while attempting to bind on address {(ip, port)!r}: address already in use",
    )


def _overlaps(a: str, b: str) -> bool:
    return a == b or WILDCARD in (a, b)


def bind_address(network: Network, host: Host, address: str | None) -> str:
    """The address a socket of ``host`` binds for ``address`` (a name, an IP, empty or None)."""
    if address is None or address in ("", WILDCARD):
        return WILDCARD
    ip = network.resolve(address)
    if not host.bindable(ip):
        raise OSError(
            errno.EADDRNOTAVAIL,
            f"error while attempting to bind on address {address!r}: "
            "cannot assign requested address",
        )
    return ip


async def open_connection(
    network: Network,
    src: Host,
    protocol_factory: ProtocolFactory,
    host: str,
    port: int,
    local_addr: tuple[str, int] | None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Connect from ``src`` to ``host:port`` (see :func:`netweave.sim._stream.open_stream`)."""
    port = _check_port(port, "connect")
    dst_ip = network.resolve(host)
    if dst_ip == WILDCARD:
        dst_ip = "127.0.0.1"
    bound_ip, local_port = WILDCARD, 0
    if local_addr is not None:
        bound_ip = bind_address(network, src, local_addr[0])
        local_port = _check_port(local_addr[1], "bind")
        if local_port and src.tcp_port_in_use(local_port):
            raise _in_use(bound_ip, local_port)
    if not local_port:
        local_port = src.ephemeral_port(src.tcp_port_in_use)
    src_ip = network.source_ip(src, dst_ip) if bound_ip == WILDCARD else bound_ip
    return await open_stream(network, src, protocol_factory, (src_ip, local_port), (dst_ip, port))


def listen(
    network: Network,
    src: Host,
    protocol_factory: ProtocolFactory,
    host: str | Sequence[str] | None,
    port: int,
    backlog: int,
    start_serving: bool,
) -> SimServer:
    """A server on ``src`` listening on each address of ``host`` (all of them when None)."""
    port = _check_port(port, "bind")
    names = [host] if host is None or isinstance(host, str) else list(host)
    ips: list[str] = []
    for name in names:
        ip = bind_address(network, src, name)
        if ip not in ips:
            ips.append(ip)
    if port == 0:
        port = src.ephemeral_port(src.tcp_port_in_use)
    for ip in ips:
        for other in src.listeners.get(port, ()):
            if _overlaps(other.bound_ip, ip):
                raise _in_use(ip, port)
    server = SimServer(
        network,
        src,
        protocol_factory,
        [(ip, port) for ip in ips],
        backlog=backlog,
        serving=start_serving,
    )
    for listener in server.listeners:
        src.listeners.setdefault(port, []).append(listener)
    return server


def open_datagram(
    network: Network,
    src: Host,
    protocol_factory: ProtocolFactory,
    local_addr: tuple[str, int] | None,
    remote_addr: tuple[str, int] | None,
) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
    """A UDP socket on ``src``; ``connection_made`` has been called when this returns."""
    remote = None
    if remote_addr is not None:
        remote_ip = network.resolve(remote_addr[0])
        if remote_ip == WILDCARD:
            remote_ip = "127.0.0.1"
        remote = (remote_ip, _check_port(remote_addr[1], "connect"))
    ip, port = WILDCARD, 0
    if local_addr is not None:
        ip = bind_address(network, src, local_addr[0])
        port = _check_port(local_addr[1], "bind")
    if port == 0:
        port = src.ephemeral_port(lambda p: p in src.udp)
    for other in src.udp.get(port, ()):
        if _overlaps(other.bound_ip, ip):
            raise _in_use(ip, port)
    transport = SimDatagramTransport(network, src, (ip, port), remote)
    protocol = protocol_factory()
    transport.set_protocol(protocol)
    src.udp.setdefault(port, []).append(transport)
    token = current_host.set(src.name)
    try:
        protocol.connection_made(transport)
    finally:
        current_host.reset(token)
    return transport, protocol
