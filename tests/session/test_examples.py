"""The RPC example: its simulator scenario holds for a few seeds (the sweep covers more),
and its real-TCP run survives a proxy that kills the connection."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

from netweave.sim import Simulation

REAL_LOOP = True  # the async test uses real loopback sockets (sync ones build a Simulation)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rpc_resilient.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rpc_resilient_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 7])
def test_rpc_service_survives_a_flapping_link(
    seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    with Simulation(seed, trace=False, max_steps=20_000_000) as sim:
        example.scenario(sim)
    assert "400 calls answered" in capsys.readouterr().out


async def test_rpc_service_survives_killed_sockets_on_real_tcp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = load_example()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = await asyncio.wait_for(example.main(calls=60, kill_every=20, port=port), 30)
    assert report.answered == 60
    assert report.wrong == []
    assert report.reconnects >= 1
    assert "60 calls answered, 0 wrong" in capsys.readouterr().out
