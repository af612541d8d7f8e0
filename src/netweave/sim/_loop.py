"""SimLoop: an asyncio event loop whose clock is virtual.

Rules of this file:

* Time is an integer count of nanoseconds (``time_ns()``); ``time()`` is that
  count divided by 1e9. When nothing is ready the clock jumps straight to the
  next timer, so a week-long ``asyncio.sleep`` costs one heap operation.
* Order is total and deterministic: ready callbacks run first in, first out;
  timers run by ``(deadline_ns, sequence)``, so equal deadlines keep the order
  in which they were scheduled. Timers due at the current instant join the end
  of the ready queue at the start of each batch.
* Float deadlines are converted once: ``call_at(when)`` fires at the first
  nanosecond at or after ``when`` (computed exactly, so ``loop.time() >= when``
  in the callback, which keeps ``asyncio.timeout`` consistent); ``call_later(delay)``
  fires ``round(delay * 1e9)`` ns from now, at least 1 ns for a positive delay;
  an infinite delay never fires.
* No real I/O and no threads (see ``_loop_io.py``). A run that can never finish
  fails with :class:`Deadlock`, naming every blocked task; ``max_time`` and
  ``max_steps`` end a run with :class:`SimulationLimitExceeded`.
* Nothing here iterates a ``set``: hash order changes between processes, and a
  seed must replay exactly in another process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import math
import operator
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Executor
from typing import Any, Final, Literal, TypeVar, TypeVarTuple, Unpack, cast, final

from ..errors import UsageError
from ._context import current_host
from ._errors import Deadlock, SimulationLimitExceeded, deadlock, step_limit, time_limit
from ._handles import COMPACT_MIN, FAST_HANDLES, SimHandle, SimTimerHandle
from ._loop_base import SimLoopBase

__all__ = ["NS_PER_S", "SimLoop", "ceil_ns"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

NS_PER_S: Final = 1_000_000_000
_NEVER: Final = math.inf
_RunResult = Literal["stopped", "idle", "until", "condition"]
_new = object.__new__
_heappush = heapq.heappush
_heappop = heapq.heappop
_copy_context = contextvars.copy_context
_Future = asyncio.Future
_debug_flag = operator.attrgetter("_debug")


@final
class SimLoop(SimLoopBase):
    """A single-threaded asyncio event loop on a virtual nanosecond clock.

    Use it like any loop (``loop.run_until_complete(main())``, or
    ``asyncio.Runner(loop_factory=SimLoop)``); tasks, futures,
    ``asyncio.timeout``, ``wait_for``, ``gather``, ``TaskGroup`` and async
    generators work unchanged. ``max_time`` (seconds of simulated time) and
    ``max_steps`` (callbacks run over the loop's life) bound every run.

    ``run_in_executor`` runs the function inline, on the loop's thread, and
    returns an already-completed future: there are no threads in a simulation,
    so a blocking function blocks the whole simulated world for zero simulated
    time. ``call_soon_threadsafe`` is accepted only from the loop's own thread.
    """

    def __init__(self, *, max_time: float | None = None, max_steps: int | None = None) -> None:
        super().__init__()
        if max_time is not None and not max_time >= 0:
            raise ValueError(f"max_time must be a non-negative number of seconds, not {max_time}")
        if max_steps is not None and max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative count, not {max_steps}")
        self._now = 0
        self._ready: deque[SimHandle | SimTimerHandle] = deque()
        self._timers: list[tuple[int, int, SimTimerHandle]] = []
        self._next_seq = itertools.count().__next__
        self._cancelled_timers = 0
        self._steps = 0
        self._max_time_ns = sys.maxsize if max_time is None else ceil_ns(max_time)
        self._max_steps = sys.maxsize if max_steps is None else max_steps
        self._stopping = False
        # Fill handle slots directly: off in debug mode and once closed.
        self._fast = FAST_HANDLES
        self._thread_id: int | None = None
        self._task_factory: Any = None
        self._host_tasks: dict[str, dict[asyncio.Task[Any], None]] = {}
        self._host_prune_at: dict[str, int] = {}
        # Every await of a sleep or a read makes a future: build it straight from the C
        # constructor, without a Python frame in between; the constructor asks
        # get_debug(), answered from C too (close() drops both shortcuts).
        self.create_future = functools.partial(_Future, loop=self)  # type: ignore[method-assign]
        self.get_debug = functools.partial(_debug_flag, self)  # type: ignore[method-assign]

    # -- clock -------------------------------------------------------------------

    def time(self) -> float:
        """The virtual time in seconds (``time_ns() / 1e9``)."""
        return self._now / NS_PER_S

    def time_ns(self) -> int:
        """The virtual time in integer nanoseconds."""
        return self._now

    @property
    def steps(self) -> int:
        """How many callbacks this loop has run so far (updated as each instant ends)."""
        return self._steps

    @property
    def timer_entries(self) -> int:
        """How many timer entries the loop holds. Cancelled timers are dropped lazily:
        when they reach the front, or all at once when they outnumber live ones."""
        return len(self._timers)

    # -- scheduling --------------------------------------------------------------

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if self._fast:  # (never once closed)
            handle: SimHandle = _new(SimHandle)
            handle._callback = callback
            handle._args = args
            handle._cancelled = False
            handle._loop = self
            handle._source_traceback = None
            handle._repr = None
            handle._context = _copy_context() if context is None else context
        else:
            if self._closed:
                raise RuntimeError("Event loop is closed")
            self._check_callback(callback, "call_soon")
            handle = SimHandle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """Like :meth:`call_soon`; allowed only from the loop's own thread."""
        if self._thread_id is not None and threading.get_ident() != self._thread_id:
            raise UsageError(
                "SimLoop is single-threaded: call_soon_threadsafe() was called from another "
                "thread; a simulation has no threads, so schedule work from inside the loop"
            )
        return self.call_soon(callback, *args, context=context)

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if 0.0 < delay < _NEVER:
            step = round(delay * 1e9)
            when_ns = self._now + (step or 1)
        elif delay <= 0.0:
            when_ns = self._now
        elif delay == _NEVER:
            return self._never(callback, args, context)
        else:
            raise ValueError("delay must be a number, not NaN")
        if not self._fast:
            return self.call_at_ns(when_ns, callback, *args, context=context)
        handle: SimTimerHandle = _new(SimTimerHandle)
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._loop = self
        handle._source_traceback = None
        handle._repr = None
        handle._context = _copy_context() if context is None else context
        handle._when = when_ns / NS_PER_S
        handle._scheduled = True
        _heappush(self._timers, (when_ns, self._next_seq(), handle))
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if when == _NEVER:
            return self._never(callback, args, context)
        if math.isnan(when):
            raise ValueError("when must be a number, not NaN")
        return self.call_at_ns(ceil_ns(when), callback, *args, context=context)

    def call_at_ns(
        self,
        when_ns: int,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Run ``callback(*args)`` at virtual time ``when_ns`` (now, if in the past).

        Ordered by ``(when_ns, sequence)`` with every other timer; the handle is
        an :class:`asyncio.TimerHandle` and can be cancelled.
        """
        if when_ns < self._now:  # noqa: PLR1730  (hot path: no call to max())
            when_ns = self._now
        handle: SimTimerHandle
        if self._fast:  # (never once closed)
            handle = _new(SimTimerHandle)
            handle._callback = callback
            handle._args = args
            handle._cancelled = False
            handle._loop = self
            handle._source_traceback = None
            handle._repr = None
            handle._context = _copy_context() if context is None else context
            handle._when = when_ns / NS_PER_S
        else:
            if self._closed:
                raise RuntimeError("Event loop is closed")
            self._check_callback(callback, "call_at")
            handle = SimTimerHandle(when_ns / NS_PER_S, callback, args, self, context)
        handle._scheduled = True
        _heappush(self._timers, (when_ns, self._next_seq(), handle))
        return handle

    def _never(
        self, callback: Callable[..., object], args: Any, context: contextvars.Context | None
    ) -> asyncio.TimerHandle:
        # A timer at +inf: cancellable, never fires, never moves the clock.
        if self._closed:
            raise RuntimeError("Event loop is closed")
        return SimTimerHandle(_NEVER, callback, args, self, context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # Called when a scheduled timer is cancelled; compacts a mostly dead heap.
        self._cancelled_timers += 1
        timers = self._timers
        if self._cancelled_timers > COMPACT_MIN and 2 * self._cancelled_timers > len(timers):
            live = []
            for entry in timers:
                if entry[2]._cancelled or entry[2] is handle:
                    entry[2]._scheduled = False
                else:
                    live.append(entry)
            timers[:] = live  # in place: a running loop holds a reference
            heapq.heapify(timers)
            self._cancelled_timers = 0

    def _check_callback(self, callback: Callable[..., object], method: str) -> None:
        if not self._debug:
            return
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        self._fast = FAST_HANDLES and not self._debug and not self._closed

    # -- futures and tasks -------------------------------------------------------

    def create_future(self) -> asyncio.Future[Any]:
        return _Future(loop=self)

    def create_task(
        self,
        coro: Generator[Any, None, T] | Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
        eager_start: bool | None = None,
    ) -> asyncio.Task[T]:
        """Create a task; one created in a simulated host's context is remembered
        for :meth:`cancel_host`. ``eager_start`` is passed on where asyncio has it
        (Python 3.12+)."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        extra: dict[str, Any] = {} if eager_start is None else {"eager_start": eager_start}
        task: asyncio.Task[T]
        if self._task_factory is None:
            task = asyncio.Task(coro, loop=self, name=name, context=context, **extra)
        else:
            if context is not None:
                extra["context"] = context
            task = self._task_factory(self, coro, **extra)
            if name is not None:
                task.set_name(name)
        host = current_host.get() if context is None else context.get(current_host)
        if host is not None:
            self._remember(host, task)
        return task

    def _remember(self, host: str, task: asyncio.Task[Any]) -> None:
        # Insertion-ordered (a dict, not a set): cancellation order must not follow hashes.
        tasks = self._host_tasks.get(host)
        if tasks is None:
            tasks = self._host_tasks[host] = {}
        tasks[task] = None
        if len(tasks) >= self._host_prune_at.get(host, COMPACT_MIN):
            live = {t: None for t in tasks if not t.done()}
            self._host_tasks[host] = live
            self._host_prune_at[host] = max(COMPACT_MIN, 2 * len(live))

    def host_tasks(self, host: str) -> list[asyncio.Task[Any]]:
        """The unfinished tasks created in ``host``'s context, oldest first."""
        return [t for t in self._host_tasks.get(host, ()) if not t.done()]

    def host_of_task(self, task: asyncio.Task[Any]) -> str | None:
        """The host whose context created ``task``; ``None`` for the driver's tasks."""
        for host, tasks in self._host_tasks.items():
            if task in tasks:
                return host
        return None

    def cancel_host(self, host: str, *, reason: str | None = None) -> int:
        """Stop everything ``host`` has going, as a crash would; returns how many
        tasks were cancelled.

        Pending timers scheduled from the host's context are cancelled (they
        never fire); then each unfinished task of the host is cancelled with
        ``reason`` as the message, oldest first (its ``finally`` blocks run at
        the crash instant). Callbacks already due at this instant still run:
        they belong to events that already happened.
        """
        for _, _, handle in list(self._timers):
            if not handle._cancelled and handle._context.get(current_host) == host:
                handle.cancel()
        tasks = self.host_tasks(host)
        self._host_tasks.pop(host, None)
        self._host_prune_at.pop(host, None)
        message = reason if reason is not None else f"simulated host {host!r} crashed"
        for task in tasks:
            task.cancel(message)
        return len(tasks)

    def set_task_factory(self, factory: Any) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        return self._task_factory

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        """Run ``func(*args)`` inline, now, and return a completed future.

        ``executor`` is ignored: a simulation has no threads. The function's
        result or exception (other than ``KeyboardInterrupt``/``SystemExit``,
        which propagate) lands in the future.
        """
        if self._closed:
            raise RuntimeError("Event loop is closed")
        future: asyncio.Future[T] = self.create_future()
        try:
            result = func(*args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    # -- running -----------------------------------------------------------------

    def is_running(self) -> bool:
        return self._thread_id is not None

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        """Close the loop: pending callbacks and timers are dropped, tasks are not run."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        self._closed = True
        self._fast = False
        self.__dict__.pop("create_future", None)  # the class's methods again; no cycle left
        self.__dict__.pop("get_debug", None)
        self._ready.clear()
        self._timers.clear()
        self._cancelled_timers = 0
        self._host_tasks.clear()

    def shutdown(self, *, budget: int = 100_000) -> int:
        """Cancel every unfinished task, let them unwind, close async generators and
        close the loop; returns how many tasks were still unfinished at the end.

        ``max_time`` and ``max_steps`` are lifted for this last run, which may take
        at most ``budget`` more callbacks (a task that refuses to die is left behind).
        Safe after a :class:`Deadlock` or :class:`SimulationLimitExceeded`.
        """
        if self._closed:
            return 0
        self._max_steps = self._steps + budget
        self._max_time_ns = sys.maxsize
        left: list[asyncio.Task[Any]] = []
        try:
            for task in asyncio.all_tasks(self):
                task.cancel()

            def unwound() -> bool:
                return not asyncio.all_tasks(self)

            self.run_until_condition(unwound)
            self.run_until_complete(self.shutdown_asyncgens())
        except SimulationLimitExceeded:
            pass
        finally:
            left = [t for t in asyncio.all_tasks(self) if not t.done()]
            self.close()
        return len(left)

    def run_forever(self) -> None:
        """Run until :meth:`stop`; :class:`Deadlock` if nothing is left to do first."""
        self._run(mode="forever")

    def run_until_complete(self, future: Generator[Any, None, T] | Awaitable[T]) -> T:
        """Run until ``future`` is done and return its result; :class:`Deadlock` if it
        can never be done."""
        self._check_runnable()
        new_task = not asyncio.isfuture(future)
        fut: asyncio.Future[T] = asyncio.ensure_future(cast("Awaitable[T]", future), loop=self)
        fut.add_done_callback(_stop_loop_when_done)
        try:
            self._run(mode="complete", main=fut)
        except BaseException:
            if new_task and fut.done() and not fut.cancelled():
                fut.exception()  # mark it retrieved: the error is what we raise
            raise
        finally:
            fut.remove_done_callback(_stop_loop_when_done)
        if not fut.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return fut.result()

    def run_until_time_ns(self, when_ns: int) -> bool:
        """Run every callback due up to and including ``when_ns``, then set the clock to
        ``when_ns``. Returns ``False`` if :meth:`stop` ended the run first."""
        return self._run(mode="until", until_ns=max(when_ns, self._now)) == "until"

    def run_until_idle(self) -> bool:
        """Run until no callback is ready and no timer is pending: the simulated world
        is quiet. Returns ``False`` if :meth:`stop` ended the run first."""
        return self._run(mode="idle") == "idle"

    def run_until_condition(
        self, condition: Callable[[], bool], *, until_ns: int | None = None
    ) -> _RunResult:
        """Run until ``condition()`` is true; it is checked before the run and after
        every batch of callbacks.

        Returns what came first: ``"condition"``; ``"idle"`` (nothing is left to do,
        so the condition can no longer change); ``"until"`` (the clock reached
        ``until_ns``); or ``"stopped"`` (:meth:`stop` was called).
        """
        if condition():
            return "condition"
        mode: Literal["until", "idle"] = "idle" if until_ns is None else "until"
        if until_ns is not None:
            until_ns = max(until_ns, self._now)
        return self._run(mode=mode, until_ns=until_ns, condition=condition)

    def _check_runnable(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if asyncio.events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _run(
        self,
        *,
        mode: Literal["forever", "complete", "until", "idle"],
        main: asyncio.Future[Any] | None = None,
        until_ns: int | None = None,
        condition: Callable[[], bool] | None = None,
    ) -> _RunResult:
        self._check_runnable()
        self._thread_id = threading.get_ident()
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_final)
        asyncio.events._set_running_loop(self)
        try:
            return self._loop(mode, main, until_ns, condition)
        finally:
            self._stopping = False
            self._thread_id = None
            asyncio.events._set_running_loop(None)
            sys.set_asyncgen_hooks(*old_hooks)

    def _loop(
        self,
        mode: str,
        main: asyncio.Future[Any] | None,
        until_ns: int | None,
        condition: Callable[[], bool] | None,
    ) -> _RunResult:
        ready = self._ready
        timers = self._timers
        popleft = ready.popleft
        append = ready.append
        horizon = self._max_time_ns if until_ns is None else min(until_ns, self._max_time_ns)
        budget = self._max_steps - self._steps
        try:
            while True:
                # Run everything ready at this instant, first in, first out.
                while ready:
                    handle = popleft()
                    if handle._cancelled:
                        continue
                    budget -= 1
                    if budget < 0:
                        budget = 0
                        ready.appendleft(handle)
                        raise step_limit(self._max_steps, self._now)
                    try:
                        handle._context.run(handle._callback, *handle._args)  # type: ignore[arg-type]
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._callback_failed(handle, exc)
                    if self._stopping:
                        return "stopped"
                self._steps = self._max_steps - budget
                if condition is not None and condition():
                    return "condition"
                # Then the timers: due ones now, else jump the clock to the next one.
                if not timers:
                    if self._stopping:
                        return "stopped"
                    if until_ns is not None:
                        self._now = until_ns
                        return "until"
                    if mode == "idle":
                        return "idle"
                    raise self._deadlock(mode, main)
                now, _, timer = timers[0]
                if timer._cancelled:
                    _heappop(timers)
                    timer._scheduled = False
                    self._cancelled_timers -= 1
                    continue
                if self._stopping:
                    return "stopped"
                if now > horizon:
                    if until_ns is not None and now > until_ns:
                        self._now = until_ns
                        return "until"
                    self._now = max(self._now, self._max_time_ns)
                    raise time_limit(self._max_time_ns, now)
                self._now = now
                _heappop(timers)
                timer._scheduled = False
                append(timer)
                while timers:
                    when, _, timer = timers[0]
                    if when != now:
                        break
                    _heappop(timers)
                    timer._scheduled = False
                    if timer._cancelled:
                        self._cancelled_timers -= 1
                    else:
                        append(timer)
        finally:
            self._steps = self._max_steps - budget

    def _callback_failed(self, handle: SimHandle | SimTimerHandle, exc: BaseException) -> None:
        # What asyncio.Handle._run reports when a callback raises.
        context: dict[str, Any] = {
            "message": f"Exception in callback {handle._callback!r}{handle._args!r}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def _deadlock(self, mode: str, main: asyncio.Future[Any] | None) -> Deadlock:
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        return deadlock(self._now, tasks, self.host_of_task, main, forever=mode == "forever")


def _stop_loop_when_done(fut: asyncio.Future[Any]) -> None:
    fut.get_loop().stop()


def ceil_ns(when: float) -> int:
    """The first integer nanosecond at or after ``when`` seconds, computed exactly."""
    numerator, denominator = when.as_integer_ratio()
    return -((-numerator * NS_PER_S) // denominator)
