"""``netweave sim``: run a scenario for one seed, sweep many seeds in parallel, check replay.

Rules of this file:

* ``SCENARIO`` is ``MODULE:FUNCTION`` (see :func:`~netweave.sim.load_scenario`);
  it is loaded in this process first, so a bad name is a usage error (one
  line on stderr, exit 2) before any work starts.
* ``run`` prints a one-line summary and the trace hash; a failing scenario
  prints its traceback on stderr and exits 1. ``sweep`` runs seeds in worker
  processes (at most ``2 * jobs`` queued at a time), shows a progress bar on
  stderr and ends with the failing seeds, each with the ``netweave sim run``
  command that replays it exactly; any failure exits 1. ``check`` runs one
  seed twice and exits 1 if the traces differ.
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import sys
import time  # determinism: ok (the wall-clock duration shown to the user)
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Final

import click

from ._scenario import ScenarioResult, check_determinism, load_scenario, parse_seeds, run_scenario

__all__ = ["cli"]

#: Failing seeds listed in detail at the end of a sweep (the rest are only counted).
_SHOWN_FAILURES: Final = 50


def _limits(fn: Any) -> Any:
    options = [
        click.option(
            "--until",
            type=click.FloatRange(min=0),
            default=None,
            help="Run until this simulated time (s) after the scenario returns.",
        ),
        click.option(
            "--max-time",
            type=click.FloatRange(min=0),
            default=None,
            help="Fail when simulated time would pass this many seconds.",
        ),
        click.option(
            "--max-steps",
            type=click.IntRange(min=0),
            default=None,
            help="Fail after this many loop callbacks.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group("sim")
def cli() -> None:
    """Run scenarios on the deterministic simulator (SCENARIO is MODULE:FUNCTION)."""


@cli.command("run")
@click.argument("scenario")
@click.option("--seed", type=int, default=0, show_default=True, help="The root seed.")
@click.option(
    "--trace", "trace_path", type=click.Path(dir_okay=False), help="Write the trace (JSON lines)."
)
@click.option("--pcap", "pcap_path", type=click.Path(dir_okay=False), help="Write a pcap file.")
@_limits
@click.pass_context
def run_command(
    ctx: click.Context,
    scenario: str,
    seed: int,
    trace_path: str | None,
    pcap_path: str | None,
    until: float | None,
    max_time: float | None,
    max_steps: int | None,
) -> None:
    """Run SCENARIO once for --seed; a failure replays exactly with the same seed."""
    function = load_scenario(scenario)
    started = time.perf_counter()  # determinism: ok (wall-clock duration for the summary)
    result = run_scenario(
        function,
        seed,
        until=until,
        max_time=max_time,
        max_steps=max_steps,
        trace_path=trace_path,
        pcap_path=pcap_path,
    )
    elapsed = time.perf_counter() - started  # determinism: ok (as above)
    summary = (
        f"{result.events} events, {result.time:.6f} s simulated in {elapsed:.2f} s, "
        f"{result.steps} steps"
    )
    if result.error is None:
        click.echo(f"seed {seed}: ok ({summary})")
        click.echo(f"trace hash {result.trace_hash}")
        return
    click.echo("".join(traceback.format_exception(result.error)), err=True, nl=False)
    click.echo(f"seed {seed}: FAILED: {result.outcome} ({summary})", err=True)
    click.echo(f"trace hash {result.trace_hash}", err=True)
    ctx.exit(1)


@cli.command("check")
@click.argument("scenario")
@click.option("--seed", type=int, default=0, show_default=True, help="The root seed.")
@_limits
@click.pass_context
def check_command(
    ctx: click.Context,
    scenario: str,
    seed: int,
    until: float | None,
    max_time: float | None,
    max_steps: int | None,
) -> None:
    """Run SCENARIO twice for --seed and report the first event where the traces differ."""
    function = load_scenario(scenario)
    report = check_determinism(function, seed, until=until, max_time=max_time, max_steps=max_steps)
    click.echo(str(report))
    if not report.ok:
        ctx.exit(1)


@dataclass(frozen=True)
class _SeedOutcome:
    seed: int
    ok: bool
    outcome: str
    trace_hash: str


@cli.command("sweep")
@click.argument("scenario")
@click.option(
    "--seeds",
    "seed_spec",
    default="0..99",
    show_default=True,
    help="Seeds: A..B (inclusive), N, or a comma-separated list of those.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=lambda: os.cpu_count() or 1,
    show_default="CPU count",
    help="Worker processes.",
)
@_limits
@click.pass_context
def sweep_command(
    ctx: click.Context,
    scenario: str,
    seed_spec: str,
    jobs: int,
    until: float | None,
    max_time: float | None,
    max_steps: int | None,
) -> None:
    """Run SCENARIO for every seed in --seeds, in parallel; list the failing ones."""
    load_scenario(scenario)
    seeds = parse_seeds(seed_spec)
    options = {"until": until, "max_time": max_time, "max_steps": max_steps}
    failures: list[_SeedOutcome] = []
    with click.progressbar(
        length=len(seeds), label=f"{len(seeds)} seeds", file=sys.stderr
    ) as progress:
        for outcome in _sweep(scenario, seeds, jobs, options):
            progress.update(1)
            if not outcome.ok:
                failures.append(outcome)
    passed = len(seeds) - len(failures)
    click.echo(f"{scenario}: {len(seeds)} seeds, {passed} passed, {len(failures)} failed")
    failures.sort(key=lambda f: f.seed)
    flags = "".join(
        f" --{name.replace('_', '-')} {value}"
        for name, value in options.items()
        if value is not None
    )
    for failure in failures[:_SHOWN_FAILURES]:
        click.echo(f"FAILED seed {failure.seed}: {failure.outcome}")
        click.echo(
            f"  replay: netweave sim run {shlex.quote(scenario)} --seed {failure.seed}{flags}"
        )
    if len(failures) > _SHOWN_FAILURES:
        rest = ", ".join(str(f.seed) for f in failures[_SHOWN_FAILURES:])
        click.echo(f"... and {len(failures) - _SHOWN_FAILURES} more failing seeds: {rest}")
    if failures:
        ctx.exit(1)


def _sweep(
    scenario: str, seeds: list[int], jobs: int, options: dict[str, Any]
) -> Iterator[_SeedOutcome]:
    """Each seed's outcome, in completion order; ``jobs == 1`` runs in this process."""
    if jobs == 1:
        for seed in seeds:
            yield _run_seed(scenario, seed, options)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(list(sys.path),)
    ) as pool:
        queue = iter(seeds)
        pending: set[Future[_SeedOutcome]] = set()
        for seed in queue:
            pending.add(pool.submit(_run_seed, scenario, seed, options))
            if len(pending) >= 2 * jobs:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                for seed in queue:
                    pending.add(pool.submit(_run_seed, scenario, seed, options))
                    break


def _init_worker(path: list[str]) -> None:
    sys.path[:] = path


def _run_seed(scenario: str, seed: int, options: dict[str, Any]) -> _SeedOutcome:
    result: ScenarioResult = run_scenario(load_scenario(scenario), seed, **options)
    return _SeedOutcome(seed, result.ok, result.outcome, result.trace_hash)
