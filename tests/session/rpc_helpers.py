"""Helpers for the RPC tests: a served RpcServer and clients over ``mem://``."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from netweave.server import Server
from netweave.session import RpcClient, RpcServer

_names = itertools.count()


@asynccontextmanager
async def served(rpc: RpcServer, *, stack: str = "lp4,raw") -> AsyncIterator[Server]:
    async with rpc.serve(f"mem://rpc-{next(_names)}", stack) as server:
        yield server


@asynccontextmanager
async def client_of(server: Server, **options: Any) -> AsyncIterator[RpcClient]:
    client = await RpcClient.connect(server.url, **options)
    try:
        yield client
    finally:
        await client.close()
