"""RPC over real TCP loopback (real loop): concurrency, a killed socket, graceful shutdown.

No timer is waited on: every wait ends on an event or on I/O.
"""

from __future__ import annotations

import asyncio

import pytest

from netweave.errors import ConnectionBroken, Overloaded
from netweave.resilience import graceful_shutdown
from netweave.session import RpcClient, RpcServer

REAL_LOOP = True


def make_server() -> tuple[RpcServer, asyncio.Event, asyncio.Event]:
    gate = asyncio.Event()
    started = asyncio.Event()
    rpc = RpcServer(codec="json")

    @rpc.method()
    async def square(request: int) -> int:
        return request * request

    @rpc.method()
    async def wait(request: str) -> str:
        started.set()
        await gate.wait()
        return request.upper()

    return rpc, gate, started


async def test_many_concurrent_calls_over_tcp() -> None:
    rpc, _, _ = make_server()
    async with (
        rpc.serve("tcp://127.0.0.1:0") as server,
        await RpcClient.connect(server.url, codec="json") as client,
    ):
        results = await asyncio.gather(*(client.call("square", i) for i in range(1000)))
        assert results == [i * i for i in range(1000)]


class KillableProxy:
    """A TCP proxy whose connections can be killed (reset) mid-run."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("tcp://").rpartition(":")
        self.upstream = (host, int(port))
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def kill(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.kill()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_socket_killed_mid_run_fails_pending_calls() -> None:
    rpc, _, started = make_server()
    async with rpc.serve("tcp://127.0.0.1:0") as server:
        proxy = KillableProxy(server.url)
        url = await proxy.start()
        client = await RpcClient.connect(url, codec="json")
        assert await client.call("square", 5) == 25
        pending = asyncio.create_task(client.call("wait", "x"))
        await started.wait()
        proxy.kill()  # the connection is reset under both ends
        with pytest.raises(ConnectionBroken):
            await pending
        with pytest.raises(ConnectionBroken):
            await client.call("square", 3)
        await client.close()
        # The server noticed too and serves new connections as before.
        async with await RpcClient.connect(url, codec="json") as fresh:
            assert await fresh.call("square", 4) == 16
        await proxy.close()


async def test_graceful_shutdown_lets_calls_finish_and_refuses_new_ones() -> None:
    rpc, gate, started = make_server()
    server = await rpc.serve("tcp://127.0.0.1:0")
    client = await RpcClient.connect(server.url, codec="json")
    pending = asyncio.create_task(client.call("wait", "finish me"))
    await started.wait()
    shutdown = asyncio.create_task(graceful_shutdown(server, timeout=30.0, drain=[rpc]))
    for _ in range(1000):  # until the GOAWAY has arrived
        try:
            await client.call("square", 2)
        except Overloaded:
            break
    else:
        pytest.fail("the draining server kept admitting calls")
    gate.set()
    assert await pending == "FINISH ME"
    assert await shutdown is True
    assert rpc.connections == 0
    await client.close()
