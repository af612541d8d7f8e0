"""TLS throughput over loopback TCP: netweave's TLS layer next to asyncio's own TLS, in one run.

Two set-ups move the same bytes (``--megabytes`` in ``--chunk``-sized writes,
client to server, then a one-byte acknowledgement) with the same certificates
and the same event loop:

* ``netweave``: ``tls://`` on both ends (``TlsTransport``: TCP plus the sans-IO
  ``Tls`` layer on ``ssl.MemoryBIO``);
* ``asyncio``: ``asyncio.start_server(..., ssl=context)`` and
  ``asyncio.open_connection(..., ssl=context)`` (asyncio's ``sslproto``, the
  same ``ssl.SSLObject`` underneath).

Both ends run in this process, so a figure is the throughput one CPU reaches
doing both sides' work. Rounds alternate between the two; the median of
``--reps`` rounds is shown, with the ratio netweave / asyncio (target >= 0.9).

Run from the repository root (``--loop uvloop`` to use uvloop for both)::

    python benchmarks/tls_throughput.py
    python benchmarks/tls_throughput.py --megabytes 256 --reps 7
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable

import trustme

from netweave.endpoints import parse_endpoint
from netweave.transports import StreamTransport, TlsTransport

HOST = "bench.example"


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client, server


async def run_netweave(
    total: int, chunk: bytes, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> float:
    transport = TlsTransport(client_context=client_ctx, server_context=server_ctx)
    listen, _ = parse_endpoint("tls://127.0.0.1:0")
    listener = await transport.listen(listen)
    target, _ = parse_endpoint(f"{listener.url}?server_hostname={HOST}")
    assert isinstance(transport, StreamTransport)
    client = await transport.connect(target)
    server = await listener.accept()
    await listener.close()

    async def sink() -> None:
        received = 0
        while received < total:
            received += len(await server.receive())
        await server.send(b"k")

    start = time.perf_counter()
    receiving = asyncio.create_task(sink())
    for _ in range(total // len(chunk)):
        await client.send(chunk)
    assert await client.receive() == b"k"
    elapsed = time.perf_counter() - start
    await receiving
    await client.close()
    await server.close()
    return total / elapsed / 1e6


async def run_asyncio(
    total: int, chunk: bytes, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> float:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = 0
        while received < total:
            data = await reader.read(256 * 1024)
            if not data:
                break
            received += len(data)
        writer.write(b"k")
        await writer.drain()
        await done
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx, server_hostname=HOST
    )
    start = time.perf_counter()
    for _ in range(total // len(chunk)):
        writer.write(chunk)
        await writer.drain()
    assert await reader.readexactly(1) == b"k"
    elapsed = time.perf_counter() - start
    done.set_result(None)
    writer.close()
    server.close()
    await server.wait_closed()
    return total / elapsed / 1e6


async def compare(args: argparse.Namespace) -> None:
    client_ctx, server_ctx = contexts()
    total = args.megabytes * 1024 * 1024
    chunk = bytes(range(256)) * (args.chunk // 256)
    runs: dict[str, Callable[..., Awaitable[float]]] = {
        "netweave": run_netweave,
        "asyncio": run_asyncio,
    }
    results: dict[str, list[float]] = {name: [] for name in runs}
    await run_netweave(total // 8, chunk, client_ctx, server_ctx)  # warm up
    await run_asyncio(total // 8, chunk, client_ctx, server_ctx)
    for rep in range(args.reps):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for name in order:
            results[name].append(await runs[name](total, chunk, client_ctx, server_ctx))
    for name, values in results.items():
        print(
            f"{name:9} median {statistics.median(values):8.1f} MB/s   rounds: "
            + ", ".join(f"{v:.0f}" for v in values)
        )
    ratio = statistics.median(results["netweave"]) / statistics.median(results["asyncio"])
    print(
        f"ratio netweave / asyncio: {ratio:.2f} (target >= 0.9; {args.megabytes} MiB "
        f"in {args.chunk} B writes, {args.loop} loop)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per write")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(compare(args))
    else:
        asyncio.run(compare(args))


if __name__ == "__main__":
    main()
