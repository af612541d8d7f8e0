"""Typed trace events of the simulated network.

Rules of this file: every event carries the virtual time ``time_ns`` at which it
happened, so a trace is self-contained (it does not need the observer to stamp
it). Addresses are ``"ip:port"`` text, hosts are host names (``""`` when no
host owns the destination address). ``size`` is the payload length in bytes.
Fields are plain ``str``/``int`` so the canonical JSON form is stable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..observe import Event

__all__ = [
    "Healed",
    "HostCrashed",
    "HostRestarted",
    "NetEvent",
    "PacketCorrupted",
    "PacketDelivered",
    "PacketDropped",
    "PacketDuplicated",
    "PacketEvent",
    "PacketReordered",
    "PacketSent",
    "Partitioned",
    "StreamConnect",
]


@dataclass(frozen=True, slots=True)
class NetEvent(Event):
    """Base of every simulator event: ``time_ns`` is the virtual time in nanoseconds."""

    time_ns: int


@dataclass(frozen=True, slots=True)
class PacketEvent(NetEvent):
    """Base of the per-packet events. ``flags`` are TCP flag letters (``"SA"``), else ``""``;
    ``seq`` is the TCP sequence number (0 for other protocols)."""

    proto: str
    src_host: str
    src: str
    dst_host: str
    dst: str
    size: int
    flags: str
    seq: int


@dataclass(frozen=True, slots=True)
class PacketSent(PacketEvent):
    """A host put a packet on a link."""


@dataclass(frozen=True, slots=True)
class PacketDelivered(PacketEvent):
    """A packet reached its destination host."""


@dataclass(frozen=True, slots=True)
class PacketDropped(PacketEvent):
    """A packet was lost. ``reason``: ``loss``, ``queue`` (tail drop), ``partition``,
    ``rule``, ``mtu``, ``no-route`` (nobody has the address), ``host-down``,
    ``checksum`` (a corrupted TCP segment), ``no-socket`` (a datagram to a closed port)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PacketDuplicated(PacketEvent):
    """A link delivers this packet twice."""


@dataclass(frozen=True, slots=True)
class PacketReordered(PacketEvent):
    """A link holds this packet back so that later packets overtake it."""


@dataclass(frozen=True, slots=True)
class PacketCorrupted(PacketEvent):
    """A link flipped a bit in this packet."""


@dataclass(frozen=True, slots=True)
class StreamConnect(NetEvent):
    """A TCP connection attempt from ``src_host`` ended: ``outcome`` is ``connected``,
    ``refused`` or ``timeout``."""

    src_host: str
    src: str
    dst: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Partitioned(NetEvent):
    """Packets from ``src_host`` to ``dst_host`` are cut off from now on."""

    src_host: str
    dst_host: str


@dataclass(frozen=True, slots=True)
class Healed(NetEvent):
    """A partition from ``src_host`` to ``dst_host`` was lifted."""

    src_host: str
    dst_host: str


@dataclass(frozen=True, slots=True)
class HostCrashed(NetEvent):
    """``host`` crashed: its sockets are gone and packets to it are lost."""

    host: str


@dataclass(frozen=True, slots=True)
class HostRestarted(NetEvent):
    """``host`` is up again; ``epoch`` counts its crashes so far."""

    host: str
    epoch: int
