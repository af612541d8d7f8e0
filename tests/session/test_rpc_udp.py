"""RPC over ReliableChannel over real UDP loopback (real loop; no timer is waited on)."""

from __future__ import annotations

import asyncio
from typing import Any

import netweave
from netweave.session import ReliableChannel, RpcClient, RpcServer

REAL_LOOP = True


async def test_rpc_over_reliable_datagrams() -> None:
    rpc = RpcServer()

    @rpc.method()
    async def reverse(request: bytes) -> bytes:
        return request[::-1]

    async def handler(channel: netweave.Channel[Any]) -> None:
        assert isinstance(channel, netweave.DatagramChannel)
        reliable = ReliableChannel(channel)
        try:
            await rpc.handle(reliable)
        finally:
            await reliable.close()

    async with netweave.serve("udp://127.0.0.1:0", "raw", handler) as server:
        lower = await netweave.connect(server.url, "raw")
        assert isinstance(lower, netweave.DatagramChannel)
        async with RpcClient(ReliableChannel(lower)) as client:
            big = bytes(range(256)) * 200  # 51,200 bytes: fragmented into many datagrams
            results = await asyncio.gather(
                *(client.call("reverse", b"%d" % i) for i in range(200)),
                client.call("reverse", big),
            )
            assert results[:200] == [(b"%d" % i)[::-1] for i in range(200)]
            assert results[200] == big[::-1]
