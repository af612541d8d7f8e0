"""``tcp://host:port`` — TCP over the running loop (real sockets, or the simulator's).

Options: ``nodelay`` (default on), ``keepalive`` with ``keepalive_idle``,
``keepalive_interval`` and ``keepalive_count`` where the OS has them,
``connect_timeout`` (seconds, default 10), ``backlog`` (default 128),
``reuse_address`` (default on), ``write_high_water`` and ``read_high_water``
(bytes, default 256k each).

Everything goes through ``loop.create_connection`` / ``loop.create_server``,
so the same code runs on the simulator's loop. Socket options are set only
where a real socket exists.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar, final

from ..endpoints import Endpoint, Option, format_host_port
from ..errors import ConnectFailed, map_os_errors
from ..observe import Observer
from ._asyncio_stream import AsyncioStreamConnection
from ._listener import AsyncioListener
from .base import (
    DEFAULT_READ_HIGH_WATER,
    DEFAULT_WRITE_HIGH_WATER,
    Listener,
    StreamConnection,
    StreamTransport,
)

__all__ = ["TcpTransport"]

TCP_OPTIONS: dict[str, Option[Any]] = {
    "nodelay": Option.boolean(True, "disable Nagle's algorithm (TCP_NODELAY)"),
    "keepalive": Option.boolean(False, "send TCP keepalive probes on idle connections"),
    "keepalive_idle": Option.integer(None, "seconds idle before the first keepalive probe"),
    "keepalive_interval": Option.integer(None, "seconds between keepalive probes"),
    "keepalive_count": Option.integer(None, "unanswered probes before the connection drops"),
    "connect_timeout": Option.seconds(10.0, "seconds to wait for a connection to be made"),
    "backlog": Option.integer(128, "pending connections queued before refusing more"),
    "reuse_address": Option.boolean(True, "bind even if the port is in TIME_WAIT"),
    "write_high_water": Option.size(DEFAULT_WRITE_HIGH_WATER, "send() waits above this"),
    "read_high_water": Option.size(DEFAULT_READ_HIGH_WATER, "stop reading above this"),
}


def apply_socket_options(sock: socket.socket | None, endpoint: Endpoint) -> None:
    """Set nodelay and keepalive on a real TCP socket (no-op without one)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(endpoint.option("nodelay")))
    if not endpoint.option("keepalive"):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, const in (
        ("keepalive_idle", getattr(socket, "TCP_KEEPIDLE", None)),
        ("keepalive_interval", getattr(socket, "TCP_KEEPINTVL", None)),
        ("keepalive_count", getattr(socket, "TCP_KEEPCNT", None)),
    ):
        value = endpoint.option(name)
        if value is not None and const is not None:
            sock.setsockopt(socket.IPPROTO_TCP, const, value)


@final
class TcpTransport(StreamTransport):
    """TCP streams, IPv4 and IPv6."""

    scheme: ClassVar[str] = "tcp"
    options = TCP_OPTIONS

    async def connect(
        self, endpoint: Endpoint, *, observer: Observer | None = None
    ) -> StreamConnection:
        loop = asyncio.get_running_loop()
        target = endpoint.url or format_host_port(endpoint.host, endpoint.port)

        def factory() -> AsyncioStreamConnection:
            return AsyncioStreamConnection(
                scheme=self.scheme,
                role="client",
                observer=observer,
                write_high_water=endpoint.option("write_high_water"),
                read_high_water=endpoint.option("read_high_water"),
            )

        if endpoint.port == 0:
            raise ConnectFailed(f"cannot connect to {target}: port 0 is not a destination")
        timeout = endpoint.option("connect_timeout")
        try:
            with map_os_errors(during="connect", target=target):
                async with asyncio.timeout(timeout):
                    transport, conn = await loop.create_connection(
                        factory, endpoint.host, endpoint.port
                    )
        except TimeoutError:
            raise ConnectFailed(f"connecting to {target} timed out after {timeout} s") from None
        with map_os_errors(during="connect", target=target):
            apply_socket_options(transport.get_extra_info("socket"), endpoint)
        return conn

    async def listen(self, endpoint: Endpoint, *, observer: Observer | None = None) -> Listener:
        loop = asyncio.get_running_loop()
        listener = AsyncioListener(url=endpoint.url, backlog=endpoint.option("backlog"))

        def made(conn: AsyncioStreamConnection) -> None:
            apply_socket_options(conn.extra("socket"), endpoint)
            listener.offer(conn)

        def factory() -> AsyncioStreamConnection:
            return AsyncioStreamConnection(
                scheme=self.scheme,
                role="server",
                observer=observer,
                write_high_water=endpoint.option("write_high_water"),
                read_high_water=endpoint.option("read_high_water"),
                on_made=made,
            )

        target = format_host_port(endpoint.host, endpoint.port)
        with map_os_errors(during="listen", target=target):
            server = await loop.create_server(
                factory,
                endpoint.host,
                endpoint.port,
                backlog=endpoint.option("backlog"),
                reuse_address=endpoint.option("reuse_address"),
            )
        port = endpoint.port
        sockets = server.sockets
        if sockets:
            port = sockets[0].getsockname()[1]
        listener.attach(server, f"tcp://{format_host_port(endpoint.host, port)}")
        return listener
