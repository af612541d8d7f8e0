"""QUIC stream throughput over loopback: netweave's ``quic://`` next to aioquic's own asyncio API.

Two set-ups move the same bytes (``--megabytes`` in ``--chunk``-sized writes on
one stream, client to server, then a one-byte acknowledgement back) with the
same certificates, the same QUIC settings and the same event loop:

* ``netweave``: ``QuicTransport`` on both ends (``connect`` / ``listen`` /
  ``accept``; ``send`` and ``receive`` on the stream);
* ``aioquic``: ``aioquic.asyncio.serve`` with a stream handler and
  ``aioquic.asyncio.connect`` + ``create_stream`` (an asyncio
  ``StreamReader``/``StreamWriter`` pair; ``drain`` after every write).

Both ends run in this process, so a figure is the throughput one CPU reaches
doing both sides' work (aioquic's packet protection and framing dominate).
Rounds alternate between the two; the median of ``--reps`` rounds is shown,
with the ratio netweave / aioquic (target >= 0.9). Wall-clock figures swing
when other processes share the CPU, so each round's process CPU time is
measured too, and the same bytes per CPU-second are shown as a steadier
second view. Only 127.0.0.1 is used.

Run from the repository root (``--loop uvloop`` to use uvloop for both)::

    python benchmarks/quic_throughput.py
    python benchmarks/quic_throughput.py --megabytes 64 --reps 9
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time  # determinism: ok (a benchmark measures wall time)
from collections.abc import Awaitable, Callable
from pathlib import Path

import trustme
from aioquic.asyncio.client import connect as aioquic_connect
from aioquic.asyncio.server import serve as aioquic_serve
from aioquic.quic.configuration import QuicConfiguration

from netweave.endpoints import parse_endpoint
from netweave.transports import QuicTransport

ALPN = "netweave"


def certificates(directory: Path) -> dict[str, str]:
    """A CA and a certificate for 127.0.0.1, as PEM files in ``directory``."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    files = {"ca": directory / "ca.pem", "cert": directory / "c.pem", "key": directory / "k.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    issued.private_key_pem.write_to_path(str(files["key"]))
    return {name: str(path) for name, path in files.items()}


async def run_netweave(total: int, chunk: bytes, pem: dict[str, str]) -> float:
    transport = QuicTransport()
    listen, _ = parse_endpoint(f"quic://127.0.0.1:0?cert={pem['cert']}&key={pem['key']}")
    listener = await transport.listen(listen)
    target, _ = parse_endpoint(f"{listener.url}?ca={pem['ca']}")
    client = await transport.connect(target)
    server = await listener.accept()

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
    await server.close()
    await client.close()
    await listener.close()
    return total / elapsed / 1e6


async def run_aioquic(total: int, chunk: bytes, pem: dict[str, str]) -> float:
    server_config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server_config.load_cert_chain(pem["cert"], pem["key"])
    client_config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN])
    client_config.load_verify_locations(cafile=pem["ca"])

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def consume() -> None:
            received = 0
            while received < total:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                received += len(data)
            writer.write(b"k")

        tasks.add(asyncio.ensure_future(consume()))

    tasks: set[asyncio.Future[None]] = set()
    server = await aioquic_serve("127.0.0.1", 0, configuration=server_config, stream_handler=handle)
    assert server._transport is not None
    port = server._transport.get_extra_info("sockname")[1]
    async with aioquic_connect("127.0.0.1", port, configuration=client_config) as client:
        reader, writer = await client.create_stream()
        start = time.perf_counter()
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        assert await reader.readexactly(1) == b"k"
        elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    server.close()
    return total / elapsed / 1e6


async def compare(args: argparse.Namespace) -> None:
    total = args.megabytes * 1024 * 1024
    chunk = bytes(range(256)) * (args.chunk // 256)
    runs: dict[str, Callable[[int, bytes, dict[str, str]], Awaitable[float]]] = {
        "netweave": run_netweave,
        "aioquic": run_aioquic,
    }
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory(prefix="nw-quic-") as directory:
        pem = certificates(Path(directory))
        await run_netweave(total // 8, chunk, pem)  # warm up
        await run_aioquic(total // 8, chunk, pem)
        for rep in range(args.reps):
            order = list(runs) if rep % 2 == 0 else list(reversed(runs))
            for name in order:
                started = time.process_time()
                wall[name].append(await runs[name](total, chunk, pem))
                cpu[name].append(total / (time.process_time() - started) / 1e6)
    for name in runs:
        print(
            f"{name:9} median {statistics.median(wall[name]):7.1f} MB/s   "
            f"{statistics.median(cpu[name]):7.1f} MB per CPU-second   rounds: "
            + ", ".join(f"{v:.1f}" for v in wall[name])
        )
    ratio = statistics.median(wall["netweave"]) / statistics.median(wall["aioquic"])
    cpu_ratio = statistics.median(cpu["netweave"]) / statistics.median(cpu["aioquic"])
    print(
        f"ratio netweave / aioquic: {ratio:.2f} wall clock, {cpu_ratio:.2f} per CPU-second "
        f"(target >= 0.9; {args.megabytes} MiB in {args.chunk} B writes, {args.loop} loop)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per write")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(compare(args))
    else:
        asyncio.run(compare(args))


if __name__ == "__main__":
    main()
