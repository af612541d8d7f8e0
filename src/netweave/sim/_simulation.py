"""Simulation: one seed, one virtual-time loop, one simulated network, and their driver.

Rules of this file:

* A :class:`Simulation` owns everything it builds (loop, network, trace) and
  :meth:`~Simulation.close` releases all of it; ``with Simulation(...) as sim``
  also serves the process's clocks and randomness from the simulation for
  the whole block. Each ``run*`` call serves them while it runs.
* Host code runs in a context where ``current_host`` names the host: mains
  started by :meth:`~Simulation.spawn`, and everything they start. Actions
  scheduled with :meth:`~Simulation.at` and the coroutine of
  :meth:`~Simulation.run_main` are the driver (no host).
* Failures stop the run at once and are raised by the ``run*`` call: a host
  main that raises (:class:`HostFailed`), an action that raises, and, unless
  ``fail_on_unhandled=False``, any error reaching the loop's exception handler
  (:class:`UnhandledError`). A main cancelled by a crash is not a failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, final

from ..errors import DeadlineExceeded, UsageError
from ..observe import Observer, fanout
from ._context import current_host
from ._determinism import DEFAULT_EPOCH, DeterminismPatch
from ._errors import Deadlock, SimulationError, describe_blocked
from ._host import Host
from ._link import LinkConfig
from ._loop import SimLoop, ceil_ns
from ._network import Network
from ._seeds import SeedTree
from ._tcp import TcpSettings
from ._trace import TraceRecorder

__all__ = ["HostFailed", "Simulation", "UnhandledError"]

T = TypeVar("T")

#: Trace events held in memory by default (the hash covers every event anyway).
DEFAULT_TRACE_KEEP = 100_000


class HostFailed(SimulationError):
    """A host's main raised; the original exception is ``__cause__`` (and ``error``).

    Only for ``Exception``: a main that raises another ``BaseException`` (such as
    ``pytest.skip``'s) ends the run with that exception itself.
    """

    def __init__(self, host: str, main: str, error: BaseException, at: float) -> None:
        super().__init__(
            f"the main {main} of host {host!r} failed at simulated time {at:.9f} s: "
            f"{type(error).__name__}: {error}"
        )
        self.host = host
        self.main = main
        self.error = error
        self.__cause__ = error


class UnhandledError(SimulationError):
    """An error reached the loop's exception handler (a callback raised, a task's
    exception was never retrieved...); the original exception, if any, is ``__cause__``."""


@dataclass(frozen=True)
class _Main:
    main: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]

    @property
    def name(self) -> str:
        return getattr(self.main, "__qualname__", repr(self.main))


@final
class Simulation:
    """A deterministic simulated world: build hosts, spawn their mains, run, check.

    ::

        with Simulation(seed=7) as sim:
            sim.add_host("server")
            sim.add_host("client")
            sim.spawn("server", serve)
            sim.spawn("client", ask)
            sim.run(until=60)
            assert ...

    ``seed`` decides everything random; the same seed gives the same trace,
    byte for byte. ``max_time`` (simulated seconds) and ``max_steps`` (callbacks)
    bound the whole simulation
    (:class:`~netweave.sim.SimulationLimitExceeded`). ``observer`` also gets every
    event of the trace. ``trace_keep`` events stay in memory (``sim.trace``);
    ``trace_path`` streams all of them to a JSON-lines file; ``trace=False``
    records nothing (faster; ``trace_hash`` then refuses). ``epoch`` is the
    Unix time that virtual time 0 reads as on a host's clock. ``default_link``
    and ``tcp`` configure the network.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        max_time: float | None = None,
        max_steps: int | None = None,
        observer: Observer | None = None,
        trace: bool = True,
        trace_keep: int | None = DEFAULT_TRACE_KEEP,
        trace_path: str | Path | None = None,
        epoch: float = DEFAULT_EPOCH,
        default_link: LinkConfig | None = None,
        tcp: TcpSettings | None = None,
        fail_on_unhandled: bool = True,
    ) -> None:
        self.seed = seed
        self.seeds = SeedTree(seed)
        self.loop = SimLoop(max_time=max_time, max_steps=max_steps)
        self.trace = TraceRecorder(keep=trace_keep, path=trace_path, clock=self.loop.time_ns)
        self.network = Network(
            loop=self.loop,
            seeds=self.seeds,
            observer=fanout(self.trace, observer) if trace else observer,
            default_link=default_link,
            tcp=tcp,
        )
        self.loop.network = self.network
        self.loop.set_exception_handler(self._on_loop_error)
        self._patch = DeterminismPatch(
            loop=self.loop, seeds=self.seeds, wall_clock=self.network.wall_clock_ns, epoch=epoch
        )
        self._driver = contextvars.Context()
        self._mains: dict[str, list[_Main]] = {}
        self._failures: list[SimulationError] = []
        self._fail_on_unhandled = fail_on_unhandled
        self._tracing = trace
        self._pcaps: list[Any] = []
        self._runs = 0
        self._closed = False

    # -- the world ------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The virtual time in seconds."""
        return self.loop.time()

    @property
    def runs(self) -> int:
        """How many times a ``run*`` method has driven the loop."""
        return self._runs

    def add_host(
        self,
        name: str,
        *,
        address: str | None = None,
        clock_skew: float = 0.0,
        clock_drift: float = 0.0,
    ) -> Host:
        """Add a host to the network (see :meth:`Network.add_host`)."""
        return self.network.add_host(
            name, address=address, clock_skew=clock_skew, clock_drift=clock_drift
        )

    def link(self, src: str, dst: str, *, both: bool = True, **settings: Any) -> None:
        """Change the link ``src -> dst`` (and back, unless ``both=False``):
        ``sim.link("a", "b", latency=0.01, loss=0.05)``."""
        self.network.configure_link(src, dst, both=both, **settings)

    def partition(self, a: str | list[str], b: str | list[str], **options: Any) -> None:
        """Cut the links between two host groups (see :meth:`Network.partition`)."""
        self.network.partition(a, b, **options)

    def heal(
        self, a: str | list[str] | None = None, b: str | list[str] | None = None, **options: Any
    ) -> None:
        """Lift a partition, or every partition (see :meth:`Network.heal`)."""
        self.network.heal(a, b, **options)

    # -- hosts' mains, crash and restart ------------------------------------------------------

    def spawn(
        self, host: str, main: Callable[..., Awaitable[Any]], *args: Any
    ) -> asyncio.Task[Any]:
        """Run ``main(*args)`` as a main task of ``host`` and return the task.

        The main and everything it starts belong to the host: a crash cancels
        them and a restart runs the main again (each main spawned on the host,
        in spawn order). ``UsageError`` for an unknown or crashed host, or a
        ``main`` that is not an async function.
        """
        self._check_open()
        if not self.network.is_up(host):
            raise UsageError(f"host {host!r} is crashed; restart it before spawning on it")
        entry = _Main(main, args)
        task = self._start(host, entry)
        self._mains.setdefault(host, []).append(entry)
        return task

    def _start(self, host: str, entry: _Main) -> asyncio.Task[Any]:
        context = contextvars.copy_context()
        context.run(current_host.set, host)
        result = context.run(entry.main, *entry.args)
        if not inspect.isawaitable(result):
            raise UsageError(
                f"a host main must be an async function; {entry.name} returned {result!r}"
            )
        coro = _as_coroutine(result)
        task = self.loop.create_task(coro, name=f"{host}:{entry.name}", context=context)
        task.add_done_callback(lambda done: self._main_done(host, entry, done))
        return task

    def _main_done(self, host: str, entry: _Main, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._fail(HostFailed(host, entry.name, error, self.now))

    def host_tasks(self, host: str) -> list[asyncio.Task[Any]]:
        """The host's unfinished tasks (mains and all they started), oldest first."""
        return self.loop.host_tasks(host)

    def crash(self, host: str) -> int:
        """Crash ``host`` now: its sockets vanish (the network side), its pending timers
        are dropped and its tasks cancelled. Returns how many tasks were cancelled."""
        self._check_open()
        self.network.crash_host(host)
        return self.loop.cancel_host(host, reason=f"simulated host {host!r} crashed")

    def restart(self, host: str) -> list[asyncio.Task[Any]]:
        """Bring a crashed ``host`` back up and run its mains again; returns their tasks."""
        self._check_open()
        self.network.restart_host(host)
        return [self._start(host, entry) for entry in self._mains.get(host, [])]

    # -- scheduling the driver's actions ----------------------------------------------------------

    def at(self, when: float, action: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        """Call ``action(*args)`` at simulated time ``when`` (seconds), as the driver.

        An awaitable result runs as a driver task. An exception fails the run.
        ``UsageError`` if ``when`` is in the past.
        """
        self._check_open()
        when_ns = ceil_ns(when)
        if when_ns < self.loop.time_ns():
            raise UsageError(f"at({when}) is in the past: simulated time is {self.now} s")
        return self.loop.call_at_ns(when_ns, self._act, action, args, context=self._driver.copy())

    def after(self, delay: float, action: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        """Call ``action(*args)`` ``delay`` seconds from now, as the driver (see :meth:`at`)."""
        return self.at(self.now + delay, action, *args)

    def _act(self, action: Callable[..., Any], args: tuple[Any, ...]) -> None:
        name = getattr(action, "__qualname__", repr(action))
        try:
            result = action(*args)
        except Exception as exc:
            self._fail(_action_failed(name, exc, self.now))
            return
        if inspect.isawaitable(result):
            task = self.loop.create_task(
                _as_coroutine(result), name=f"driver:{name}", context=self._driver.copy()
            )
            task.add_done_callback(lambda done: self._action_done(name, done))

    def _action_done(self, name: str, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            self._fail(_action_failed(name, error, self.now))

    # -- running ---------------------------------------------------------------------------------

    def run(self, until: float | None = None) -> None:
        """Run until simulated time ``until`` (seconds since the start), or, without
        it, until the world is quiet: nothing ready and no timer pending.

        Raises the first failure (:class:`HostFailed`, :class:`UnhandledError`...),
        :class:`~netweave.sim.SimulationLimitExceeded` at a limit.
        """
        with self._driving():
            if until is None:
                self.loop.run_until_idle()
            else:
                when_ns = ceil_ns(until)
                if when_ns < self.loop.time_ns():
                    raise UsageError(f"run(until={until}) is in the past: it is {self.now} s")
                self.loop.run_until_time_ns(when_ns)

    def run_for(self, duration: float) -> None:
        """Run for ``duration`` more simulated seconds."""
        self.run(until=self.now + duration)

    def run_until(self, condition: Callable[[], bool], *, timeout: float | None = None) -> None:
        """Run until ``condition()`` is true (checked after each instant of simulated time).

        :class:`~netweave.sim.Deadlock` if the world goes quiet first (it can never
        become true); :class:`~netweave.errors.DeadlineExceeded` if ``timeout``
        simulated seconds pass first.
        """
        until_ns = None if timeout is None else self.loop.time_ns() + ceil_ns(timeout)
        with self._driving():
            outcome = self.loop.run_until_condition(condition, until_ns=until_ns)
        if outcome == "idle":
            tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            blocked = describe_blocked(tasks, self.loop.host_of_task, None)
            waiting = "".join(f"\n  {line}" for line in blocked)
            raise Deadlock(
                f"the simulation went quiet at {self.now:.9f} s and the condition "
                f"{getattr(condition, '__qualname__', condition)!r} is still false; "
                f"{len(blocked)} tasks wait for something that can never happen{waiting}",
                blocked,
            )
        if outcome == "until":
            raise DeadlineExceeded(
                f"the condition {getattr(condition, '__qualname__', condition)!r} was still "
                f"false after {timeout} simulated seconds"
            )

    def run_main(self, main: Awaitable[T] | Callable[[], Awaitable[T]]) -> T:
        """Run ``main`` (an awaitable, or an async function to call) as the driver,
        to completion, and return its result; hosts run alongside.

        :class:`~netweave.sim.Deadlock` if it can never finish; a host failure
        cancels it and is raised instead.
        """
        self._check_open()
        awaitable = main() if callable(main) else main
        task = self.loop.create_task(
            _as_coroutine(awaitable), name="driver:main", context=self._driver.copy()
        )
        try:
            with self._driving():
                try:
                    self.loop.run_until_complete(task)
                except RuntimeError:
                    if task.done() or not self._failures:
                        raise
                    # A failure stopped the loop before the task finished: the
                    # ``with`` block raises that failure on its way out.
        finally:
            if not task.done():
                task.cancel()
        return task.result()

    def _driving(self) -> _Driving:
        self._check_open()
        self._raise_failures()
        self._runs += 1
        return _Driving(self)

    # -- failures ----------------------------------------------------------------------------------

    def _fail(self, error: SimulationError) -> None:
        self._failures.append(error)
        self.loop.stop()

    def _raise_failures(self) -> None:
        if not self._failures:
            return
        first, *rest = self._failures
        self._failures.clear()
        if isinstance(first, HostFailed) and not isinstance(first.error, Exception):
            # Not an error but a control-flow signal (a test framework's skip or
            # fail, SystemExit): it leaves the simulation as itself.
            raise first.error
        if rest:
            first.add_note(f"(and {len(rest)} more failures after it)")
        raise first

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        cause = context.get("exception")
        if isinstance(cause, asyncio.CancelledError):
            # Cancellation (a crash, a closing simulation) surfacing in a done-callback,
            # e.g. Python 3.11's start_server one calling task.exception(): expected.
            return
        if not self._fail_on_unhandled or self._closed:
            loop.default_exception_handler(context)
            return
        message = context.get("message") or "unhandled error in the simulation"
        error = UnhandledError(f"{message} (at simulated time {self.now:.9f} s)")
        if isinstance(cause, BaseException):
            error.__cause__ = cause
        self._fail(error)

    # -- trace and capture -------------------------------------------------------------------------

    def trace_hash(self) -> str:
        """The SHA-256 (hex) of the whole trace so far; equal seeds give equal hashes."""
        self._check_tracing()
        return self.trace.hexdigest()

    def write_trace(self, path: str | Path) -> None:
        """Write the trace as JSON lines (``UsageError`` if part of it is no longer
        in memory: stream it with ``trace_path=`` instead)."""
        self._check_tracing()
        self.trace.write_jsonl(path)

    def _check_tracing(self) -> None:
        if not self._tracing:
            raise UsageError("this Simulation was built with trace=False and has no trace")

    def write_pcap(self, path: str | Path) -> None:
        """From now on, write every packet sent to a pcap file at ``path``; the file is
        complete when the simulation is closed. Call it before running."""
        self._check_open()
        capture = self.network.capture(path)
        capture.__enter__()
        self._pcaps.append(capture)

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """End the world: every host's sockets vanish (recorded nowhere: the trace is
        final), every task is cancelled and unwinds, and the loop, the trace file and
        any pcap file are closed. Idempotent; never raises the run's failures."""
        if self._closed:
            return
        self._closed = True
        try:
            self.network.observer = None
            for host in self.network.hosts:
                self.network.crash_host(host)
            with self._patch:
                self.loop.shutdown()
        finally:
            while self._pcaps:
                self._pcaps.pop().__exit__(None, None, None)
            self.trace.close()
            self._failures.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("this Simulation is closed; build a new one")

    def __enter__(self) -> Simulation:
        self._check_open()
        self._patch.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            self._patch.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        hosts = ", ".join(self.network.hosts)
        return f"<Simulation seed={self.seed} t={self.now:.9f}s hosts=[{hosts}]>"


@final
class _Driving:
    """Serves clocks and randomness while a run lasts, then raises its failures."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    def __enter__(self) -> None:
        self._sim._patch.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sim._patch.__exit__(exc_type, exc, tb)
        if exc is None:
            self._sim._raise_failures()


def _action_failed(name: str, error: BaseException, at: float) -> SimulationError:
    failure = SimulationError(
        f"the scheduled action {name} failed at simulated time {at:.9f} s: "
        f"{type(error).__name__}: {error}"
    )
    failure.__cause__ = error
    return failure


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if inspect.iscoroutine(awaitable):
        return awaitable
    return _await(awaitable)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
