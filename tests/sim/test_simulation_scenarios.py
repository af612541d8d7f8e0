"""Whole scenarios on the simulated network: plain asyncio code, chaos, determinism."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import random  # determinism: ok (served by the simulation: seeded per host)
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netweave.sim import LinkConfig, Simulation, check_determinism, load_scenario, run_scenario

# -- unmodified asyncio streams between two hosts ----------------------------------------


async def upper_server(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    async with server:
        await server.serve_forever()


async def upper_client(host: str, port: int, lines: list[bytes], got: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    for line in lines:
        writer.write(line)
        await writer.drain()
        got.append(await reader.readline())
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def test_unmodified_asyncio_streams_between_two_hosts() -> None:
    got: list[bytes] = []
    lines = [b"hello\n", b"simulated world\n", b"x" * 60_000 + b"\n"]
    with Simulation(seed=3) as sim:
        sim.add_host("server")
        sim.add_host("client")
        sim.link("server", "client", latency=0.025)
        sim.spawn("server", upper_server, 8000)
        sim.spawn("client", upper_client, "server", 8000, lines, got)
        sim.run(until=30)
        assert got == [line.upper() for line in lines]
        assert sim.host_tasks("client") == []
        assert 0.15 < sim.trace.events[-1].time_ns / 1e9 < 30  # type: ignore[attr-defined]


# -- the chaos scenario ---------------------------------------------------------------------

HOSTS = [f"h{i}" for i in range(5)]


@dataclass
class Tally:
    ok: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


async def echo_server() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, None, 7000)
    async with server:
        await server.serve_forever()


async def echo_client(me: str, tally: Tally) -> None:
    peers = [h for h in HOSTS if h != me]
    while True:
        peer = random.choice(peers)
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection(peer, 7000)
                try:
                    for i in range(3):
                        message = f"{me}->{peer} {i} {random.random()}\n".encode()
                        writer.write(message)
                        await writer.drain()
                        assert await reader.readline() == message
                finally:
                    writer.close()
            tally.ok[me] = tally.ok.get(me, 0) + 1
        except (OSError, TimeoutError):
            tally.failed[me] = tally.failed.get(me, 0) + 1
        await asyncio.sleep(random.uniform(0.2, 1.5))


def chaos(sim: Simulation) -> None:
    """5 hosts, 5% loss, reordering, a partition that heals, a crash and a restart."""
    sim.network.default_link = LinkConfig(latency=0.005, jitter=0.002, loss=0.05, reorder=0.05)
    tally = Tally()
    for host in HOSTS:
        sim.add_host(host)
        sim.spawn(host, echo_server)
        sim.spawn(host, echo_client, host, tally)
    sim.partition(["h0", "h1"], ["h2", "h3", "h4"], at=5, duration=8)
    sim.at(9, sim.crash, "h4")
    sim.at(16, sim.restart, "h4")
    sim.run(until=25)
    assert all(tally.ok.get(h, 0) > 3 for h in HOSTS), tally
    assert sum(tally.failed.values()) > 0, tally  # the faults did bite


def test_chaos_gives_one_hash_per_seed_and_different_hashes_across_seeds() -> None:
    hashes = {run_scenario(chaos, 11).trace_hash for _ in range(20)}
    assert len(hashes) == 1
    results = [run_scenario(chaos, seed) for seed in (11, 12, 13)]
    assert all(r.ok for r in results), [r.outcome for r in results]
    assert results[0].trace_hash in hashes
    assert len({r.trace_hash for r in results}) == 3
    assert results[0].events > 1000


def test_the_double_run_check_passes_on_chaos() -> None:
    report = check_determinism(chaos, 21)
    assert report.ok, str(report)
    assert report.first.ok
    assert "deterministic" in str(report)
    report.raise_if_diverged()


leak: list[float] = []


def leaky(sim: Simulation) -> None:
    """Draws from a Random the simulation does not control, and from state across runs."""
    leak.append(1.0)
    sim.add_host("a")
    sim.add_host("b")

    async def talk() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("b", 9)
        )
        for _ in range(3):
            transport.sendto(b"x")
            await asyncio.sleep(1)
        transport.sendto(b"y" * len(leak))  # differs between the two runs
        transport.close()

    sim.spawn("a", talk)
    sim.run()


def test_the_double_run_check_names_the_first_divergent_event() -> None:
    leak.clear()
    report = check_determinism(leaky, 0)
    assert not report.ok
    divergence = report.divergence
    assert divergence is not None
    assert divergence.time_ns == 3_000_000_000
    assert divergence.first is not None
    assert divergence.second is not None
    assert '"size":1' in divergence.first
    assert '"size":2' in divergence.second
    assert "first divergent event" in str(report)


def test_getaddrinfo_resolves_simulated_names_only() -> None:
    found: dict[str, object] = {}

    async def resolve() -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("server", 80, type=socket.SOCK_STREAM)
        found["server"] = infos[0][4]
        found["name"] = await loop.getnameinfo(infos[0][4])
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("example.com", 80)

    with Simulation(seed=0) as sim:
        sim.add_host("server", address="10.1.2.3")
        sim.add_host("client")
        sim.spawn("client", resolve)
        sim.run()
    assert found == {"server": ("10.1.2.3", 80), "name": ("server", "80")}


def test_crashing_a_host_in_the_middle_of_a_stream_handler_is_not_an_error() -> None:
    handling: list[float] = []

    async def slow_server() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handling.append(asyncio.get_running_loop().time())
            await reader.read()  # waits for the client, which never ends its stream
            writer.close()

        server = await asyncio.start_server(handle, None, 7000)
        async with server:
            await server.serve_forever()

    async def client() -> None:
        _, writer = await asyncio.open_connection("server", 7000)
        writer.write(b"hello")
        await asyncio.sleep(3600)

    with Simulation(seed=21) as sim:
        sim.add_host("server")
        sim.add_host("client")
        sim.spawn("server", slow_server)
        sim.spawn("client", client)
        sim.at(5, sim.crash, "server")
        sim.run(until=10)  # the handler task is cancelled by the crash: no failure
        assert len(handling) == 1
        assert sim.host_tasks("server") == []


# -- the example: the same code on real TCP and in the simulator ------------------------------


@pytest.fixture
def echo_example(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    return importlib.import_module("examples.echo_sim")


@pytest.mark.parametrize("seed", [0, 7])
def test_the_echo_example_survives_the_faults_in_the_simulator(
    echo_example: Any, seed: int
) -> None:
    result = run_scenario(load_scenario("examples.echo_sim:scenario"), seed)
    assert result.ok, result.outcome
    assert result.time == 300


async def test_the_echo_example_runs_on_real_tcp(echo_example: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    server = asyncio.create_task(echo_example.serve(url))
    try:
        async with asyncio.timeout(10):
            while True:  # until it listens
                try:
                    replies = await echo_example.ask(url, ["real", "sockets"], deadline=1.0)
                    break
                except OSError:
                    await asyncio.sleep(0.01)
        assert replies == ["real", "sockets"]
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


# -- per-message handlers in the simulator ----------------------------------------------------


def _per_message_run(seed: int) -> tuple[list[Any], str]:
    """An echo served by ``per_message`` over a lossy, jittery simulated link."""
    import netweave

    def double(message: Any, responder: netweave.Responder) -> None:
        responder.send(message * 2)

    got: list[Any] = []

    async def server() -> None:
        async with netweave.serve("tcp://0.0.0.0:7100", "lp4,json", netweave.per_message(double)):
            await asyncio.sleep(3600)

    async def client() -> None:
        await asyncio.sleep(0.1)
        async with await netweave.connect("tcp://server:7100", "lp4,json") as channel:
            for n in range(100):
                await channel.send(n)
            got.extend([await channel.receive() for _ in range(100)])

    with Simulation(seed=seed) as sim:
        sim.add_host("server")
        sim.add_host("client")
        sim.link("client", "server", latency=0.01, jitter=0.005, loss=0.05)
        sim.spawn("server", server)
        done = sim.spawn("client", client)
        sim.run_until(done.done)
        return got, sim.trace_hash()


def test_per_message_handlers_run_unchanged_in_the_simulator_and_replay() -> None:
    got, trace = _per_message_run(seed=5)
    assert got == [2 * n for n in range(100)]
    assert _per_message_run(seed=5) == (got, trace)
