"""RPC calls per second over TCP loopback, next to a plain asyncio request/response server.

Both sides use the same framing on one TCP connection: 4-byte big-endian
length-prefixed frames, 64 concurrent callers multiplexed by a request id.

* ``plain``: the reference, a plain asyncio request/response pair written with
  asyncio streams (``start_server`` / ``open_connection``) as an application
  would: frame = 8-byte id + payload; the server answers each frame in turn;
  the client resolves a future per id from one reading task.
* ``protocol``: the same with raw ``asyncio.Protocol`` callbacks (no streams,
  no tasks): a floor no per-call-task design reaches, shown for scale.
* ``netweave``: ``RpcServer``/``RpcClient`` over ``tcp://`` with ``lp4,raw``
  (HELLO, correlation ids, a task per call, admission control, keepalive).

Each case runs ``--calls`` calls ``--reps`` times in one process (server and
client share the loop, as they share the CPU); the median calls/s and the
ratios are printed. The issue's target is netweave / plain >= 0.7.
Only 127.0.0.1 is used.

    python benchmarks/rpc_calls.py --calls 20000 --callers 64 --reps 5 [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import time  # determinism: ok (a benchmark measures wall time)
from collections.abc import Awaitable, Callable
from typing import cast

from netweave.session import RpcClient, RpcServer

_HEADER = struct.Struct(">IQ")  # length (of id + payload), then the 8-byte request id


class _PlainServer(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        pos = 0
        while len(buffer) - pos >= 4:
            (length,) = struct.unpack_from(">I", buffer, pos)
            end = pos + 4 + length
            if end > len(buffer):
                break
            out.append(bytes(buffer[pos:end]))  # echo the frame: same id, same payload
            pos = end
        del buffer[:pos]
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


class _PlainClient(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._next = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        while len(buffer) - pos >= 12:
            length, call_id = _HEADER.unpack_from(buffer, pos)
            end = pos + 4 + length
            if end > len(buffer):
                break
            future = self._waiting.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result(bytes(buffer[pos + 12 : end]))
            pos = end
        del buffer[:pos]

    async def call(self, payload: bytes) -> bytes:
        assert self._transport is not None
        self._next += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        self._transport.write(_HEADER.pack(8 + len(payload), self._next) + payload)
        return await future


async def _drive(
    call: Callable[[bytes], Awaitable[bytes]], calls: int, callers: int
) -> tuple[float, float]:
    """Calls per wall-clock second, and per second of this process's CPU time
    (steadier when other processes share the machine)."""
    payload = b"x" * 100
    per_caller = calls // callers

    async def caller() -> None:
        for _ in range(per_caller):
            await call(payload)

    wall = time.perf_counter()  # determinism: ok (benchmark)
    cpu = time.process_time()  # determinism: ok (benchmark)
    await asyncio.gather(*(caller() for _ in range(callers)))
    done = per_caller * callers
    wall_s = time.perf_counter() - wall  # determinism: ok (benchmark)
    cpu_s = time.process_time() - cpu  # determinism: ok (benchmark)
    return done / wall_s, done / cpu_s


_served: list[asyncio.Event] = []


async def _stream_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    done = asyncio.Event()
    _served.append(done)
    try:
        while True:
            head = await reader.readexactly(4)
            (length,) = struct.unpack(">I", head)
            body = await reader.readexactly(length)
            writer.write(head + body)  # the answer: same id, same payload
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        done.set()


async def plain(calls: int, callers: int) -> tuple[float, float]:
    server = await asyncio.start_server(_stream_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    waiting: dict[int, asyncio.Future[bytes]] = {}
    counter = 0

    async def read_answers() -> None:
        try:
            while True:
                length, call_id = _HEADER.unpack(await reader.readexactly(12))
                payload = await reader.readexactly(length - 8)
                future = waiting.pop(call_id, None)
                if future is not None and not future.done():
                    future.set_result(payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def call(payload: bytes) -> bytes:
        nonlocal counter
        counter += 1
        future = asyncio.get_running_loop().create_future()
        waiting[counter] = future
        writer.write(_HEADER.pack(8 + len(payload), counter) + payload)
        return await future

    answers = asyncio.create_task(read_answers())
    try:
        await _drive(call, calls // 10, callers)  # warm up
        return await _drive(call, calls, callers)
    finally:
        writer.close()
        await writer.wait_closed()
        await answers
        for served in _served:
            await served.wait()  # the server saw the end of stream and finished
        _served.clear()
        server.close()
        await server.wait_closed()


async def protocol(calls: int, callers: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_PlainServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, client = await loop.create_connection(_PlainClient, "127.0.0.1", port)
    try:
        await _drive(client.call, calls // 10, callers)  # warm up
        return await _drive(client.call, calls, callers)
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


async def netweave_rpc(calls: int, callers: int) -> tuple[float, float]:
    rpc = RpcServer(max_in_flight=max(64, callers))

    @rpc.method()
    async def echo(request: bytes) -> bytes:
        return request

    async with (
        rpc.serve("tcp://127.0.0.1:0") as server,
        await RpcClient.connect(server.url) as client,
    ):

        async def call(payload: bytes) -> bytes:
            result: bytes = await client.call("echo", payload)
            return result

        await _drive(call, calls // 10, callers)  # warm up
        return await _drive(call, calls, callers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run both on uvloop")
    args = parser.parse_args()
    runner: Callable[[Awaitable[tuple[float, float]]], tuple[float, float]] = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    cases = {"plain": plain, "protocol": protocol, "netweave": netweave_rpc}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):  # interleaved, so drift hits every case alike
        for name, case in cases.items():
            per_wall, per_cpu = runner(case(args.calls, args.callers))
            wall[name].append(per_wall)
            cpu[name].append(per_cpu)
    for label, results in (("wall clock", wall), ("CPU time", cpu)):
        medians = {name: statistics.median(values) for name, values in results.items()}
        print(f"calls per second of {label} (median of {args.reps}):")
        for name, value in medians.items():
            spread = ", ".join(f"{v:,.0f}" for v in results[name])
            print(f"  {name:>9}: {value:>10,.0f}   (runs: {spread})")
        ratio = medians["netweave"] / medians["plain"]
        verdict = "meets" if ratio >= 0.7 else "misses"
        print(f"  ratio {ratio:.2f} netweave / plain ({verdict} the 0.7 target); ", end="")
        print(f"{medians['netweave'] / medians['protocol']:.2f} netweave / protocol")


if __name__ == "__main__":
    main()
