"""Reliable-datagram goodput next to QUIC, over the same simulated lossy link.

Two hosts in a :class:`netweave.sim.Simulation` joined by one link (both
directions alike): ``--bandwidth`` bit/s with a ``--queue`` byte tail-drop
queue, ``--latency`` seconds each way, and random loss (``--loss``, 1% and 10%
by default). Over that link, with the same seed, two runs move the same
application bytes (``--megabytes`` in ``--message``-byte writes) from the
client to the server:

* ``arq``: :class:`netweave.session.ReliableChannel` over simulated UDP
  (``udp://``, ``raw``), both ends running the ARQ core with its defaults;
* ``quic``: one stream of netweave's ``quic://`` transport (aioquic inside, with
  its default NewReno congestion control unless ``--quic-cc cubic``).

Goodput is application bytes over simulated time, from the client's first
write (after QUIC's handshake) until the server has read the last byte; it is
printed in Mbit/s per seed, then the median over ``--seeds`` and the ratio
ARQ / QUIC (the issue's target is >= 0.8). Simulated time makes the figures
exact and repeatable: the same arguments print the same numbers on any
machine; only the run time depends on the CPU.

Run from the repository root::

    python benchmarks/arq_goodput.py
    python benchmarks/arq_goodput.py --megabytes 16 --seeds 5 --loss 0.01 0.05 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

import netweave
from netweave.endpoints import parse_endpoint
from netweave.session import ReliableChannel
from netweave.sim import Simulation
from netweave.transports import QuicTransport

PORT = 9000


@dataclass(frozen=True)
class Setting:
    bandwidth: float
    queue: int
    latency: float
    loss: float
    total: int
    message: int
    quic_cc: str

    def link(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "loss": self.loss,
            "bandwidth": self.bandwidth,
            "queue_limit": self.queue,
        }

    def payload(self) -> bytes:
        return bytes(range(256)) * (self.message // 256) + bytes(self.message % 256)


@dataclass(frozen=True)
class Result:
    goodput: float  # Mbit/s of simulated time
    lost: int  # packets the link dropped (random loss and queue overflow), both directions
    retransmissions: int | None = None  # segments the ARQ sender sent again


def _world(seed: int, setting: Setting) -> Simulation:
    sim = Simulation(seed, trace=False, max_time=36_000)
    sim.add_host("server")
    sim.add_host("client")
    sim.link("client", "server", **setting.link())
    return sim


def _lost(sim: Simulation) -> int:
    return sum(
        sim.network.link(a, b).stats.lost + sim.network.link(a, b).stats.queue_dropped
        for a, b in (("client", "server"), ("server", "client"))
    )


def run_arq(seed: int, setting: Setting) -> Result:
    """``ReliableChannel`` over simulated UDP."""
    finished: list[float] = []
    stats: list[int] = []
    payload = setting.payload()
    count = setting.total // len(payload)

    async def server_main() -> None:
        async def handler(channel: netweave.Channel[Any]) -> None:
            assert isinstance(channel, netweave.DatagramChannel)
            reliable = ReliableChannel(channel)
            received = 0
            while received < count * len(payload):
                received += len(await reliable.receive())
            finished.append(asyncio.get_running_loop().time())
            await reliable.close()

        async with netweave.serve(f"udp://0.0.0.0:{PORT}", "raw", handler) as server:
            await server.serve_forever()

    async def client_main() -> float:
        lower = await netweave.connect(f"udp://server:{PORT}", "raw")
        assert isinstance(lower, netweave.DatagramChannel)
        reliable = ReliableChannel(lower)
        start = asyncio.get_running_loop().time()
        for _ in range(count):
            await reliable.send(payload)
        await reliable.close()
        stats.append(reliable.core.retransmissions)
        return start

    with _world(seed, setting) as sim:
        sim.spawn("server", server_main)
        client = sim.spawn("client", client_main)
        sim.run_until(lambda: client.done() and bool(finished))
        start = client.result()
        goodput = count * len(payload) * 8 / (finished[0] - start) / 1e6
        return Result(goodput, _lost(sim), stats[0])


def run_quic(seed: int, setting: Setting, pem: dict[str, str]) -> Result:
    """One ``quic://`` stream over simulated UDP."""
    finished: list[float] = []
    done = asyncio.Event()
    payload = setting.payload()
    count = setting.total // len(payload)
    transport = QuicTransport()
    options = f"&congestion_control={setting.quic_cc}&idle_timeout=600"

    async def listen() -> Any:
        endpoint, _ = parse_endpoint(
            f"quic://0.0.0.0:{PORT}?cert={pem['cert']}&key={pem['key']}{options}"
        )
        return await transport.listen(endpoint)

    async def serve(listener: Any) -> None:
        stream = await listener.accept()
        received = 0
        while received < count * len(payload):
            data = await stream.receive()
            assert data, "the stream ended early"
            received += len(data)
        finished.append(asyncio.get_running_loop().time())
        done.set()
        await stream.close()
        await listener.close()

    async def client_main() -> float:
        endpoint, _ = parse_endpoint(f"quic://server:{PORT}?ca={pem['ca']}{options}")
        stream = await transport.connect(endpoint)
        start = asyncio.get_running_loop().time()
        for _ in range(count):
            await stream.send(payload)
        await stream.send_eof()
        await done.wait()
        await stream.close()
        return start

    with _world(seed, setting) as sim:
        listener = sim.run_main(lambda: sim.spawn("server", listen))
        sim.spawn("server", serve, listener)
        client = sim.spawn("client", client_main)
        sim.run_until(client.done)
        start = client.result()
        return Result(count * len(payload) * 8 / (finished[0] - start) / 1e6, _lost(sim))


def certificates(directory: Path) -> dict[str, str]:
    """RSA certificates (fixed-size signatures keep simulated runs repeatable)."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("server", key_type=trustme.KeyType.RSA)
    files = {"ca": directory / "ca.pem", "cert": directory / "c.pem", "key": directory / "k.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    issued.private_key_pem.write_to_path(str(files["key"]))
    return {name: str(path) for name, path in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=4, help="MiB moved per run (4)")
    parser.add_argument("--message", type=int, default=16384, help="bytes per write (16384)")
    parser.add_argument("--bandwidth", type=float, default=10e6, help="bit/s (10e6)")
    parser.add_argument("--queue", type=int, default=64_000, help="link queue, bytes (64000)")
    parser.add_argument("--latency", type=float, default=0.010, help="one way, s (0.010)")
    parser.add_argument("--loss", type=float, nargs="+", default=[0.01, 0.10])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting (3)")
    parser.add_argument("--quic-cc", choices=("reno", "cubic"), default="reno")
    args = parser.parse_args()
    print(
        f"link: {args.bandwidth / 1e6:g} Mbit/s, {args.queue} B queue, "
        f"{args.latency * 1e3:g} ms each way; {args.megabytes:g} MiB in "
        f"{args.message} B writes; QUIC congestion control {args.quic_cc}"
    )
    with tempfile.TemporaryDirectory(prefix="nw-arq-goodput-") as directory:
        pem = certificates(Path(directory))
        for loss in args.loss:
            setting = Setting(
                args.bandwidth,
                args.queue,
                args.latency,
                loss,
                int(args.megabytes * 1024 * 1024),
                args.message,
                args.quic_cc,
            )
            arq: list[float] = []
            quic: list[float] = []
            for seed in range(args.seeds):
                a = run_arq(seed, setting)
                q = run_quic(seed, setting, pem)
                arq.append(a.goodput)
                quic.append(q.goodput)
                print(
                    f"  loss {loss:5.1%} seed {seed}: arq {a.goodput:6.2f} Mbit/s "
                    f"({a.retransmissions} retransmitted, {a.lost} packets dropped)   "
                    f"quic {q.goodput:6.2f} Mbit/s ({q.lost} packets dropped)"
                )
            a_med, q_med = statistics.median(arq), statistics.median(quic)
            print(
                f"loss {loss:5.1%}: arq {a_med:6.2f} Mbit/s   quic {q_med:6.2f} Mbit/s   "
                f"ratio arq / quic {a_med / q_med:.2f} (target >= 0.8)"
            )


if __name__ == "__main__":
    main()
