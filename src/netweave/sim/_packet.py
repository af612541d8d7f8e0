"""One IPv4 packet on the simulated network: a TCP segment, a UDP datagram or an ICMP error.

Rules of this file: a :class:`Packet` is a mutable slotted record, created once
per transmission and never copied except to duplicate it on a link. Sequence
numbers are unbounded Python integers (both ends of a connection agree on
them); the pcap writer reduces them modulo 2**32. ``size`` is the payload
length; :attr:`Packet.wire_size` adds the IPv4 and transport headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from random import Random

__all__ = [
    "ACK",
    "FIN",
    "ICMP",
    "IP_HEADER",
    "PROTO_NAMES",
    "PSH",
    "Packet",
    "RST",
    "SYN",
    "TCP",
    "TCP_HEADER",
    "UDP",
    "UDP_HEADER",
    "flag_text",
]

#: IP protocol numbers.
ICMP: Final = 1
TCP: Final = 6
UDP: Final = 17

#: TCP flag bits (as in the TCP header).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10

IP_HEADER: Final = 20
TCP_HEADER: Final = 20
UDP_HEADER: Final = 8
ICMP_HEADER: Final = 8

#: Protocol names by IP protocol number.
PROTO_NAMES: Final = {TCP: "tcp", UDP: "udp", ICMP: "icmp"}
_FLAG_LETTERS: Final = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "A"))
_FLAG_BITS: Final = SYN | FIN | RST | PSH | ACK
_FLAG_TEXTS: Final = tuple(
    "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit) for flags in range(32)
)


def flag_text(flags: int) -> str:
    """TCP flags as letters in a fixed order (``"SA"``, ``"PA"``, ``"FA"``, ``"R"``)."""
    return _FLAG_TEXTS[flags & _FLAG_BITS]


@final
class Packet:
    """A packet in flight.

    ``src_host``/``dst_host`` are host names (``dst_host`` is ``""`` when no host
    has the destination address). For TCP, ``seq``/``ack``/``flags``/``window``
    are the segment's header fields (``window`` in bytes, unscaled; ``mss`` is
    the MSS option of a SYN, 0 otherwise; ``sack`` the SACK blocks of an
    ACK as ``(start, end)`` pairs). For
    ICMP (port unreachable), ``inner`` is the offending packet. ``corrupted``
    is set when a link damaged a segment; the receiver's checksum then
    discards it.
    """

    __slots__ = (
        "ack",
        "corrupted",
        "dst_host",
        "dst_ip",
        "dst_port",
        "flags",
        "inner",
        "ip_id",
        "mss",
        "payload",
        "proto",
        "sack",
        "seq",
        "src_host",
        "src_ip",
        "src_port",
        "window",
    )

    def __init__(
        self,
        proto: int,
        src_host: str,
        src_ip: str,
        src_port: int,
        dst_ip: str,
        dst_port: int,
        payload: bytes = b"",
        seq: int = 0,
        ack: int = 0,
        flags: int = 0,
        window: int = 0,
        inner: Packet | None = None,
    ) -> None:
        self.proto = proto
        self.src_host = src_host
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_host = ""
        self.dst_ip = dst_ip
        self.dst_port = dst_port
        self.payload = payload
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.inner = inner
        self.ip_id = 0
        self.mss = 0
        self.sack: tuple[tuple[int, int], ...] = ()
        self.corrupted = False

    @property
    def size(self) -> int:
        """Payload bytes."""
        return len(self.payload)

    @property
    def wire_size(self) -> int:
        """Bytes on the wire: IPv4 header, transport header and payload (no Ethernet)."""
        if self.proto == TCP:
            return IP_HEADER + TCP_HEADER + len(self.payload)
        if self.proto == UDP:
            return IP_HEADER + UDP_HEADER + len(self.payload)
        # ICMP errors quote the offending packet's IP header and first 8 bytes.
        return IP_HEADER + ICMP_HEADER + IP_HEADER + 8

    @property
    def seq_space(self) -> int:
        """Sequence numbers a TCP segment occupies: payload, plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    @property
    def proto_name(self) -> str:
        """``"tcp"``, ``"udp"`` or ``"icmp"``."""
        return PROTO_NAMES.get(self.proto) or str(self.proto)

    def reset_reply(self) -> Packet | None:
        """The RST the destination answers this TCP segment with when no connection owns
        it (RFC 793's reset generation); ``None`` for a RST, which is never answered."""
        if self.flags & RST:
            return None
        if self.flags & ACK:
            seq, ack, flags = self.ack, 0, RST
        else:
            seq, ack, flags = 0, self.seq + self.seq_space, RST | ACK
        return Packet(
            TCP,
            self.dst_host,
            self.dst_ip,
            self.dst_port,
            self.src_ip,
            self.src_port,
            seq=seq,
            ack=ack,
            flags=flags,
        )

    def damage(self, rng: Random) -> None:
        """Flip one bit, as a noisy link would (one draw from ``rng``).

        A datagram with a payload arrives damaged; anything else is marked
        ``corrupted`` and discarded by the receiver, as its checksum would.
        """
        payload = self.payload
        if self.proto != UDP or not payload:
            self.corrupted = True
            return
        bit = rng.randrange(len(payload) * 8)
        damaged = bytearray(payload)
        damaged[bit >> 3] ^= 1 << (bit & 7)
        self.payload = bytes(damaged)

    def copy(self) -> Packet:
        """An independent copy (a duplicate made by a link)."""
        twin = Packet(
            self.proto,
            self.src_host,
            self.src_ip,
            self.src_port,
            self.dst_ip,
            self.dst_port,
            self.payload,
            self.seq,
            self.ack,
            self.flags,
            self.window,
            self.inner,
        )
        twin.dst_host = self.dst_host
        twin.ip_id = self.ip_id
        twin.mss = self.mss
        twin.sack = self.sack
        twin.corrupted = self.corrupted
        return twin

    def __repr__(self) -> str:
        head = f"{self.proto_name} {self.src_ip}:{self.src_port}->{self.dst_ip}:{self.dst_port}"
        if self.proto == TCP:
            head += f" [{flag_text(self.flags)}] seq={self.seq} ack={self.ack} win={self.window}"
        return f"<Packet {head} len={len(self.payload)}>"
