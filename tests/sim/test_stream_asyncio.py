"""Unmodified asyncio streams on simulated TCP: data, faults, partitions, crashes, flow control."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator

import pytest
from netkit import World

from netweave.sim._faults import Match, Rule
from netweave.sim._packet import SYN
from netweave.sim._tcp import TcpSettings
from netweave.sim._trace import TraceRecorder


@pytest.fixture
def world() -> Iterator[World]:
    w = World(seed=3)
    w.add("server")
    w.add("client")
    yield w
    w.close()


async def upper_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def start_echo(world: World, port: int = 8000) -> None:
    async def main() -> None:
        server = await asyncio.start_server(upper_echo, None, port)
        async with server:
            await server.serve_forever()

    world.spawn("server", main())


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def test_open_connection_and_start_server_exchange_data(world: World) -> None:
    start_echo(world)

    async def client() -> tuple[list[bytes], tuple[str, int], tuple[str, int]]:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        replies = []
        for i in range(3):
            writer.write(b"hello %d" % i)
            await writer.drain()
            replies.append(await reader.read(100))
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        assert writer.get_extra_info("socket") is None
        writer.close()
        await writer.wait_closed()
        return replies, peer, local

    replies, peer, local = world.on("client", client())
    assert replies == [b"HELLO 0", b"HELLO 1", b"HELLO 2"]
    assert peer == (world.net.host("server").address, 8000)
    assert local[0] == world.net.host("client").address
    # 1 ms links: handshake (2 ms incl. the ACK's flight) plus three 2 ms round trips.
    assert world.now == pytest.approx(0.008)


def test_large_transfer_over_a_lossy_reordering_link_is_byte_exact(world: World) -> None:
    world.net.configure_link("client", "server", loss=0.05, reorder=0.05, duplicate=0.02)
    start_echo(world)
    data = blob(400_000, 1)

    async def client() -> bytes:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        writer.write(data)
        writer.write_eof()
        received = await reader.read(-1)
        writer.close()
        return received

    assert world.on("client", client()) == data.upper()
    stats = world.net.link("client", "server").stats
    assert stats.lost > 0
    assert stats.reordered > 0


def test_loss_appears_as_retransmission_delay(world: World) -> None:
    start_echo(world)
    drop_first_data = Rule.drop(times=1, match=Match(proto="tcp", contains=b"ping"))

    async def client() -> tuple[bytes, float]:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        start = asyncio.get_running_loop().time()
        writer.write(b"ping")
        reply = await reader.read(100)
        elapsed = asyncio.get_running_loop().time() - start
        writer.close()
        return reply, elapsed

    with world.net.faults(drop_first_data, src="client", dst="server"):
        reply, elapsed = world.on("client", client())
    assert reply == b"PING"
    assert drop_first_data.hits == 1
    # A round trip takes 2 ms; the lost segment is resent by the tail loss probe
    # 50 ms after it was sent (two round trips, at least 10 ms, plus the 40 ms a
    # delayed ACK may take for a lone segment), well before the 200 ms RTO.
    assert elapsed == pytest.approx(0.050 + 0.002)


def test_refused_when_nobody_listens(world: World) -> None:
    async def client() -> None:
        await asyncio.open_connection("server", 9)

    with pytest.raises(ConnectionRefusedError):
        world.on("client", client())
    assert world.now == pytest.approx(0.002)


def test_unknown_name_fails_resolution(world: World) -> None:
    async def client() -> None:
        await asyncio.open_connection("nowhere", 80)

    with pytest.raises(socket.gaierror):
        world.on("client", client())


def test_partition_stalls_a_connection_and_healing_resumes_it(world: World) -> None:
    start_echo(world)

    async def client() -> tuple[bytes, float]:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        world.net.partition("client", "server", duration=5.0)
        start = asyncio.get_running_loop().time()
        writer.write(b"during the partition")
        reply = await reader.read(100)
        writer.close()
        return reply, asyncio.get_running_loop().time() - start

    reply, elapsed = world.on("client", client())
    assert reply == b"DURING THE PARTITION"
    assert elapsed > 5.0  # stalled while cut, delivered by a retransmission after healing


def test_lasting_partition_resets_after_the_user_timeout() -> None:
    world = World(seed=3, tcp=TcpSettings(user_timeout=10.0))
    try:
        world.add("server")
        world.add("client")
        start_echo(world)

        async def client() -> float:
            await asyncio.sleep(0)
            reader, writer = await asyncio.open_connection("server", 8000)
            world.net.partition("client", "server")
            start = asyncio.get_running_loop().time()
            writer.write(b"lost in the void")
            with pytest.raises(TimeoutError):
                await reader.read(100)
            assert writer.transport.is_closing()
            return asyncio.get_running_loop().time() - start

        assert world.on("client", client()) == pytest.approx(10.0)
    finally:
        world.close()


def test_crashed_peer_is_silent_and_after_restart_answers_with_reset(world: World) -> None:
    start_echo(world)
    recorder = TraceRecorder()
    world.net.observer = recorder

    async def client() -> None:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        writer.write(b"one")
        assert await reader.read(100) == b"ONE"
        world.crash("server")
        writer.write(b"two")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 3.0)  # silence
        world.net.restart_host("server")
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        assert writer.transport.is_closing()

    world.on("client", client())
    kinds = [(e.kind, getattr(e, "flags", "")) for e in recorder.events]
    assert ("host_crashed", "") in kinds
    assert ("host_restarted", "") in kinds
    resets = [e for e in recorder.events if e.kind == "packet_sent" and "R" in e.flags]  # type: ignore[attr-defined]
    assert resets


def test_crash_cancels_nothing_of_the_peer_and_packets_in_flight_are_lost(world: World) -> None:
    world.net.configure_link("client", "server", latency=0.5)
    start_echo(world)

    async def client() -> None:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        writer.write(b"in flight")
        await asyncio.sleep(0.1)
        world.crash("server")
        world.net.restart_host("server")
        # The segment was in flight when the server crashed: it is lost; the
        # retransmission reaches the restarted server, which resets.
        with pytest.raises(ConnectionResetError):
            await reader.read(100)

    world.on("client", client())


def test_slow_reader_makes_drain_wait() -> None:
    world = World(seed=5, tcp=TcpSettings(rcvbuf=32768, sndbuf=32768))
    try:
        world.add("server")
        world.add("client")
        release = asyncio.Event()
        total = 1_000_000

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await release.wait()
            received = 0
            while data := await reader.read(65536):
                received += len(data)
            writer.write(b"%d" % received)
            await writer.drain()
            writer.close()

        async def server_main() -> None:
            server = await asyncio.start_server(slow, None, 8000)
            await server.serve_forever()

        async def client() -> tuple[int, bytes]:
            await asyncio.sleep(0)
            reader, writer = await asyncio.open_connection("server", 8000)
            chunk = b"x" * 8192
            sent = 0
            while sent < total:
                writer.write(chunk)
                sent += len(chunk)
                try:
                    async with asyncio.timeout(1.0):
                        await writer.drain()
                except TimeoutError:
                    break
            blocked_at = sent
            release.set()
            while sent < total:
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
            writer.write_eof()
            reply = await reader.read()
            writer.close()
            return blocked_at, reply

        world.spawn("server", server_main())
        blocked_at, reply = world.on("client", client())
        # The window (32k), the kernel buffer (32k), the reader's own buffer and
        # the transport's high-water mark (64k) fill up; then drain() waits.
        assert blocked_at < 400_000
        assert int(reply) == (total + 8191) // 8192 * 8192
    finally:
        world.close()


def test_half_close_keeps_the_other_direction_open(world: World) -> None:
    async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's EOF
        assert reader.at_eof()
        writer.write(b"got %d bytes" % len(data))
        await writer.drain()
        writer.close()

    async def server_main() -> None:
        server = await asyncio.start_server(collect, None, 8000)
        await server.serve_forever()

    async def client() -> bytes:
        await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("server", 8000)
        assert writer.can_write_eof()
        writer.write(b"a" * 5000)
        writer.write_eof()
        with pytest.raises(RuntimeError):
            writer.write(b"more")
        reply = await reader.read()
        writer.close()
        return reply

    world.spawn("server", server_main())
    assert world.on("client", client()) == b"got 5000 bytes"


def test_abort_resets_the_peer(world: World) -> None:
    got: list[BaseException] = []

    async def victim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
        except ConnectionResetError as exc:
            got.append(exc)

    async def server_main() -> None:
        server = await asyncio.start_server(victim, None, 8000)
        await server.serve_forever()

    async def client() -> None:
        await asyncio.sleep(0)
        _, writer = await asyncio.open_connection("server", 8000)
        writer.transport.abort()
        await asyncio.sleep(0.01)

    world.spawn("server", server_main())
    world.on("client", client())
    assert len(got) == 1


def test_loopback_inside_one_host(world: World) -> None:
    async def main() -> bytes:
        server = await asyncio.start_server(upper_echo, "127.0.0.1", 7000)
        reader, writer = await asyncio.open_connection("127.0.0.1", 7000)
        writer.write(b"local")
        reply = await reader.read(100)
        writer.close()
        server.close()
        return reply

    assert world.on("server", main()) == b"LOCAL"
    assert world.now == 0.0  # loopback has no latency


def test_server_close_refuses_new_connections_and_keeps_accepted_ones(world: World) -> None:
    async def main() -> None:
        holder: list[asyncio.StreamWriter] = []

        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            holder.append(writer)
            data = await reader.read(100)
            writer.write(data)
            await writer.drain()

        server = await asyncio.start_server(keep, None, 8000)
        port = server.sockets[0].getsockname()[1]
        assert port == 8000
        assert server.is_serving()
        await asyncio.sleep(10)
        server.close()
        await server.wait_closed()
        assert not server.is_serving()
        assert server.sockets == ()
        await asyncio.sleep(10)

    async def client() -> None:
        await asyncio.sleep(1)
        reader, writer = await asyncio.open_connection("server", 8000)
        await asyncio.sleep(10)  # the server closes meanwhile
        writer.write(b"still here")
        assert await reader.read(100) == b"still here"
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("server", 8000)

    world.spawn("server", main())
    world.on("client", client())


def test_address_in_use_and_bad_bind_address(world: World) -> None:
    async def main() -> None:
        server = await asyncio.start_server(upper_echo, None, 8000)
        with pytest.raises(OSError, match="address already in use"):
            await asyncio.start_server(upper_echo, "127.0.0.1", 8000)
        with pytest.raises(OSError, match="cannot assign requested address"):
            await asyncio.start_server(upper_echo, "client", 8001)
        server.close()

    world.on("server", main())


def test_socket_calls_outside_a_host_are_a_usage_error(world: World) -> None:
    from netweave.errors import UsageError

    async def driver() -> None:
        await asyncio.open_connection("server", 8000)

    with pytest.raises(UsageError, match="outside every simulated host"):
        world.run(driver())


def test_dropped_syn_is_retried(world: World) -> None:
    start_echo(world)
    lose_syn = Rule.drop(times=1, match=Match(flags=SYN))

    async def client() -> float:
        await asyncio.sleep(0)
        _, writer = await asyncio.open_connection("server", 8000)
        writer.close()
        return asyncio.get_running_loop().time()

    with world.net.faults(lose_syn):
        connected_at = world.on("client", client())
    assert lose_syn.hits == 1
    assert connected_at == pytest.approx(1.002)  # initial RTO 1 s, then one round trip


def test_a_finished_connection_leaves_its_host_at_once(world: World) -> None:
    """Once both FINs are acknowledged the connection is gone from the host's table at
    that instant (no TIME_WAIT is simulated): not whenever a timer next looks at it."""
    world.net.configure_link("client", "server", latency=0.010)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.read() == b"hi"
        writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, None, 8000)
        async with server:
            await server.serve_forever()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("server", 8000)  # at 20 ms
        writer.write(b"hi")
        writer.close()  # data and FIN leave together
        assert await reader.read() == b""

    world.spawn("server", serve())
    world.spawn("client", client())
    client_host, server_host = world.net.host("client"), world.net.host("server")
    seen: set[str] = set()
    gone: dict[str, float] = {}
    while len(gone) < 2 and world.now < 1.0:
        world.run_for(0.001)
        for name, host in (("client", client_host), ("server", server_host)):
            if host.tcp:
                seen.add(name)
            elif name in seen and name not in gone:
                gone[name] = round(world.now, 6)
    # The server's FIN|ACK reaches the client at 40 ms; the client's last ACK, 50 ms.
    assert gone == {"client": 0.040, "server": 0.050}
