"""netweave's TLS layer (``tls://``) over simulated TCP: it works, and replays exactly.

asyncio's own TLS (``ssl=``, ``loop.start_tls``) is refused in a simulation;
netweave's is a sans-IO layer over any stream, so it runs over simulated links.
OpenSSL's key shares are random whatever the seed, but with RSA certificates
every record has the same size on every run, so the trace (sizes and times)
replays byte for byte. ECDSA signatures vary in length by a byte now and then,
which shows in the trace; use RSA certificates in simulated tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import trustme

import netweave
from netweave.sim import Simulation


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pem")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("server", key_type=trustme.KeyType.RSA)
    files = {"ca": root / "ca.pem", "cert": root / "server.pem", "key": root / "server.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    issued.private_key_pem.write_to_path(str(files["key"]))
    return files


def _run(pem: dict[str, Path], seed: int) -> tuple[list[Any], str]:
    got: list[Any] = []

    async def echo(channel: netweave.Channel[Any]) -> None:
        async for message in channel:
            await channel.send(message)

    async def server() -> None:
        url = f"tls://0.0.0.0:7443?cert={pem['cert']}&key={pem['key']}"
        async with netweave.serve(url, "lp4,json", echo):
            await asyncio.sleep(3600)

    async def client() -> None:
        await asyncio.sleep(0.1)
        url = f"tls://server:7443?ca={pem['ca']}"
        async with await netweave.connect(url, "lp4,json") as channel:
            assert isinstance(channel, netweave.StreamChannel)
            got.append(channel.connection.extra("tls_version"))
            for n in range(30):
                await channel.send({"n": n})
                got.append(await channel.receive())

    with Simulation(seed=seed) as sim:
        sim.add_host("server")
        sim.add_host("client")
        sim.link("client", "server", latency=0.01, jitter=0.002, loss=0.05)
        sim.spawn("server", server)
        done = sim.spawn("client", client)
        sim.run_until(done.done)
        done.result()
        return got, sim.trace_hash()


def test_tls_urls_work_over_a_lossy_simulated_link_and_replay(pem: dict[str, Path]) -> None:
    got, trace = _run(pem, seed=3)
    assert got == ["TLSv1.3"] + [{"n": n} for n in range(30)]
    for _ in range(3):
        assert _run(pem, seed=3) == (got, trace)
    assert _run(pem, seed=4)[1] != trace
