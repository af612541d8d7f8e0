"""Write simulated traffic as a pcap file that Wireshark and tshark dissect.

Rules of this file:

* Classic pcap with nanosecond timestamps (magic ``0xa1b23c4d``), link type
  Ethernet. Each packet gets synthesised Ethernet, IPv4 and TCP/UDP/ICMP
  headers with correct checksums; MAC addresses are derived from the IPv4
  address (``02:00:`` + its four bytes; zeros on loopback).
* TCP sequence and acknowledgement numbers are the connection's own, modulo
  2**32, with its flags and SACK blocks; SYNs carry the MSS, SACK-permitted
  and a window-scale option (shift :data:`WINDOW_SHIFT`) so later windows,
  written scaled, read back exactly.
* A UDP datagram larger than the path MTU is written as the IP fragments it
  travels as (same IP id, MF flag, offsets in 8-byte units).
* Packets are captured as the sending host puts them on the wire: a packet a
  link later loses is in the file, a duplicate made by the link is not.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, final

from ._packet import ACK, ICMP, IP_HEADER, SYN, TCP, UDP, Packet

__all__ = ["WINDOW_SHIFT", "PcapWriter", "frames"]

#: Window-scale shift announced in every SYN (windows up to 8 MiB are exact to 128 bytes).
WINDOW_SHIFT: Final = 7
_MAGIC_NS: Final = 0xA1B23C4D
_LINKTYPE_ETHERNET: Final = 1
_ETHERTYPE_IPV4: Final = 0x0800
_DF: Final = 0x4000
_MF: Final = 0x2000
_TTL: Final = 64

_ip_header = struct.Struct("!BBHHHBBH4s4s")
_tcp_header = struct.Struct("!HHIIBBHHH")
_udp_header = struct.Struct("!HHHH")
_record = struct.Struct("<IIII")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip4(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))


def _mac(ip: bytes) -> bytes:
    return b"\0" * 6 if ip[0] == 127 else b"\x02\x00" + ip


def _ip(src: bytes, dst: bytes, proto: int, ident: int, frag: int, body_len: int) -> bytes:
    header = _ip_header.pack(0x45, 0, IP_HEADER + body_len, ident, frag, _TTL, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:]


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, proto, length)


def _tcp(packet: Packet, src: bytes, dst: bytes) -> bytes:
    flags = packet.flags
    if flags & SYN:
        # MSS (when known), SACK permitted, window scale; padded with NOPs to 4-byte words.
        options = struct.pack("!BBH", 2, 4, packet.mss) if packet.mss else b""
        options += b"\x01\x01\x04\x02" + b"\x01\x03\x03" + bytes([WINDOW_SHIFT])
        window = min(packet.window, 0xFFFF)
    else:
        options = b""
        if packet.sack:
            options = b"\x01\x01" + bytes([5, 2 + 8 * len(packet.sack)])
            for start, end in packet.sack:
                options += struct.pack("!II", start & 0xFFFFFFFF, end & 0xFFFFFFFF)
        window = min(packet.window >> WINDOW_SHIFT, 0xFFFF)
    offset = (20 + len(options)) // 4
    ack = packet.ack & 0xFFFFFFFF if flags & ACK else 0
    header = _tcp_header.pack(
        packet.src_port,
        packet.dst_port,
        packet.seq & 0xFFFFFFFF,
        ack,
        offset << 4,
        flags,
        window,
        0,
        0,
    )
    segment = header + options + packet.payload
    check = _checksum(_pseudo(src, dst, TCP, len(segment)) + segment)
    return segment[:16] + struct.pack("!H", check) + segment[18:]


def _udp(packet: Packet, src: bytes, dst: bytes) -> bytes:
    length = 8 + len(packet.payload)
    datagram = _udp_header.pack(packet.src_port, packet.dst_port, length, 0) + packet.payload
    check = _checksum(_pseudo(src, dst, UDP, length) + datagram) or 0xFFFF
    return datagram[:6] + struct.pack("!H", check) + datagram[8:]


def _icmp_unreachable(packet: Packet) -> bytes:
    inner = packet.inner
    assert inner is not None
    quoted = b"".join(frames(inner, mtu=1 << 20, ethernet=False))[: IP_HEADER + 8]
    message = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    return message[:2] + struct.pack("!H", _checksum(message)) + message[4:]


def frames(packet: Packet, *, mtu: int = 1500, ethernet: bool = True) -> list[bytes]:
    """The frames ``packet`` travels as (several for a fragmented UDP datagram)."""
    src, dst = _ip4(packet.src_ip), _ip4(packet.dst_ip)
    link = _mac(dst) + _mac(src) + struct.pack("!H", _ETHERTYPE_IPV4) if ethernet else b""
    proto = packet.proto
    ident = packet.ip_id
    if proto == TCP:
        body = _tcp(packet, src, dst)
        return [link + _ip(src, dst, TCP, ident, _DF, len(body)) + body]
    if proto == ICMP:
        body = _icmp_unreachable(packet)
        return [link + _ip(src, dst, ICMP, ident, 0, len(body)) + body]
    body = _udp(packet, src, dst)
    per = (mtu - IP_HEADER) // 8 * 8
    if IP_HEADER + len(body) <= mtu or per <= 0:
        return [link + _ip(src, dst, UDP, ident, 0, len(body)) + body]
    out = []
    for start in range(0, len(body), per):
        piece = body[start : start + per]
        more = _MF if start + per < len(body) else 0
        out.append(link + _ip(src, dst, UDP, ident, more | (start // 8), len(piece)) + piece)
    return out


@final
class PcapWriter:
    """A packet tap that writes each packet to a pcap file.

    ``target`` is a path (created or truncated, closed by :meth:`close`) or a
    binary file object (left open). Use it as a context manager or call
    :meth:`close`; :attr:`count` is the number of frames written.
    """

    def __init__(self, target: str | Path | BinaryIO, *, snaplen: int = 262144) -> None:
        if isinstance(target, str | Path):
            self._file: BinaryIO = open(target, "wb")  # noqa: SIM115 (closed by close())
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self._snaplen = snaplen
        self._closed = False
        self.count = 0
        self._file.write(
            struct.pack("<IHHiIII", _MAGIC_NS, 2, 4, 0, 0, snaplen, _LINKTYPE_ETHERNET)
        )

    def __call__(self, packet: Packet, time_ns: int, mtu: int = 1500) -> None:
        """Write ``packet``, sent at virtual ``time_ns`` over a path of ``mtu`` bytes."""
        if self._closed:
            return
        seconds, nanos = divmod(time_ns, 1_000_000_000)
        write = self._file.write
        for frame in frames(packet, mtu=mtu):
            kept = frame[: self._snaplen]
            write(_record.pack(seconds, nanos, len(kept), len(frame)))
            write(kept)
            self.count += 1

    def close(self) -> None:
        """Flush, and close the file if this writer opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._file.flush()
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
