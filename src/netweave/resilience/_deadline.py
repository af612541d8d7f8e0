"""Deadlines: one absolute point on the running loop's clock that flows through
connect, send, receive and call.

Rules of this file:

* A :class:`Deadline` is an immutable value: an absolute time on the loop's
  clock (virtual under the simulator). It never reads any other clock.
* ``async with deadline:`` *enforces* it: the block is cancelled when the
  deadline passes and :class:`~netweave.errors.DeadlineExceeded` is raised
  instead. Inside the block the deadline is the *current* one, held in a
  context variable, so everything called from there (and every task created
  there) sees it: a retry loop stops sleeping before it, an RPC call sends the
  remaining time to the server, a pool waits no longer than it.
* Scopes nest: an inner deadline only ever tightens the current one. A looser
  inner deadline changes nothing, and no second timer is armed for it.
"""

from __future__ import annotations

import asyncio
import math
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import final

from ..errors import DeadlineExceeded, UsageError

__all__ = ["Deadline", "current_deadline", "effective_deadline", "remaining_time"]


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        raise UsageError(
            "a deadline reads the running event loop's clock; create or query it from "
            "inside a coroutine (or pass now= explicitly)"
        ) from None


@dataclass(slots=True)
class _Scope:
    deadline: Deadline
    #: the task whose timer enforces ``deadline`` (child tasks inherit the scope, not the timer)
    task: asyncio.Task[object] | None
    timeout: asyncio.Timeout | None = None
    token: Token[_Scope | None] | None = None


_current: ContextVar[_Scope | None] = ContextVar("netweave_deadline", default=None)


@final
class Deadline:
    """An absolute deadline on the running loop's clock.

    Create one with :meth:`after` (seconds from now) or :meth:`at` (a loop time).
    ``async with deadline:`` cancels the block when it passes and raises
    ``DeadlineExceeded``; inside, :func:`current_deadline` returns the tightest
    deadline in force. Comparison and ``min`` work on the absolute time.
    """

    __slots__ = ("_when",)

    def __init__(self, when: float) -> None:
        if math.isnan(when):
            raise UsageError("a deadline cannot be NaN")
        self._when = float(when)

    @classmethod
    def after(cls, seconds: float, *, now: float | None = None) -> Deadline:
        """The deadline ``seconds`` from now (``now`` defaults to the running loop's time).

        Raises ``UsageError`` for a negative or NaN duration.
        """
        if not seconds >= 0:
            raise UsageError(f"a deadline needs a duration >= 0 seconds, not {seconds!r}")
        base = _loop_time() if now is None else now
        return cls(base + seconds)

    @classmethod
    def at(cls, when: float) -> Deadline:
        """The deadline at loop time ``when``."""
        return cls(when)

    @property
    def when(self) -> float:
        """The absolute loop time at which this deadline passes."""
        return self._when

    def remaining(self, now: float | None = None) -> float:
        """Seconds left (never negative); ``now`` defaults to the running loop's time."""
        base = _loop_time() if now is None else now
        return max(0.0, self._when - base)

    def expired_at(self, now: float) -> bool:
        """True if the deadline has passed at loop time ``now``."""
        return now >= self._when

    @property
    def expired(self) -> bool:
        """True once the running loop's clock has reached the deadline."""
        return _loop_time() >= self._when

    def tighter(self, other: Deadline | None) -> Deadline:
        """The earlier of this deadline and ``other`` (``None`` means no deadline)."""
        if other is None or self._when <= other._when:
            return self
        return other

    def child(self, seconds: float, *, now: float | None = None) -> Deadline:
        """A deadline ``seconds`` from now, but never later than this one."""
        return self.tighter(Deadline.after(seconds, now=now))

    async def __aenter__(self) -> Deadline:
        outer = _current.get()
        task = asyncio.current_task()
        effective = self.tighter(outer.deadline if outer is not None else None)
        scope = _Scope(effective, task)
        if outer is None or effective is not outer.deadline or outer.task is not task:
            # A tighter deadline needs a timer of its own, and so does a task that
            # inherited the scope from its parent (the parent's timer cancels the parent).
            scope.timeout = asyncio.timeout_at(effective.when)
            await scope.timeout.__aenter__()
        scope.token = _current.set(scope)
        return effective

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = _current.get()
        if scope is None or scope.token is None:
            raise UsageError("Deadline scope exited in a different task than it was entered in")
        _current.reset(scope.token)
        if scope.timeout is None:
            return
        try:
            await scope.timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            if scope.timeout.expired():
                raise DeadlineExceeded(
                    f"deadline passed (it was at loop time {scope.deadline.when:.6f}); "
                    "allow more time or do less inside it"
                ) from None
            raise

    def __lt__(self, other: Deadline) -> bool:
        return self._when < other._when

    def __le__(self, other: Deadline) -> bool:
        return self._when <= other._when

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deadline) and self._when == other._when

    def __hash__(self) -> int:
        return hash(self._when)

    def __repr__(self) -> str:
        return f"Deadline(at={self._when:.6f})"


def current_deadline() -> Deadline | None:
    """The tightest deadline enforced around the running code, or ``None``."""
    scope = _current.get()
    return None if scope is None else scope.deadline


def effective_deadline(
    timeout: float | None = None, *, now: float | None = None
) -> Deadline | None:
    """The current deadline, tightened by an explicit ``timeout`` in seconds (if given)."""
    current = current_deadline()
    if timeout is None:
        return current
    return Deadline.after(timeout, now=now).tighter(current)


def remaining_time(timeout: float | None = None, *, now: float | None = None) -> float | None:
    """Seconds left before the effective deadline (see :func:`effective_deadline`),
    or ``None`` when there is none."""
    deadline = effective_deadline(timeout, now=now)
    return None if deadline is None else deadline.remaining(now)
