"""Simulated UDP through plain asyncio datagram protocols: delivery and every fault."""

from __future__ import annotations

import asyncio
import errno
import itertools
from collections.abc import Iterator

import pytest
from netkit import World

from netweave.sim._faults import Match, Rule
from netweave.sim._trace import TraceRecorder


class Collector(asyncio.DatagramProtocol):
    """Keeps what arrives; echoes when ``echo`` is set."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.errors: list[Exception] = []
        self.lost: list[Exception | None] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@pytest.fixture
def world() -> Iterator[World]:
    w = World(seed=9)
    w.add("a")
    w.add("b")
    yield w
    w.close()


async def bind(port: int = 0, *, echo: bool = False, host: str = "0.0.0.0") -> Collector:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Collector(echo=echo), local_addr=(host, port)
    )
    return protocol


def start_listener(
    world: World, host: str = "b", port: int = 5000, echo: bool = False
) -> Collector:
    return world.on(host, bind(port, echo=echo))


def test_unconnected_round_trip(world: World) -> None:
    start_listener(world, echo=True)

    async def client() -> Collector:
        me = await bind()
        assert me.transport is not None
        for i in range(5):
            me.transport.sendto(b"d%d" % i, ("b", 5000))
        await asyncio.sleep(0.01)
        return me

    me = world.on("a", client())
    b_address = world.net.host("b").address
    assert me.received == [(b"d%d" % i, (b_address, 5000)) for i in range(5)]


def test_connected_endpoint_filters_other_senders_and_rejects_other_addresses(
    world: World,
) -> None:
    listener = start_listener(world)
    assert listener.transport is not None

    async def client() -> Collector:
        loop = asyncio.get_running_loop()
        transport, me = await loop.create_datagram_endpoint(Collector, remote_addr=("b", 5000))
        assert transport.get_extra_info("peername") == (world.net.host("b").address, 5000)
        assert transport.get_extra_info("sockname")[0] == world.net.host("a").address
        transport.sendto(b"hello")
        with pytest.raises(ValueError, match="Invalid address"):
            transport.sendto(b"x", ("10.9.9.9", 1))
        await asyncio.sleep(0.01)
        return me

    me = world.on("a", client())
    assert [data for data, _ in listener.received] == [b"hello"]
    peer = listener.received[0][1]

    async def reply_from_elsewhere() -> None:
        stranger = await bind()
        assert stranger.transport is not None
        stranger.transport.sendto(b"not for you", peer)
        assert listener.transport is not None
        listener.transport.sendto(b"for you", peer)
        await asyncio.sleep(0.01)

    world.on("b", reply_from_elsewhere())
    assert [data for data, _ in me.received] == [b"for you"]


def test_port_unreachable_reaches_a_connected_socket_only(world: World) -> None:
    async def client() -> tuple[Collector, Collector]:
        loop = asyncio.get_running_loop()
        connected_transport, connected = await loop.create_datagram_endpoint(
            Collector, remote_addr=("b", 4444)
        )
        connected_transport.sendto(b"anyone?")
        loose = await bind()
        assert loose.transport is not None
        loose.transport.sendto(b"anyone?", ("b", 4444))
        await asyncio.sleep(0.01)
        return connected, loose

    connected, loose = world.on("a", client())
    assert len(connected.errors) == 1
    assert isinstance(connected.errors[0], ConnectionRefusedError)
    assert loose.errors == []


def test_send_errors_go_to_error_received(world: World) -> None:
    async def client() -> Collector:
        me = await bind()
        assert me.transport is not None
        me.transport.sendto(b"x" * 70_000, ("b", 5000))
        me.transport.sendto(b"x", ("no-such-host", 5000))
        with pytest.raises(TypeError):
            me.transport.sendto("text", ("b", 5000))  # type: ignore[arg-type]
        return me

    me = world.on("a", client())
    assert len(me.errors) == 2
    assert getattr(me.errors[0], "errno", None) == errno.EMSGSIZE


def test_close_calls_connection_lost_once_and_frees_the_port(world: World) -> None:
    async def main() -> Collector:
        first = await bind(6000)
        assert first.transport is not None
        with pytest.raises(OSError, match="address already in use"):
            await bind(6000)
        first.transport.close()
        first.transport.close()
        first.transport.sendto(b"ignored", ("b", 1))
        await asyncio.sleep(0)
        again = await bind(6000)
        assert again.transport is not None
        again.transport.close()
        await asyncio.sleep(0)
        return first

    first = world.on("a", main())
    assert first.lost == [None]


def test_loss_duplication_and_reordering_are_applied_to_datagrams(world: World) -> None:
    world.net.configure_link("a", "b", loss=0.2, duplicate=0.1, reorder=0.2, jitter=0.0)
    listener = start_listener(world)

    async def client() -> None:
        me = await bind()
        assert me.transport is not None
        for i in range(1000):
            me.transport.sendto(b"%04d" % i, ("b", 5000))
            await asyncio.sleep(0.0001)
        await asyncio.sleep(0.1)

    world.on("a", client())
    numbers = [int(data) for data, _ in listener.received]
    stats = world.net.link("a", "b").stats
    assert len(set(numbers)) == 1000 - stats.lost
    assert len(numbers) == 1000 - stats.lost + stats.duplicated
    assert 150 < stats.lost < 250
    assert stats.duplicated > 50
    assert numbers != sorted(numbers)  # reordered
    assert stats.reordered > 100


def test_corruption_flips_one_bit(world: World) -> None:
    world.net.configure_link("a", "b", corrupt=1.0)
    listener = start_listener(world)
    payload = bytes(100)

    async def client() -> None:
        me = await bind()
        assert me.transport is not None
        for _ in range(20):
            me.transport.sendto(payload, ("b", 5000))
        await asyncio.sleep(0.01)

    world.on("a", client())
    assert len(listener.received) == 20
    for data, _ in listener.received:
        assert len(data) == 100
        diff = int.from_bytes(data, "big") ^ int.from_bytes(payload, "big")
        assert bin(diff).count("1") == 1


def test_large_datagrams_are_fragmented_and_lost_if_any_fragment_is(world: World) -> None:
    world.net.configure_link("a", "b", mtu=1000, loss=0.1)
    listener = start_listener(world)
    big = bytes(range(256)) * 32  # 8192 bytes: 9 fragments of at most 976 bytes

    async def client() -> None:
        me = await bind()
        assert me.transport is not None
        for _ in range(400):
            me.transport.sendto(big, ("b", 5000))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.1)

    world.on("a", client())
    delivered = len(listener.received)
    assert all(data == big for data, _ in listener.received)
    # Each of 9 fragments survives with probability 0.9: about 39% of datagrams arrive.
    assert 0.28 * 400 < delivered < 0.50 * 400


def test_bandwidth_serialises_and_the_queue_drops_at_the_tail(world: World) -> None:
    # 1 Mbit/s: a 1028-byte packet takes 8.224 ms; 5000 bytes hold four of them.
    world.net.configure_link("a", "b", bandwidth=1_000_000, queue_limit=5000, latency=0.0)
    listener = start_listener(world)

    async def client() -> None:
        me = await bind()
        assert me.transport is not None
        for _ in range(20):
            me.transport.sendto(bytes(1000), ("b", 5000))
        await asyncio.sleep(1)

    arrivals: list[float] = []
    original = listener.datagram_received

    def stamp(data: bytes, addr: tuple[str, int]) -> None:
        arrivals.append(asyncio.get_running_loop().time())
        original(data, addr)

    listener.datagram_received = stamp  # type: ignore[method-assign]
    world.on("a", client())
    stats = world.net.link("a", "b").stats
    assert stats.queue_dropped == 20 - len(arrivals)
    assert len(arrivals) == 4
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(arrivals)]
    assert gaps == [0.008224] * len(gaps)


def test_partition_one_way_and_scheduled_heal(world: World) -> None:
    listener_b = start_listener(world, "b", echo=True)
    recorder = TraceRecorder()
    world.net.observer = recorder
    world.net.partition("a", "b", one_way=True, at=1.0, duration=1.0)

    async def client() -> Collector:
        me = await bind(7000)
        assert me.transport is not None
        for t in (0.5, 1.5, 2.5):
            await asyncio.sleep(t - asyncio.get_running_loop().time())
            me.transport.sendto(b"at %.1f" % t, ("b", 5000))
        await asyncio.sleep(0.1)
        return me

    me = world.on("a", client())
    assert [data for data, _ in listener_b.received] == [b"at 0.5", b"at 2.5"]
    assert [data for data, _ in me.received] == [b"at 0.5", b"at 2.5"]
    kinds = [e.kind for e in recorder.events if e.kind in ("partitioned", "healed")]
    assert kinds == ["partitioned", "healed"]
    drops = [e for e in recorder.events if e.kind == "packet_dropped"]
    assert [e.reason for e in drops] == ["partition"]


def test_rule_scope_drops_only_inside_the_block(world: World) -> None:
    listener = start_listener(world)
    odd = Rule.drop(match=Match(proto="udp", where=lambda p: p.payload[-1] % 2 == 1))

    async def send(tag: bytes) -> None:
        me = await bind()
        assert me.transport is not None
        for i in range(4):
            me.transport.sendto(tag + bytes([i]), ("b", 5000))
        await asyncio.sleep(0.01)

    with world.net.faults(odd, src="a", dst="b"):
        world.on("a", send(b"in"))
    world.on("a", send(b"out"))
    assert [data for data, _ in listener.received] == [
        b"in\x00",
        b"in\x02",
        b"out\x00",
        b"out\x01",
        b"out\x02",
        b"out\x03",
    ]
    assert odd.hits == 2


def test_crashed_host_gets_nothing_and_its_sockets_are_gone(world: World) -> None:
    listener = start_listener(world)

    async def client() -> None:
        me = await bind()
        assert me.transport is not None
        me.transport.sendto(b"before", ("b", 5000))
        await asyncio.sleep(0.01)
        world.crash("b")
        me.transport.sendto(b"while down", ("b", 5000))
        await asyncio.sleep(0.01)
        world.net.restart_host("b")
        me.transport.sendto(b"after restart, nobody listens", ("b", 5000))
        await asyncio.sleep(0.01)

    world.on("a", client())
    assert [data for data, _ in listener.received] == [b"before"]
    assert listener.transport is not None
    assert listener.transport.is_closing()
    assert listener.lost == []  # a crashed host's protocols are never called


def test_datagrams_on_loopback(world: World) -> None:
    async def main() -> list[bytes]:
        server = await bind(5353, host="127.0.0.1", echo=True)
        client = await bind()
        assert client.transport is not None
        client.transport.sendto(b"self", ("127.0.0.1", 5353))
        client.transport.sendto(b"own address", ("a", 5353))  # bound to 127.0.0.1 only
        await asyncio.sleep(0.001)
        assert server.transport is not None
        return [data for data, _ in client.received]

    assert world.on("a", main()) == [b"self"]
