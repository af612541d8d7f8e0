"""The pcap writer: synthesised headers with valid checksums, fragments, and tshark's verdict."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from netkit import World

from netweave.sim._faults import Match, Rule
from netweave.sim._packet import ACK, FIN, ICMP, PSH, SYN, TCP, UDP, Packet
from netweave.sim._pcap import WINDOW_SHIFT, PcapWriter, frames

TSHARK = shutil.which("tshark") or ("/usr/bin/tshark" if Path("/usr/bin/tshark").exists() else None)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def split(frame: bytes) -> tuple[bytes, bytes, bytes]:
    """(ethernet, ip header, ip payload) of one frame."""
    ethernet, rest = frame[:14], frame[14:]
    assert ethernet[12:14] == b"\x08\x00"
    ihl = (rest[0] & 0x0F) * 4
    total = struct.unpack("!H", rest[2:4])[0]
    assert total == len(rest)
    return ethernet, rest[:ihl], rest[ihl:total]


def transport_checksum_ok(ip: bytes, body: bytes, proto: int) -> bool:
    pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(body))
    return checksum(pseudo + body) == 0xFFFF


def test_tcp_segment_headers_and_checksums() -> None:
    syn = Packet(
        TCP, "a", "10.0.0.1", 40000, "10.0.0.2", 80, seq=2**32 + 5, flags=SYN, window=65535
    )
    syn.mss = 1460
    data = Packet(
        TCP,
        "a",
        "10.0.0.1",
        40000,
        "10.0.0.2",
        80,
        b"hello",
        seq=2**33 + 7,
        ack=123,
        flags=PSH | ACK,
        window=65536,
    )
    (syn_frame,) = frames(syn)
    ethernet, ip, body = split(syn_frame)
    assert ethernet[:6] == b"\x02\x00\x0a\x00\x00\x02"
    assert checksum(ip) == 0xFFFF
    assert ip[9] == TCP
    assert transport_checksum_ok(ip, body, TCP)
    sport, dport, seq, ack, offset, flags, window = struct.unpack("!HHIIBBH", body[:16])
    assert (sport, dport, seq, ack, flags, window) == (40000, 80, 5, 0, SYN, 65535)
    options = body[20 : (offset >> 4) * 4]
    assert options == bytes([2, 4, 0x05, 0xB4, 1, 1, 4, 2, 1, 3, 3, WINDOW_SHIFT])
    (data_frame,) = frames(data)
    _, ip, body = split(data_frame)
    assert transport_checksum_ok(ip, body, TCP)
    seq, ack = struct.unpack("!II", body[4:12])
    assert (seq, ack) == (7, 123)
    assert struct.unpack("!H", body[14:16])[0] == 65536 >> WINDOW_SHIFT
    assert body[20:] == b"hello"
    data.sack = ((2**32 + 10, 2**32 + 20),)
    (sack_frame,) = frames(data)
    _, ip, body = split(sack_frame)
    assert transport_checksum_ok(ip, body, TCP)
    assert body[12] >> 4 == 8  # 20 + 12 bytes of options
    assert body[20:32] == bytes([1, 1, 5, 10]) + struct.pack("!II", 10, 20)
    assert body[32:] == b"hello"


def test_udp_fragments_reassemble_to_the_datagram() -> None:
    payload = bytes(range(256)) * 10
    packet = Packet(UDP, "a", "10.0.0.1", 5000, "10.0.0.2", 6000, payload)
    packet.ip_id = 77
    pieces = frames(packet, mtu=576)
    assert len(pieces) == 5
    body = b""
    for index, frame in enumerate(pieces):
        _, ip, data = split(frame)
        assert checksum(ip) == 0xFFFF
        ident, frag = struct.unpack("!HH", ip[4:8])
        assert ident == 77
        assert (frag & 0x1FFF) * 8 == len(body)
        assert bool(frag & 0x2000) == (index < len(pieces) - 1)
        assert len(ip) + len(data) <= 576
        body += data
    assert transport_checksum_ok(split(pieces[0])[1], body, UDP)
    assert body[8:] == payload


def test_icmp_port_unreachable_quotes_the_datagram() -> None:
    inner = Packet(UDP, "a", "10.0.0.1", 5000, "10.0.0.2", 6000, b"x" * 40)
    icmp = Packet(ICMP, "b", "10.0.0.2", 0, "10.0.0.1", 0, inner=inner)
    (frame,) = frames(icmp)
    _, ip, body = split(frame)
    assert ip[9] == ICMP
    assert body[:2] == b"\x03\x03"
    assert checksum(body) == 0xFFFF
    quoted_ip = body[8:28]
    assert quoted_ip[12:20] == bytes([10, 0, 0, 1, 10, 0, 0, 2])
    assert struct.unpack("!HH", body[28:32]) == (5000, 6000)


def test_writer_file_format() -> None:
    buffer = io.BytesIO()
    with PcapWriter(buffer) as writer:
        writer(Packet(UDP, "a", "10.0.0.1", 1, "10.0.0.2", 2, b"abc"), 3_000_000_123)
        writer(Packet(TCP, "a", "127.0.0.1", 1, "127.0.0.1", 2, flags=FIN | ACK), 4_000_000_000)
    raw = buffer.getvalue()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert (magic, major, minor, linktype) == (0xA1B23C4D, 2, 4, 1)
    assert snaplen >= 65535
    seconds, nanos, kept, length = struct.unpack("<IIII", raw[24:40])
    assert (seconds, nanos, kept, length) == (3, 123, 14 + 20 + 8 + 3, 45)
    assert writer.count == 2


async def traffic(world: World) -> None:
    """TCP with a lost segment and a reset, UDP with fragments and an ICMP error."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionResetError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def server() -> None:
        srv = await asyncio.start_server(echo, None, 80)
        await srv.serve_forever()

    world.spawn("b", server())
    await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("b", 80)
    writer.write(bytes(50_000))
    assert len(await reader.readexactly(50_000)) == 50_000
    writer.close()
    await asyncio.sleep(0.1)
    _, writer = await asyncio.open_connection("b", 80)
    writer.transport.abort()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("b", 5555)
    )
    transport.sendto(bytes(4000))  # fragments; nobody listens: ICMP port unreachable
    await asyncio.sleep(0.1)
    transport.close()


def capture(path: Path) -> int:
    world = World(seed=4)
    world.add("a")
    world.add("b")
    world.net.configure_link("a", "b", mtu=1400)
    lose_one = Rule.drop(times=1, match=Match(proto="tcp", where=lambda p: len(p.payload) > 1000))
    try:
        with world.net.capture(path) as writer, world.net.faults(lose_one, src="a", dst="b"):
            world.on("a", traffic(world))
        return writer.count
    finally:
        world.close()


def test_capture_writes_every_sent_packet(tmp_path: Path) -> None:
    path = tmp_path / "out.pcap"
    count = capture(path)
    assert count > 80
    raw = path.read_bytes()
    offset, records = 24, 0
    while offset < len(raw):
        _, _, kept, _ = struct.unpack("<IIII", raw[offset : offset + 16])
        frame = raw[offset + 16 : offset + 16 + kept]
        _, ip, _ = split(frame)
        assert checksum(ip) == 0xFFFF
        offset += 16 + kept
        records += 1
    assert records == count


@pytest.mark.external
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_tshark_dissects_the_capture_without_errors(tmp_path: Path) -> None:
    assert TSHARK is not None
    path = tmp_path / "out.pcap"
    count = capture(path)
    result = subprocess.run(
        [
            TSHARK,
            "-r",
            str(path),
            "-n",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
            "-e",
            "_ws.malformed",
            "-e",
            "tcp.analysis.retransmission",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if "Running as user" not in line]
    assert complaints == []
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == count
    text = result.stdout.lower()
    assert "malformed" not in text
    assert "bad checksum" not in text
    assert "incorrect" not in text
    assert any(row[3] for row in rows), "tshark saw no TCP retransmission"
    summary = subprocess.run(
        [TSHARK, "-r", str(path), "-n"], capture_output=True, text=True, timeout=60, check=False
    )
    assert summary.returncode == 0
    for expected in (
        "[SYN]",
        "MSS=1360",
        "SACK_PERM",
        "[RST",
        "Destination unreachable (Port unreachable)",
        "Fragmented IP",
        "UDP 1290",  # the reassembled datagram
    ):
        assert expected in summary.stdout, expected
