"""The session invariants under the simulator, for a few seeds each.

The full sweeps (200 seeds each) are documented in ``sim_scenarios.py`` and
run with ``netweave sim sweep``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from netweave.sim import Simulation

from . import sim_scenarios


def run(scenario: Callable[[Simulation], None], seed: int) -> None:
    with Simulation(seed, trace=False, max_steps=50_000_000) as sim:
        scenario(sim)


@pytest.mark.parametrize("seed", range(5))
def test_rpc_calls_answer_right_or_hit_their_deadline_under_faults(seed: int) -> None:
    run(sim_scenarios.rpc_under_faults, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_ten_thousand_messages_survive_connection_resets(seed: int) -> None:
    run(sim_scenarios.resume_10k, seed)


@pytest.mark.parametrize("seed", range(3))
def test_reliable_datagrams_under_loss_duplication_and_reordering(seed: int) -> None:
    run(sim_scenarios.reliable_datagrams, seed)


@pytest.mark.slow
def test_ten_thousand_reliable_datagrams_under_loss() -> None:
    run(sim_scenarios.reliable_datagrams_10k, 7)


def test_the_same_seed_replays_the_same_trace() -> None:
    hashes = []
    for _ in range(2):
        with Simulation(11) as sim:
            sim_scenarios.resume(sim, messages=300, min_reconnects=0)
            hashes.append(sim.trace_hash())
    assert hashes[0] == hashes[1]
