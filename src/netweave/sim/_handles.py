"""The loop's callback handles: asyncio's own classes, built without ceremony.

Rules of this file:

* :class:`SimHandle` and :class:`SimTimerHandle` *are* ``asyncio.Handle`` and
  ``asyncio.TimerHandle`` (same slots, same behaviour); they only declare the
  private slots for the type checker and let the loop fill them in directly,
  which skips two constructor calls per callback.
* The fast path is used only when asyncio's slot layout is the one this file
  knows (checked once at import) and the loop is not in debug mode; otherwise
  the loop calls the ordinary constructors, which record source tracebacks.
* ``SimTimerHandle.cancel`` does in one call what ``TimerHandle.cancel`` does in
  three (tell the loop, mark cancelled, drop references).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

__all__ = ["COMPACT_MIN", "FAST_HANDLES", "SimHandle", "SimTimerHandle", "TimerOwner"]

#: Cancelled timers the loop lets pile up before it considers compacting its heap.
COMPACT_MIN: Final = 64


class TimerOwner(Protocol):
    """What a timer handle needs from its loop when it is cancelled."""

    _debug: bool
    _cancelled_timers: int

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None: ...


class SimHandle(asyncio.Handle):
    """An ``asyncio.Handle`` whose slots the loop may fill in directly."""

    __slots__ = ()

    if TYPE_CHECKING:
        _callback: Callable[..., object] | None
        _args: Any
        _loop: Any
        _context: contextvars.Context
        _source_traceback: Any
        _repr: str | None


class SimTimerHandle(asyncio.TimerHandle):
    """An ``asyncio.TimerHandle`` whose slots the loop may fill in directly."""

    __slots__ = ()

    if TYPE_CHECKING:
        _callback: Callable[..., object] | None
        _args: Any
        _loop: TimerOwner
        _context: contextvars.Context
        _source_traceback: Any
        _repr: str | None
        _when: float
        _scheduled: bool

    def cancel(self) -> None:
        if self._cancelled:
            return
        loop = self._loop
        if loop._debug:
            super().cancel()
            return
        if self._scheduled:
            # loop._timer_handle_cancelled(self), whose count it keeps, without the call
            # unless the heap may need compacting.
            if loop._cancelled_timers < COMPACT_MIN:
                loop._cancelled_timers += 1
            else:
                loop._timer_handle_cancelled(self)
        self._cancelled = True
        self._callback = None
        self._args = None


_KNOWN_SLOTS: Final = {
    "_callback",
    "_args",
    "_cancelled",
    "_loop",
    "_source_traceback",
    "_repr",
    "__weakref__",
    "_context",
    "_scheduled",
    "_when",
}

#: True when asyncio's handles have exactly the slots this file fills in.
FAST_HANDLES: Final = {
    name for klass in SimTimerHandle.__mro__ for name in getattr(klass, "__slots__", ())
} == _KNOWN_SLOTS
