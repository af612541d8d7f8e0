"""The RPC example's simulator scenario holds for a few seeds (the sweep covers more)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from netweave.sim import Simulation

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
