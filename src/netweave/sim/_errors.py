"""Why a simulated run stopped: the simulator's errors and the messages that explain them.

Rules of this file: a message says what happened, at which simulated time,
and what to change. A deadlock names each blocked task, its simulated host,
the chain of coroutines it is in (outermost first) and the innermost source
line, which is usually the ``await`` it is stuck on::

    task 'server' (host 'b'): serve -> handle at app.py:42: data = await reader.read(100)
"""

from __future__ import annotations

import asyncio
import linecache
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Final, Literal

from ..errors import NetweaveError

__all__ = [
    "Deadlock",
    "SimulationError",
    "SimulationLimitExceeded",
    "deadlock",
    "describe_blocked",
    "describe_task",
    "step_limit",
    "time_limit",
]

_MAX_TASKS: Final = 50
_NS: Final = 1_000_000_000


class SimulationError(NetweaveError):
    """A simulation could not run to its end (see the subclasses)."""


class Deadlock(SimulationError):
    """Every task waits for something that can never happen.

    Raised when the run's goal is not reached, no callback is ready and no
    timer is pending. ``blocked`` holds one line per blocked task: its name,
    host, coroutine chain and the source line where it waits.
    """

    def __init__(self, message: str, blocked: list[str]) -> None:
        super().__init__(message)
        self.blocked = blocked


class SimulationLimitExceeded(SimulationError):
    """The run reached ``max_time`` (simulated seconds) or ``max_steps`` (callbacks run).

    ``limit`` is ``"time"`` or ``"steps"``.
    """

    def __init__(self, message: str, *, limit: Literal["time", "steps"]) -> None:
        super().__init__(message)
        self.limit = limit


def step_limit(max_steps: int, now_ns: int) -> SimulationLimitExceeded:
    """The error for a run that reached ``max_steps`` callbacks at ``now_ns``."""
    return SimulationLimitExceeded(
        f"step limit reached: {max_steps} callbacks run by simulated time "
        f"{now_ns / _NS:.9f} s (raise max_steps, or look for a busy loop)",
        limit="steps",
    )


def time_limit(max_time_ns: int, next_ns: int) -> SimulationLimitExceeded:
    """The error for a run whose next event, at ``next_ns``, lies past ``max_time_ns``."""
    return SimulationLimitExceeded(
        f"simulated time limit reached: the next event is at {next_ns / _NS:.9f} s, "
        f"past max_time={max_time_ns / _NS:g} s "
        f"(raise max_time, or look for a task that never stops)",
        limit="time",
    )


def deadlock(
    now_ns: int,
    tasks: Iterable[asyncio.Task[Any]],
    host_of: Callable[[asyncio.Task[Any]], str | None],
    main: asyncio.Future[Any] | None,
    *,
    forever: bool = False,
) -> Deadlock:
    """The error for a run that can never reach its goal: ``main`` done (or, with
    ``forever``, a call to ``stop()``); ``tasks`` are the loop's tasks."""
    blocked = describe_blocked(tasks, host_of, main)
    at = f"at simulated time {now_ns / _NS:.9f} s"
    if forever:
        head = f"run_forever() has nothing left to do {at}, and stop() was never called"
    elif isinstance(main, asyncio.Task):
        head = f"deadlock {at}: task {main.get_name()!r} can never finish"
    else:
        head = f"deadlock {at}: the awaited future can never complete"
    if blocked:
        detail = "; every task waits for something that can never happen:\n  "
        detail += "\n  ".join(blocked)
    else:
        detail = "; no task is running and no timer is pending"
    return Deadlock(head + detail, blocked)


def describe_task(task: asyncio.Task[Any], host: str | None) -> str:
    """One line saying which task this is and where it waits."""
    where = "driver" if host is None else f"host {host!r}"
    frames: list[FrameType] = task.get_stack()
    if not frames:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        return f"task {task.get_name()!r} ({where}): {name} has not started"
    chain = " -> ".join(f.f_code.co_name for f in frames)
    inner = frames[-1]
    filename = inner.f_code.co_filename
    lineno = inner.f_lineno
    line = linecache.getline(filename, lineno).strip()
    text = f"task {task.get_name()!r} ({where}): {chain} at {filename}:{lineno}"
    return f"{text}: {line}" if line else text


def describe_blocked(
    tasks: Iterable[asyncio.Task[Any]],
    host_of: Callable[[asyncio.Task[Any]], str | None],
    main: asyncio.Future[Any] | None,
) -> list[str]:
    """Lines for ``tasks``: the main task first, then by host and name; at most 50."""
    pending = [t for t in tasks if not t.done()]

    def order(task: asyncio.Task[Any]) -> tuple[int, str, str]:
        return (0 if task is main else 1, host_of(task) or "", task.get_name())

    pending.sort(key=order)
    lines = [describe_task(t, host_of(t)) for t in pending[:_MAX_TASKS]]
    if len(pending) > _MAX_TASKS:
        lines.append(f"... and {len(pending) - _MAX_TASKS} more blocked tasks")
    return lines
