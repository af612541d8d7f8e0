"""Scenarios: load one by name, run it for a seed, and check that a seed replays exactly.

A scenario is a function ``scenario(sim)`` that builds hosts on the given
:class:`~netweave.sim.Simulation` and spawns their mains. It may drive the
simulation itself (``sim.run(until=60)``) and check invariants afterwards, or
be an ``async def``, which runs as the driver (``await asyncio.sleep(60)``
lets a minute of simulated time pass). Invariants raise ``AssertionError``.

Rules of this file: when the scenario returns, the runner runs the simulation
until ``until`` if one is given; otherwise, only if the scenario did not run it
itself, until the world is quiet. Every ``Exception`` is the scenario failing
and lands in :attr:`ScenarioResult.error`; ``KeyboardInterrupt`` is not caught.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from ..errors import UsageError
from ..observe import Event
from ._errors import SimulationError
from ._simulation import Simulation
from ._trace import canonical_line

__all__ = [
    "DeterminismReport",
    "Divergence",
    "NondeterminismError",
    "Scenario",
    "ScenarioResult",
    "check_determinism",
    "load_scenario",
    "parse_seeds",
    "run_scenario",
]

Scenario = Callable[[Simulation], Awaitable[Any] | None]

#: Trace lines a determinism check keeps per run to show where runs diverge.
CHECK_KEEP: Final = 100_000


class NondeterminismError(SimulationError):
    """The same seed gave two different traces (see :class:`DeterminismReport`)."""


@final
@dataclass(frozen=True)
class ScenarioResult:
    """What one run of a scenario for one seed gave.

    ``error`` is the exception that failed it (``None``: it passed); ``time`` is
    the simulated time at the end, ``steps`` the callbacks run, ``events`` the
    trace length and ``trace_hash`` its SHA-256.
    """

    seed: int
    trace_hash: str
    events: int
    time: float
    steps: int
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the scenario passed."""
        return self.error is None

    @property
    def outcome(self) -> str:
        """``"ok"`` or the failure's type and message on one line."""
        if self.error is None:
            return "ok"
        return " ".join(f"{type(self.error).__name__}: {self.error}".split())


def parse_seeds(text: str) -> list[int]:
    """``"0..9"`` (inclusive), ``"7"``, ``"1,5,9"`` or ``"0..3,10"`` as a list of seeds.

    ``UsageError`` for anything else, or for a range that runs backwards.
    """
    seeds: list[int] = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("..")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise UsageError(
                f"bad seeds {text!r}: expected N, A..B (inclusive) or a comma-separated list"
            ) from None
        if last < first:
            raise UsageError(f"seed range {part.strip()!r} runs backwards; write {last}..{first}")
        seeds.extend(range(first, last + 1))
    return seeds


def load_scenario(spec: str) -> Scenario:
    """The scenario named by ``"package.module:function"`` (the current directory is
    importable, as for ``python -m``). ``UsageError`` says what is wrong with ``spec``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"expected MODULE:FUNCTION, like examples.echo_sim:scenario; got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UsageError(f"cannot import {module_name!r}: no such module") from None
        raise
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise UsageError(f"{spec!r} is not callable; a scenario is a function taking a Simulation")
    scenario: Scenario = target
    return scenario


def run_scenario(
    scenario: Scenario,
    seed: int,
    *,
    until: float | None = None,
    max_time: float | None = None,
    max_steps: int | None = None,
    trace_path: str | Path | None = None,
    pcap_path: str | Path | None = None,
) -> ScenarioResult:
    """Run ``scenario`` once for ``seed`` in a fresh simulation and say what happened.

    ``trace_path`` / ``pcap_path`` stream the trace / the packets to files.
    """
    return _run(scenario, seed, until, max_time, max_steps, trace_path, pcap_path, None)


def _run(
    scenario: Scenario,
    seed: int,
    until: float | None,
    max_time: float | None,
    max_steps: int | None,
    trace_path: str | Path | None,
    pcap_path: str | Path | None,
    fingerprints: _Fingerprints | None,
) -> ScenarioResult:
    error: BaseException | None = None
    with Simulation(
        seed,
        max_time=max_time,
        max_steps=max_steps,
        trace_keep=None,
        trace_path=trace_path,
        observer=fingerprints,
    ) as sim:
        if fingerprints is not None:
            fingerprints.clock = sim.loop.time_ns
        try:
            if pcap_path is not None:
                sim.write_pcap(pcap_path)
            outcome = scenario(sim)
            if inspect.isawaitable(outcome):
                sim.run_main(outcome)
            if until is not None:
                sim.run(until=max(until, sim.now))
            elif sim.runs == 0:
                sim.run()
        except Exception as exc:
            error = exc
        return ScenarioResult(
            seed=seed,
            trace_hash=sim.trace_hash(),
            events=sim.trace.count,
            time=sim.now,
            steps=sim.loop.steps,
            error=error,
        )


@final
class _Fingerprints:
    """An observer keeping 8 bytes and a timestamp per event, and the first lines whole."""

    def __init__(self) -> None:
        self.clock: Callable[[], int] = int
        self.digests = array("Q")
        self.times = array("q")
        self.lines: list[str] = []

    def __call__(self, event: Event, /) -> None:
        line = canonical_line(event, time_ns=self.clock())
        digest = hashlib.blake2b(line.encode(), digest_size=8).digest()
        self.digests.append(int.from_bytes(digest, "big"))
        self.times.append(getattr(event, "time_ns", None) or self.clock())
        if len(self.lines) < CHECK_KEEP:
            self.lines.append(line)

    def line(self, index: int) -> str | None:
        if index >= len(self.digests):
            return None
        return self.lines[index] if index < len(self.lines) else "(not kept in memory)"


@final
@dataclass(frozen=True)
class Divergence:
    """Where two traces of one seed first differ: event ``index`` (0-based), its
    simulated time, and each run's canonical line there (``None`` where that run's
    trace had already ended)."""

    index: int
    time_ns: int | None
    first: str | None
    second: str | None


@final
@dataclass(frozen=True)
class DeterminismReport:
    """Two runs of one seed: equal when their traces and outcomes are equal."""

    seed: int
    first: ScenarioResult
    second: ScenarioResult
    divergence: Divergence | None

    @property
    def ok(self) -> bool:
        """Whether both runs gave the same trace hash and the same kind of outcome."""
        return self.divergence is None and _kind(self.first) == _kind(self.second)

    def __str__(self) -> str:
        if self.ok:
            return (
                f"seed {self.seed}: deterministic ({self.first.events} events, "
                f"trace hash {self.first.trace_hash[:16]}, outcome {self.first.outcome})"
            )
        lines = [f"seed {self.seed}: NOT deterministic"]
        if self.divergence is not None:
            d = self.divergence
            when = "" if d.time_ns is None else f" at simulated time {d.time_ns / 1e9:.9f} s"
            lines.append(f"first divergent event: #{d.index}{when}")
            lines.append(f"  run 1: {d.first if d.first is not None else '(trace ended)'}")
            lines.append(f"  run 2: {d.second if d.second is not None else '(trace ended)'}")
        if _kind(self.first) != _kind(self.second):
            lines.append(f"outcomes differ: {self.first.outcome!r} vs {self.second.outcome!r}")
        return "\n".join(lines)

    def raise_if_diverged(self) -> None:
        """Raise :class:`NondeterminismError` (with this report as message) unless ok."""
        if not self.ok:
            raise NondeterminismError(str(self))


def check_determinism(
    scenario: Scenario,
    seed: int,
    *,
    until: float | None = None,
    max_time: float | None = None,
    max_steps: int | None = None,
) -> DeterminismReport:
    """Run ``scenario`` twice for ``seed`` and report the first event where the traces
    differ (and whether both runs ended the same way)."""
    runs = []
    for _ in range(2):
        fingerprints = _Fingerprints()
        result = _run(scenario, seed, until, max_time, max_steps, None, None, fingerprints)
        runs.append((result, fingerprints))
    (first, a), (second, b) = runs
    divergence = None
    if first.trace_hash != second.trace_hash:
        divergence = _first_difference(a, b)
    return DeterminismReport(seed, first, second, divergence)


def _first_difference(a: _Fingerprints, b: _Fingerprints) -> Divergence:
    index = 0
    for x, y in zip(a.digests, b.digests, strict=False):
        if x != y:
            break
        index += 1
    times = a.times if index < len(a.times) else b.times
    time_ns = times[index] if index < len(times) else None
    return Divergence(index, time_ns, a.line(index), b.line(index))


def _kind(result: ScenarioResult) -> str:
    # Messages may name tasks ("Task-12"), whose numbers depend on the process: compare types.
    return "ok" if result.error is None else type(result.error).__name__
