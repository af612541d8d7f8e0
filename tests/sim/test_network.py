"""The network's public face: hosts and addresses, names, links, partitions, clocks, servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest
from netkit import World

from netweave.errors import UsageError
from netweave.sim import LinkConfig, Match, Rule
from netweave.sim._trace import TraceRecorder


@pytest.fixture
def world() -> Iterator[World]:
    w = World(seed=21)
    yield w
    w.close()


def test_addresses_are_assigned_in_order_and_can_be_chosen(world: World) -> None:
    a = world.add("a")
    b = world.add("b", address="192.168.7.9")
    c = world.add("c")
    assert (a.address, b.address, c.address) == ("10.0.0.1", "192.168.7.9", "10.0.0.2")
    assert world.net.hosts == ["a", "b", "c"]
    assert world.net.host("b") is b
    with pytest.raises(UsageError, match="already taken"):
        world.add("a")
    with pytest.raises(UsageError, match="already belongs to a"):
        world.add("d", address="10.0.0.1")
    with pytest.raises(UsageError, match="IPv4"):
        world.add("e", address="fe80::1")
    with pytest.raises(UsageError, match="non-loopback"):
        world.add("f", address="127.0.0.2")
    with pytest.raises(UsageError, match="no simulated host is called 'zed'"):
        world.net.host("zed")


def test_name_resolution_through_the_loop(world: World) -> None:
    world.add("alpha")
    world.add("beta")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("beta", 80, type=socket.SOCK_STREAM)
        assert infos == [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.0.0.2", 80))
        ]
        both = await loop.getaddrinfo("localhost", "53")
        assert {info[1] for info in both} == {socket.SOCK_STREAM, socket.SOCK_DGRAM}
        assert both[0][4] == ("127.0.0.1", 53)
        passive = await loop.getaddrinfo(None, 0, flags=socket.AI_PASSIVE)
        assert passive[0][4] == ("0.0.0.0", 0)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("gamma", 80)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("beta", 80, family=socket.AF_INET6)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("beta", "http")
        assert await loop.getnameinfo(("10.0.0.2", 80)) == ("beta", "80")
        assert await loop.getnameinfo(("10.0.0.2", 80), socket.NI_NUMERICHOST) == (
            "10.0.0.2",
            "80",
        )
        assert await loop.getnameinfo(("127.0.0.1", 1)) == ("localhost", "1")

    world.on("alpha", main())


def test_links_are_directional_and_follow_the_default_until_configured(world: World) -> None:
    world.add("a")
    world.add("b")
    world.add("c")
    net = world.net
    net.configure_link("a", "b", both=False, latency=0.05)
    assert net.link("a", "b").config.latency.ns == 50_000_000  # type: ignore[union-attr]
    assert net.link("b", "a").config == net.default_link
    net.default_link = LinkConfig(latency=0.002)
    assert net.link("b", "a").config.latency.ns == 2_000_000  # type: ignore[union-attr]
    assert net.link("a", "b").config.latency.ns == 50_000_000  # type: ignore[union-attr]
    net.configure_link("b", "c", LinkConfig(loss=0.5))
    assert net.link("c", "b").config.loss == 0.5
    with pytest.raises(UsageError, match="unknown link setting"):
        net.configure_link("a", "c", colour="blue")
    assert net.link("a", "a") is net.host("a").loopback


def test_partition_groups_schedules_and_errors(world: World) -> None:
    for name in "abcd":
        world.add(name)
    net = world.net
    recorder = TraceRecorder()
    net.observer = recorder
    net.partition(["a", "b"], ["c", "d"])
    assert net.is_partitioned("a", "c")
    assert net.is_partitioned("d", "b")
    assert not net.is_partitioned("a", "b")
    net.heal("a", "c", one_way=True)
    assert not net.is_partitioned("a", "c")
    assert net.is_partitioned("c", "a")
    net.heal()
    assert not any(net.is_partitioned(x, y) for x in "abcd" for y in "abcd" if x != y)
    net.partition("a", "b", at=2.0, duration=1.0)
    world.run_for(1.9)
    assert not net.is_partitioned("a", "b")
    world.run_for(0.2)
    assert net.is_partitioned("b", "a")
    world.run_for(1.0)
    assert not net.is_partitioned("b", "a")
    events = [(e.kind, e.time_ns) for e in recorder.events]  # type: ignore[attr-defined]
    assert events.count(("partitioned", 2_000_000_000)) == 2
    assert events.count(("healed", 3_000_000_000)) == 2
    with pytest.raises(UsageError, match="both sides"):
        net.partition("a", ["a", "b"])
    with pytest.raises(UsageError, match="in the past"):
        net.partition("a", "b", at=0.5)
    with pytest.raises(UsageError):
        net.heal("a")


def test_global_and_link_rules_install_for_a_scope(world: World) -> None:
    world.add("a")
    world.add("b")
    net = world.net
    with net.faults(Rule.drop()) as everywhere:
        assert len(net.rules) == 1
        with net.faults(Rule.delay(0.1), src="a", dst="b", both=True):
            assert len(net.link("a", "b").rules) == 1
            assert len(net.link("b", "a").rules) == 1
        assert len(net.link("a", "b").rules) == 0
    assert len(net.rules) == 0
    everywhere.remove()  # idempotent after the block
    with pytest.raises(UsageError, match="both src and dst"):
        net.faults(Rule.drop(), src="a")


def test_clock_skew_and_drift(world: World) -> None:
    world.add("steady")
    world.add("fast", clock_skew=2.5, clock_drift=1e-3)
    net = world.net
    assert net.wall_clock_ns("steady", 10_000_000_000) == 10_000_000_000
    assert net.wall_clock_ns("fast", 10_000_000_000) == 10_000_000_000 + 2_500_000_000 + 10_000_000
    assert net.wall_clock_ns(None, 123) == 123
    with pytest.raises(UsageError, match="clock_drift"):
        world.add("broken", clock_drift=float("nan"))


def test_crash_and_restart_are_idempotent_and_traced(world: World) -> None:
    world.add("a")
    recorder = TraceRecorder()
    world.net.observer = recorder
    world.net.crash_host("a")
    world.net.crash_host("a")
    assert not world.net.is_up("a")
    world.net.restart_host("a")
    world.net.restart_host("a")
    assert world.net.is_up("a")
    assert [e.kind for e in recorder.events] == ["host_crashed", "host_restarted"]
    assert world.net.host("a").epoch == 1


def test_create_server_on_several_addresses_and_start_serving_later(world: World) -> None:
    world.add("srv")
    world.add("cli")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        writer.close()

    async def server() -> None:
        loop = asyncio.get_running_loop()
        srv = await asyncio.start_server(handler, ["127.0.0.1", "srv"], 7000, start_serving=False)
        assert sorted(s.getsockname() for s in srv.sockets) == [
            ("10.0.0.1", 7000),
            ("127.0.0.1", 7000),
        ]
        assert not srv.is_serving()
        await asyncio.sleep(1)
        await srv.start_serving()
        assert srv.is_serving()
        assert loop.time() >= 1
        await asyncio.sleep(10)
        srv.close()

    async def client() -> bytes:
        await asyncio.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("srv", 7000)  # bound, not yet listening
        await asyncio.sleep(1)
        reader, writer = await asyncio.open_connection("srv", 7000)
        data = await reader.read()
        writer.close()
        return data

    world.spawn("srv", server())
    assert world.on("cli", client()) == b"hi"


def test_ephemeral_ports_are_distinct_and_bound_ports_are_exclusive(world: World) -> None:
    world.add("a")

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(5):
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("0.0.0.0", 0)
            )
            ports.append(transport.get_extra_info("sockname")[1])
        with pytest.raises(OSError, match="address already in use"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", ports[0])
            )
        with pytest.raises(OSError, match="cannot assign requested address"):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("10.9.9.9", 0)
            )
        with pytest.raises(OverflowError):
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("0.0.0.0", 70000)
            )
        return ports

    ports = world.on("a", main())
    assert len(set(ports)) == 5
    assert all(32768 <= port <= 60999 for port in ports)


def test_packets_on_clean_links_fare_as_link_plan_says() -> None:
    """Clean links take a shortcut past Link.plan; a rule that matches nothing forces
    the full path. Both give the same trace and the same link counters."""

    async def pinger(peer: str) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("0.0.0.0", 5000)
        )
        reader, writer = await asyncio.open_connection(peer, 7000)
        for i in range(20):
            udp.sendto(b"x" * (i * 100), (peer, 5000))  # some over the MTU: fragments
            writer.write(b"y" * (i * 500))
            await writer.drain()
            await asyncio.sleep(0.003)
        writer.close()
        udp.close()
        del reader

    async def sink() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("0.0.0.0", 5000))

        async def drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass
            writer.close()

        server = await asyncio.start_server(drain, None, 7000)
        await server.serve_forever()

    def run(with_rule: bool) -> tuple[str, dict[str, int]]:
        recorder = TraceRecorder()
        world = World(5, observer=recorder)
        try:
            world.add("a")
            world.add("b")
            world.net.configure_link("a", "b", latency=0.002, mtu=1000)
            nothing = Rule.drop(match=Match(dst_port=1))  # no packet goes to port 1
            with world.net.faults(nothing) if with_rule else contextlib.nullcontext():
                world.spawn("b", sink())
                world.run(world.spawn("a", pinger("b")))
                world.run_for(1.0)
            return recorder.hexdigest(), world.net.link("a", "b").stats.as_dict()
        finally:
            world.close()

    shortcut, full = run(False), run(True)
    assert shortcut == full
    assert shortcut[1]["sent"] > 40
