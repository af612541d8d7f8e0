"""The interface between :class:`~netweave.sim.SimLoop` and the simulated network.

SimLoop's networking methods (``create_connection``, ``create_server``,
``create_datagram_endpoint``, ``getaddrinfo``, ``getnameinfo``) forward to the
loop's ``network``, an object with the methods below. The network reads the
calling host from :data:`netweave.sim._context.current_host` and schedules
its own events with the loop's ``call_at_ns`` and ``time_ns``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["NetworkBackend"]


class NetworkBackend(Protocol):
    """What the simulated network offers the loop (signatures mirror asyncio's)."""

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        *,
        local_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]: ...

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None,
        port: int,
        *,
        backlog: int = 100,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        start_serving: bool = True,
    ) -> asyncio.AbstractServer: ...

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        *,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]: ...

    def getaddrinfo(
        self,
        host: str | None,
        port: str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]]: ...

    def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]: ...
