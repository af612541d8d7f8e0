"""The pytest plugin, driven through pytester (in-process runs of small test files)."""

from __future__ import annotations

import importlib.metadata

import pytest

from netweave.errors import UsageError
from netweave.sim import parse_seeds
from netweave.testing import sim_test

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


@pytest.fixture
def tester(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


def _installed() -> bool:
    """Whether the plugin is installed as a ``pytest11`` entry point (then it loads itself)."""
    return any(
        ep.value == "netweave.testing.pytest_plugin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )


PLUGIN = [] if _installed() else ["-p", "netweave.testing.pytest_plugin"]


def run(tester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return tester.runpytest(*PLUGIN, "-p", "no:cacheprovider", *args)


def test_a_decorated_test_runs_once_per_seed_in_virtual_time(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import asyncio
        from netweave.sim import SimLoop
        from netweave.testing import sim_test

        SEEN = []

        @sim_test(seeds=[4, 5, 6])
        async def test_sleep(simulation, netweave_seed):
            assert isinstance(asyncio.get_running_loop(), SimLoop)
            assert simulation.seed == netweave_seed
            await asyncio.sleep(7 * 24 * 3600)
            SEEN.append((netweave_seed, simulation.now))

        def test_seen():
            assert SEEN == [(4, 604800.0), (5, 604800.0), (6, 604800.0)]
        """
    )
    result = run(tester, "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_sleep?seed=4? PASSED*", "*test_sleep?seed=6? PASSED*"])


def test_a_failure_names_the_seed_and_the_replay_command(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_flaky="""
        import asyncio
        import random
        from netweave.testing import sim_test

        @sim_test(seeds=range(4))
        async def test_flaky(simulation):
            await asyncio.sleep(1)
            assert simulation.seed != 2, "unlucky"
        """
    )
    result = run(tester)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: unlucky*",
            "E * netweave simulation seed 2; replay it with: "
            "pytest 'test_flaky.py::test_flaky?seed=2?'",
        ]
    )
    replay = run(tester, "test_flaky.py::test_flaky[seed=2]")
    replay.assert_outcomes(failed=1)


def test_the_marker_alone_works_and_pytest_asyncio_keeps_its_tests(
    tester: pytest.Pytester,
) -> None:
    tester.makepyfile(
        """
        import asyncio
        import pytest
        from netweave.sim import SimLoop

        @pytest.mark.netweave_sim(seeds=range(2), max_time=100)
        async def test_marked(network):
            assert isinstance(asyncio.get_running_loop(), SimLoop)
            network.add_host("a")
            await asyncio.sleep(50)

        @pytest.mark.netweave_sim(seeds=[0], max_time=100)
        async def test_limited(simulation):
            await asyncio.sleep(500)

        async def test_plain_asyncio():
            assert not isinstance(asyncio.get_running_loop(), SimLoop)
            await asyncio.sleep(0)
        """
    )
    result = run(tester, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_marked?seed=1? PASSED*", "*SimulationLimitExceeded*max_time=100*"]
    )


def test_seeds_from_the_command_line(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        from netweave.testing import sim_test

        @sim_test
        async def test_any(netweave_seed):
            assert netweave_seed in range(10, 13)
        """
    )
    run(tester, "--netweave-seeds", "10..12").assert_outcomes(passed=3)
    run(tester).assert_outcomes(passed=0, failed=5)  # the default seeds are 0..4


def test_fixtures_in_a_plain_test(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import asyncio

        def test_driving_by_hand(simulation, network):
            assert simulation.seed == 0
            assert network is simulation.network
            network.add_host("a")

            async def main():
                await asyncio.sleep(5)

            simulation.spawn("a", main)
            simulation.run()
            assert simulation.now == 5
        """
    )
    run(tester).assert_outcomes(passed=1)


def test_bad_uses_are_refused() -> None:
    with pytest.raises(UsageError, match="async def"):
        sim_test(seeds=[1])(lambda: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(UsageError, match="non-empty"):
        sim_test(seeds=[])
    assert parse_seeds("0..3,7, 9") == [0, 1, 2, 3, 7, 9]
    with pytest.raises(UsageError, match="backwards"):
        parse_seeds("5..1")
    with pytest.raises(UsageError, match="bad seeds"):
        parse_seeds("a..b")
