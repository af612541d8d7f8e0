"""Name resolution on the simulated network: host names, ``localhost`` and IPv4 literals.

Rules of this file: resolution never touches real DNS or ``/etc/services``;
errors are ``socket.gaierror`` with the codes a resolver would give, so code
that handles resolution failures on a real network handles them here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._host import WILDCARD, is_loopback

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["AddrInfo", "getaddrinfo", "getnameinfo", "resolve"]

#: One ``getaddrinfo`` result.
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]

_KINDS = ((socket.SOCK_STREAM, socket.IPPROTO_TCP), (socket.SOCK_DGRAM, socket.IPPROTO_UDP))


def resolve(hosts: Mapping[str, Host], name: str) -> str:
    """The IPv4 address of host ``name``, ``localhost`` or an address literal.

    Raises ``socket.gaierror`` (EAI_NONAME) for anything else.
    """
    host = hosts.get(name)
    if host is not None:
        return host.address
    if name == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None


def getaddrinfo(
    hosts: Mapping[str, Host],
    host: str | None,
    port: str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """``socket.getaddrinfo`` over the simulated hosts (IPv4 only).

    No host means the wildcard with ``AI_PASSIVE``, else loopback; a service
    must be a port number (names would need ``/etc/services``).
    """
    if family not in (0, socket.AF_INET):
        raise socket.gaierror(socket.EAI_FAMILY, "ai_family not supported")
    if host is None or host == "":
        address = WILDCARD if flags & socket.AI_PASSIVE else "127.0.0.1"
    else:
        address = resolve(hosts, host)
    if port is None:
        number = 0
    elif isinstance(port, int):
        number = port
    elif port.isdigit():
        number = int(port)
    else:
        raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype")
    kinds = [(k, p) for k, p in _KINDS if (not type or k == type) and (not proto or p == proto)]
    if not kinds:
        raise socket.gaierror(socket.EAI_SOCKTYPE, "ai_socktype not supported")
    return [(socket.AF_INET, kind, p, "", (address, number)) for kind, p in kinds]


def getnameinfo(
    by_address: Mapping[str, Host], sockaddr: tuple[Any, ...], flags: int = 0
) -> tuple[str, str]:
    """``socket.getnameinfo``: the host name (the address with NI_NUMERICHOST) and the port."""
    ip, port = str(sockaddr[0]), int(sockaddr[1])
    name = ip
    if not flags & socket.NI_NUMERICHOST:
        host = by_address.get(ip)
        if host is not None:
            name = host.name
        elif is_loopback(ip):
            name = "localhost"
        elif flags & socket.NI_NAMEREQD:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return name, str(port)
