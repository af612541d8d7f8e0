"""pytest plugin: run ``async def`` tests inside a deterministic simulation, seed by seed.

::

    from netweave.testing import sim_test

    @sim_test(seeds=range(5))
    async def test_echo(simulation):
        simulation.add_host("server")
        ...

or, equivalently, ``@pytest.mark.netweave_sim(seeds=range(5))`` on an
``async def`` test. Each seed becomes its own test item, ``test_echo[seed=3]``;
the test body runs as the simulation's driver (:meth:`Simulation.run_main`),
so ``await asyncio.sleep(60)`` lets a simulated minute pass at once. On
failure the error carries the seed and the command that replays it.

Fixtures: ``simulation`` (a :class:`~netweave.sim.Simulation` for the item's
seed, closed afterwards), ``network`` (its :class:`~netweave.sim.Network`)
and ``netweave_seed``. Option ``--netweave-seeds 0..99`` replaces every
marker's seeds. Decorated tests are plain functions to pytest, so
pytest-asyncio (auto mode) leaves them alone; they cannot use async fixtures.

PYTEST_DONT_REWRITE (nothing here to rewrite; importable before pytest loads it)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Final, TypeVar, overload

import pytest

from ..errors import UsageError
from ..sim import Network, Simulation, parse_seeds

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_SEEDS",
    "network",
    "netweave_seed",
    "sim_test",
    "simulation",
]

MARKER: Final = "netweave_sim"
#: Seeds used when a marker names none.
DEFAULT_SEEDS: Final = tuple(range(5))
#: A simulated test that runs more callbacks than this fails instead of spinning.
DEFAULT_MAX_STEPS: Final = 5_000_000
_SEED_ARG: Final = "netweave_seed"
_INJECTED: Final = ("simulation", _SEED_ARG, "request")

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])
TestFunction = Callable[..., Coroutine[Any, Any, Any]]


@overload
def sim_test(
    seeds: F,
) -> Callable[..., None]: ...


@overload
def sim_test(
    seeds: Iterable[int] = ...,
    *,
    max_time: float | None = None,
    max_steps: int | None = DEFAULT_MAX_STEPS,
) -> Callable[[TestFunction], Callable[..., None]]: ...


def sim_test(
    seeds: Iterable[int] | TestFunction = DEFAULT_SEEDS,
    *,
    max_time: float | None = None,
    max_steps: int | None = DEFAULT_MAX_STEPS,
) -> Callable[..., None] | Callable[[TestFunction], Callable[..., None]]:
    """Run the decorated ``async def`` test in a fresh simulation for each of ``seeds``.

    ``max_time`` (simulated seconds) and ``max_steps`` bound each run. Usable
    bare (``@sim_test``) too. The test may take ``simulation``, ``network`` and
    ``netweave_seed`` besides ordinary fixtures.
    """
    if callable(seeds):
        return sim_test()(seeds)
    chosen = _check_seeds(seeds)

    def decorate(fn: TestFunction) -> Callable[..., None]:
        mark = getattr(pytest.mark, MARKER)(seeds=chosen, max_time=max_time, max_steps=max_steps)
        wrapper: Callable[..., None] = mark(_as_sync(fn))
        return wrapper

    return decorate


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    chosen = list(seeds)
    if not chosen or not all(isinstance(s, int) and not isinstance(s, bool) for s in chosen):
        raise UsageError(f"seeds must be a non-empty collection of ints, got {chosen!r}")
    return chosen


def _as_sync(fn: TestFunction) -> Callable[..., None]:
    """A plain function with ``fn``'s parameters (plus the fixtures it needs) that runs
    ``fn`` as the driver of the item's simulation."""
    if not inspect.iscoroutinefunction(fn):
        raise UsageError(f"sim_test runs async tests; {fn.__qualname__} is not 'async def'")
    signature = inspect.signature(fn)
    wanted = set(signature.parameters)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY)
        for name in _INJECTED
        if name not in wanted
    ]

    @functools.wraps(fn)
    def run_in_simulation(*args: Any, **kwargs: Any) -> None:
        sim: Simulation = kwargs["simulation"]
        request: pytest.FixtureRequest = kwargs["request"]
        mine = {name: value for name, value in kwargs.items() if name in wanted}
        try:
            sim.run_main(fn(*args, **mine))
        except Exception as exc:
            exc.add_note(
                f"netweave simulation seed {sim.seed}; replay it with: "
                f"pytest '{request.node.nodeid}'"
            )
            raise

    run_in_simulation.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    return run_in_simulation


# -- hooks -----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("netweave").addoption(
        "--netweave-seeds",
        default=None,
        help="seeds for every simulated test instead of their markers' (0..99, 1,5,9)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seeds=range(5), max_time=None, max_steps={DEFAULT_MAX_STEPS}): run an "
        "async test inside a netweave simulation once per seed",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> list[pytest.Item | pytest.Collector] | None:
    """Turn a bare ``async def`` test marked ``netweave_sim`` into a simulated one,
    before pytest-asyncio sees a coroutine function."""
    if not (inspect.iscoroutinefunction(obj) and collector.istestfunction(obj, name)):
        return None
    marked = any(getattr(m, "name", None) == MARKER for m in getattr(obj, "pytestmark", ()))
    if not marked:
        return None
    wrapped = _as_sync(obj)
    # Items look their function up by name on the module or class: the marker acts
    # exactly as the decorator would have.
    setattr(collector.obj, name, wrapped)
    items: list[pytest.Item | pytest.Collector] | None = collector.ihook.pytest_pycollect_makeitem(
        collector=collector, name=name, obj=wrapped
    )
    return items


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None or _SEED_ARG not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("--netweave-seeds")
    if option is not None:
        seeds = parse_seeds(option)
    else:
        seeds = _check_seeds(marker.kwargs.get("seeds", DEFAULT_SEEDS))
    metafunc.parametrize(_SEED_ARG, seeds, ids=[f"seed={seed}" for seed in seeds])


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def netweave_seed() -> int:
    """The simulation's seed: the item's own under ``netweave_sim``, else 0."""
    return 0


@pytest.fixture
def simulation(netweave_seed: int, request: pytest.FixtureRequest) -> Iterator[Simulation]:
    """A :class:`~netweave.sim.Simulation` for this test's seed, closed afterwards.

    The ``netweave_sim`` marker's ``max_time`` and ``max_steps`` apply.
    """
    marker = request.node.get_closest_marker(MARKER)
    options = {} if marker is None else marker.kwargs
    sim = Simulation(
        netweave_seed,
        max_time=options.get("max_time"),
        max_steps=options.get("max_steps", DEFAULT_MAX_STEPS),
    )
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture
def network(simulation: Simulation) -> Network:
    """The simulated network of the ``simulation`` fixture."""
    return simulation.network
