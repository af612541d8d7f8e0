"""``tcp://host:port`` — TCP over the running loop (real sockets, or the simulator's).

Options: ``nodelay`` (default on), ``keepalive`` with ``keepalive_idle``,
``keepalive_interval`` and ``keepalive_count`` where the OS has them,
``connect_timeout`` (seconds, default 10), ``backlog`` (default 128),
``reuse_address`` (default on), ``write_high_water`` and ``read_high_water``
(bytes, default 256k each). IPv4 and IPv6 (``tcp://[::1]:9000``).

Everything goes through ``loop.create_connection`` / ``loop.create_server``,
so the same code runs on the simulator's loop. Socket options are set only
where a real socket exists, on both the connecting and the accepted side.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar, Final, final

from ..endpoints import Endpoint, Option, format_host_port
from ..errors import ConnectFailed
from ._asyncio_stream import AsyncioStreamConnection
from ._listener import STREAM_OPTIONS, AsyncioStreamTransport, ConnectionFactory, parse_count

__all__ = ["TCP_OPTIONS", "TcpTransport", "apply_socket_options"]

TCP_OPTIONS: Final[dict[str, Option[Any]]] = {
    "nodelay": Option.boolean(True, "disable Nagle's algorithm (TCP_NODELAY)"),
    "keepalive": Option.boolean(False, "send TCP keepalive probes on idle connections"),
    "keepalive_idle": Option(parse_count, None, "seconds idle before the first keepalive probe"),
    "keepalive_interval": Option(parse_count, None, "seconds between keepalive probes"),
    "keepalive_count": Option(parse_count, None, "unanswered probes before the connection drops"),
    "reuse_address": Option.boolean(True, "bind even if the port is in TIME_WAIT"),
    **STREAM_OPTIONS,
}

_KEEPALIVE_KNOBS: Final = (
    ("keepalive_idle", getattr(socket, "TCP_KEEPIDLE", None)),
    ("keepalive_interval", getattr(socket, "TCP_KEEPINTVL", None)),
    ("keepalive_count", getattr(socket, "TCP_KEEPCNT", None)),
)


def apply_socket_options(sock: Any, endpoint: Endpoint) -> None:
    """Set nodelay and keepalive on a real TCP socket (no-op without one).

    ``keepalive_idle``/``_interval``/``_count`` turn keepalive on by themselves
    and are skipped where the OS lacks them. Raises ``OSError`` if the OS refuses.
    """
    if sock is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(endpoint.option("nodelay")))
    knobs = [(const, endpoint.option(name)) for name, const in _KEEPALIVE_KNOBS]
    if not endpoint.option("keepalive") and all(value is None for _, value in knobs):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for const, value in knobs:
        if value is not None and const is not None:
            sock.setsockopt(socket.IPPROTO_TCP, const, value)


@final
class TcpTransport(AsyncioStreamTransport):
    """TCP streams, IPv4 and IPv6."""

    scheme: ClassVar[str] = "tcp"
    options = TCP_OPTIONS

    async def _open(
        self, factory: ConnectionFactory, endpoint: Endpoint
    ) -> tuple[asyncio.BaseTransport, AsyncioStreamConnection]:
        if endpoint.port == 0:
            raise ConnectFailed(
                f"cannot connect to {endpoint.url or endpoint.address}: port 0 is not a "
                f"destination (0 means 'any free port' only when listening)"
            )
        return await asyncio.get_running_loop().create_connection(
            factory, endpoint.host, endpoint.port
        )

    async def _serve(
        self, factory: ConnectionFactory, endpoint: Endpoint
    ) -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_server(
            factory,
            endpoint.host,
            endpoint.port,
            backlog=endpoint.option("backlog"),
            reuse_address=endpoint.option("reuse_address"),
        )

    def _url_of(self, server: asyncio.AbstractServer, endpoint: Endpoint) -> str:
        port = endpoint.port
        sockets = getattr(server, "sockets", None)  # a simulated server may have none
        if sockets:
            port = sockets[0].getsockname()[1]
        return f"tcp://{format_host_port(endpoint.host, port)}"

    def _configure(self, connection: AsyncioStreamConnection, endpoint: Endpoint) -> None:
        apply_socket_options(connection.extra("socket"), endpoint)
