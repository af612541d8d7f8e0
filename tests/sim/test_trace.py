"""Trace events, the recorder and its hash, and determinism: same seed, same bytes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netkit import World

from netweave.errors import UsageError
from netweave.observe import ConnectionOpened, Event
from netweave.sim._events import (
    HostCrashed,
    HostRestarted,
    PacketCorrupted,
    PacketDelivered,
    PacketDropped,
    PacketDuplicated,
    PacketEvent,
    PacketReordered,
    PacketSent,
)
from netweave.sim._link import LinkConfig, Uniform
from netweave.sim._trace import TraceRecorder, canonical_line, trace_hash

PORT = 9000


async def serve() -> None:
    """h0's main: a TCP echo service and a UDP echo service."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        writer.close()

    class UdpEcho(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.DatagramTransport)
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)

    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(UdpEcho, local_addr=("0.0.0.0", PORT))
    server = await asyncio.start_server(echo, None, PORT)
    await server.serve_forever()


async def client(name: str, until: float) -> int:
    """A client's main: RPCs over TCP (reconnecting after failures) and UDP pings."""
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("h0", PORT))
    replies = 0
    for attempt in range(1000):
        if loop.time() >= until:
            break
        writer = None
        try:
            async with asyncio.timeout(2.0):
                reader, writer = await asyncio.open_connection("h0", PORT)
                for i in range(20):
                    message = f"{name}:{attempt}:{i}".encode()
                    writer.write(message)
                    udp.sendto(message)
                    if await reader.readexactly(len(message)) == message:
                        replies += 1
                    await asyncio.sleep(0.05)
        except (ConnectionError, TimeoutError, OSError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.3)
        finally:
            if writer is not None:
                writer.close()
    udp.close()
    return replies


def scenario(seed: int) -> tuple[str, TraceRecorder]:
    """5 hosts, 5% loss, reordering, a partition that heals, a crash and a restart."""
    recorder = TraceRecorder(keep=None)
    world = World(
        seed,
        observer=recorder,
        default_link=LinkConfig(
            latency=Uniform(0.001, 0.003), jitter=0.0005, loss=0.05, reorder=0.05
        ),
    )
    try:
        for i in range(5):
            world.add(f"h{i}")
        world.spawn("h0", serve())
        clients = [world.spawn(f"h{i}", client(f"h{i}", until=6.0)) for i in range(1, 5)]
        world.net.partition("h1", ["h0", "h2"], at=1.0, duration=1.5)
        world.run_for(3.0)
        world.crash("h0")
        world.run_for(1.0)
        world.net.restart_host("h0")
        world.spawn("h0", serve())  # its main runs again
        world.run(asyncio.gather(*clients))
        return recorder.hexdigest(), recorder
    finally:
        world.close()


@pytest.mark.slow
def test_same_seed_same_trace_hash_twenty_times() -> None:
    first, recorder = scenario(1)
    assert recorder.count > 1000
    for _ in range(19):
        assert scenario(1)[0] == first


@pytest.mark.slow
def test_same_seed_same_hash_in_processes_with_different_hash_seeds() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import test_trace; print(test_trace.scenario(1)[0])"
    )
    here = str(Path(__file__).parent)
    hashes = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code, here],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        hashes.add(result.stdout.strip())
    assert hashes == {scenario(1)[0]}


def test_the_scenario_has_every_kind_of_event() -> None:
    recorder = TraceRecorder()
    world = World(
        2,
        observer=recorder,
        default_link=LinkConfig(
            latency=0.001, loss=0.05, reorder=0.05, duplicate=0.02, corrupt=0.01
        ),
    )
    try:
        for i in range(5):
            world.add(f"h{i}")
        world.spawn("h0", serve())
        clients = [world.spawn(f"h{i}", client(f"h{i}", until=4.0)) for i in range(1, 5)]
        world.net.partition("h1", "h0", at=0.5, duration=1.0)
        world.run_for(2.0)
        world.crash("h0")
        world.run_for(0.5)
        world.net.restart_host("h0")
        world.spawn("h0", serve())
        world.run(asyncio.gather(*clients))
    finally:
        world.close()
    kinds = {event.kind for event in recorder.events}
    assert kinds >= {
        "packet_sent",
        "packet_delivered",
        "packet_dropped",
        "packet_duplicated",
        "packet_reordered",
        "packet_corrupted",
        "stream_connect",
        "partitioned",
        "healed",
        "host_crashed",
        "host_restarted",
    }
    reasons = {e.reason for e in recorder.events if e.kind == "packet_dropped"}
    assert reasons >= {"loss", "partition", "host-down"}


def test_different_seeds_give_different_hashes() -> None:
    hashes = {scenario(seed)[0] for seed in (1, 2, 3)}
    assert len(hashes) == 3


def test_adding_a_host_does_not_change_another_links_fate() -> None:
    def lost_on_a_to_b(extra_hosts: int) -> list[tuple[int, int]]:
        recorder = TraceRecorder()
        world = World(
            5, observer=recorder, default_link=LinkConfig(latency=Uniform(0.001, 0.01), loss=0.2)
        )
        try:
            world.add("a")
            world.add("b")
            for i in range(extra_hosts):
                world.add(f"x{i}")

            async def sender(to: str) -> None:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=("0.0.0.0", 4000), remote_addr=(to, 4000)
                )
                for i in range(300):
                    transport.sendto(b"%d" % i)
                    await asyncio.sleep(0.001)
                transport.close()

            tasks = [world.spawn("a", sender("b"))]
            for i in range(0, extra_hosts - 1, 2):
                tasks.append(world.spawn(f"x{i}", sender(f"x{i + 1}")))
                tasks.append(world.spawn(f"x{i + 1}", sender("a")))
            world.run(asyncio.gather(*tasks))
            world.run_for(0.1)
        finally:
            world.close()
        return [
            (e.time_ns, e.size)  # type: ignore[attr-defined]
            for e in recorder.events
            if e.source == "link a->b" and e.kind in ("packet_dropped", "packet_delivered")
        ]

    alone = lost_on_a_to_b(0)
    crowded = lost_on_a_to_b(4)
    assert alone == crowded
    assert len(alone) == 300 + 0  # every datagram is accounted for


def test_recorder_hash_matches_the_json_lines_file(tmp_path: Path) -> None:
    stream_path = tmp_path / "streamed.jsonl"
    recorder = TraceRecorder(path=stream_path, clock=lambda: 42)
    events = [
        PacketSent("link a->b", 5, "udp", "a", "10.0.0.1:1", "b", "10.0.0.2:2", 3, "", 0),
        HostCrashed("sim.network", 7, "b"),
        ConnectionOpened("tcp x", "tcp", "1", "2", "client"),
    ]
    for event in events:
        recorder(event)
    recorder.close()
    written = tmp_path / "kept.jsonl"
    recorder.write_jsonl(written)
    digest = hashlib.sha256(written.read_bytes()).hexdigest()
    assert digest == recorder.hexdigest()
    assert stream_path.read_bytes() == written.read_bytes()
    lines = written.read_text().splitlines()
    assert json.loads(lines[2])["time_ns"] == 42  # stamped by the clock
    assert json.loads(lines[0]) == {
        "event": "packet_sent",
        "source": "link a->b",
        "time_ns": 5,
        "proto": "udp",
        "src_host": "a",
        "src": "10.0.0.1:1",
        "dst_host": "b",
        "dst": "10.0.0.2:2",
        "size": 3,
        "flags": "",
        "seq": 0,
    }
    assert (
        trace_hash(events[:2])
        == hashlib.sha256(
            "".join(canonical_line(e) + "\n" for e in events[:2]).encode()
        ).hexdigest()
    )
    buffer = io.StringIO()
    recorder.write_jsonl(buffer)
    assert buffer.getvalue() == written.read_text()


def test_bounded_recorder_still_hashes_everything_but_refuses_a_partial_file() -> None:
    full = TraceRecorder()
    small = TraceRecorder(keep=2)
    for i in range(5):
        event = HostCrashed("sim.network", i, "h")
        full(event)
        small(event)
    assert small.hexdigest() == full.hexdigest()
    assert len(small.events) == 2
    assert small.dropped == 3
    with pytest.raises(UsageError, match="no longer in memory"):
        small.write_jsonl(io.StringIO())


@dataclasses.dataclass(frozen=True, slots=True)
class Sample(Event):
    text: str
    number: int
    flag: bool
    ratio: float
    missing: None


@given(
    text=st.text(),
    number=st.integers(),
    flag=st.booleans(),
    ratio=st.floats(allow_nan=False, allow_infinity=False),
    stamp=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_canonical_line_is_sorted_compact_json(
    text: str, number: int, flag: bool, ratio: float, stamp: int | None
) -> None:
    event = Sample('source "x"', text, number, flag, ratio, None)
    expected: dict[str, object] = {"event": "sample", **dataclasses.asdict(event)}
    if stamp is not None:
        expected["time_ns"] = stamp
    assert canonical_line(event, time_ns=stamp) == json.dumps(
        expected, sort_keys=True, separators=(",", ":")
    )
    net = HostCrashed("sim.network", 5, text)
    assert canonical_line(net, time_ns=stamp) == json.dumps(
        {"event": "host_crashed", "source": "sim.network", "time_ns": 5, "host": text},
        sort_keys=True,
        separators=(",", ":"),
    )


PACKET_EVENTS = [
    PacketSent,
    PacketDelivered,
    PacketDropped,
    PacketDuplicated,
    PacketReordered,
    PacketCorrupted,
]


@given(
    kind=st.sampled_from(PACKET_EVENTS),
    texts=st.lists(st.text(), min_size=7, max_size=7),
    numbers=st.lists(st.integers(min_value=0), min_size=3, max_size=3),
)
def test_recording_field_values_equals_recording_the_event(
    kind: type[PacketEvent], texts: list[str], numbers: list[int]
) -> None:
    """The simulator's fast path (values, no event object) gives the same line, hash,
    count and (rebuilt) events as the ordinary observer call."""
    source, proto, src_host, src, dst_host, dst, flags = texts
    values: tuple[object, ...] = (
        source,
        numbers[0],
        proto,
        src_host,
        src,
        dst_host,
        dst,
        numbers[1],
        flags,
        numbers[2],
    )
    if kind is PacketDropped:
        values += (texts[0][::-1],)  # the reason
    fast, slow = TraceRecorder(), TraceRecorder()
    fast.record(kind, values)
    slow(kind(*values))  # type: ignore[arg-type]
    assert fast.lines == slow.lines == [canonical_line(kind(*values))]  # type: ignore[arg-type]
    assert fast.events == slow.events
    assert fast.hexdigest() == slow.hexdigest()
    assert fast.count == slow.count == 1


def test_the_hash_covers_every_line_whenever_it_is_read(tmp_path: Path) -> None:
    """Lines are hashed in batches; the hash read at any point covers all of them."""
    path = tmp_path / "trace.jsonl"
    recorder = TraceRecorder(keep=10, path=path)
    digest = hashlib.sha256()
    for i in range(700):
        if i % 2:
            recorder.record(HostCrashed, ("sim.network", i, f"h{i}"))
        else:
            recorder(HostRestarted("sim.network", i, f"h{i}", i))
        digest.update(recorder.lines[-1].encode() + b"\n")
        if i in (0, 255, 256, 511, 699):
            assert recorder.hexdigest() == digest.hexdigest()
    recorder.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.hexdigest()
    assert recorder.count == 700
    assert recorder.dropped == 690
    assert recorder.events[-1] == HostCrashed("sim.network", 699, "h699")
