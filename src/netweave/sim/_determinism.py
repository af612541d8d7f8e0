"""Serve the process's clocks and randomness from a simulation while it runs.

Rules of this file:

* :class:`DeterminismPatch` is a context manager. While at least one is
  active, these are replaced process-wide (and put back on exit, even after an
  error, exactly as they were found):

  - every module-level function of :mod:`random` (``random.random``,
    ``randint``, ``choice``, ``shuffle``, ``getrandbits``... all of them):
    each simulated host draws from its own seeded stream, the driver from
    another; ``seed(x)`` re-seeds the caller's stream with ``x`` and a bare
    ``seed()`` does nothing, so neither breaks the replay;
  - ``os.urandom`` and ``random._urandom`` (hence ``random.SystemRandom``,
    :mod:`secrets` and ``uuid.uuid4``): seeded bytes, per host;
  - ``time.time`` / ``time_ns``: the calling host's clock (``epoch`` plus the
    network's skewed, drifting reading of virtual time);
  - ``time.monotonic`` / ``monotonic_ns`` / ``perf_counter`` / ``perf_counter_ns``:
    the loop's virtual clock;
  - ``time.sleep``: refused with :class:`~netweave.errors.UsageError` when called
    from inside the running simulation (it would freeze every host; ``await
    asyncio.sleep`` instead); outside the loop it sleeps for real.

* Patches nest: the innermost active patch serves the calls. Code that
  captured a function before the patch (``from time import time``) keeps the
  real one, as do C-level clocks such as ``datetime.now()``; a
  ``random.Random()`` built without a seed is not covered either.
"""

from __future__ import annotations

import asyncio
import os
import random  # determinism: ok (its module functions are what this file replaces)
import time  # determinism: ok (its clocks are what this file replaces)
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Protocol, final

from ..errors import UsageError
from ._context import current_host
from ._seeds import SeedTree

__all__ = ["DEFAULT_EPOCH", "DeterminismPatch", "WallClock"]

#: Default wall-clock reading of virtual time 0: 2020-01-01T00:00:00Z, in seconds.
DEFAULT_EPOCH: Final = 1_577_836_800


class WallClock(Protocol):
    """A host's reading of virtual time, in ns since the simulation started."""

    def __call__(self, host: str | None, now_ns: int, /) -> int: ...


class _Clock(Protocol):
    def time_ns(self) -> int: ...


_ACTIVE: list[DeterminismPatch] = []
_SAVED: list[tuple[object, str, object]] = []

# The module-level functions of `random` are bound methods of one hidden instance.
_RANDOM_FUNCTIONS: Final = tuple(
    name
    for name in random.__all__
    if isinstance(getattr(getattr(random, name, None), "__self__", None), random.Random)
)


@final
class DeterminismPatch:
    """Serves ``random``, ``os.urandom``, ``time`` and friends from a simulation.

    ``loop`` gives virtual time, ``seeds`` the random streams (one per host and
    purpose), ``wall_clock`` a host's reading of the virtual clock (``None``: no
    skew), ``epoch`` the Unix time of virtual time 0. Re-entrant: entering an
    active patch again is allowed and counted.
    """

    def __init__(
        self,
        *,
        loop: _Clock,
        seeds: SeedTree,
        wall_clock: WallClock | None = None,
        epoch: float = DEFAULT_EPOCH,
    ) -> None:
        self._loop = loop
        self._seeds = seeds.child("determinism")
        self._wall_clock = wall_clock
        self._epoch_ns = round(epoch * 1_000_000_000)
        self._streams: dict[tuple[str | None, str], random.Random] = {}

    def stream(self, purpose: str, host: str | None = None) -> random.Random:
        """The stream that serves ``purpose`` (``"random"``, ``"urandom"``) to ``host``."""
        key = (host, purpose)
        rng = self._streams.get(key)
        if rng is None:
            owner = "driver" if host is None else f"host/{host}"
            rng = self._streams[key] = self._seeds.stream(f"{owner}/{purpose}")
        return rng

    # -- what the patched functions call ---------------------------------------------

    def _rng(self) -> random.Random:
        return self.stream("random", current_host.get())

    def _urandom(self, size: int) -> bytes:
        if size < 0:
            raise ValueError("negative argument not allowed")
        return self.stream("urandom", current_host.get()).randbytes(size)

    def _time_ns(self) -> int:
        now = self._loop.time_ns()
        if self._wall_clock is not None:
            now = self._wall_clock(current_host.get(), now)
        return self._epoch_ns + now

    def _monotonic_ns(self) -> int:
        return self._loop.time_ns()

    def _sleep(self, seconds: float) -> None:
        running: object = asyncio.events._get_running_loop()
        if running is self._loop:
            call = f"time.sleep({seconds!r})"  # determinism: ok (a message's text)
            raise UsageError(
                f"{call} was called inside a simulation: it would freeze every simulated "
                f"host without moving virtual time; use 'await asyncio.sleep({seconds!r})' instead"
            )
        _original(time, "sleep")(seconds)  # determinism: ok (outside the running loop)

    # -- context manager ------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether this patch is currently serving (entered and not yet exited)."""
        return self in _ACTIVE

    def __enter__(self) -> DeterminismPatch:
        if not _ACTIVE:
            _install()
        _ACTIVE.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for i in range(len(_ACTIVE) - 1, -1, -1):
            if _ACTIVE[i] is self:
                del _ACTIVE[i]
                break
        if not _ACTIVE:
            _restore()


def _current() -> DeterminismPatch | None:
    return _ACTIVE[-1] if _ACTIVE else None


def _original(owner: object, name: str) -> Any:
    for saved_owner, saved_name, value in _SAVED:
        if saved_owner is owner and saved_name == name:
            return value
    return getattr(owner, name)


def _random_function(name: str) -> Callable[..., Any]:
    original = getattr(random, name)

    def served(*args: Any, **kwargs: Any) -> Any:
        patch = _current()
        if patch is None:
            return original(*args, **kwargs)
        return getattr(patch._rng(), name)(*args, **kwargs)

    served.__name__ = served.__qualname__ = name
    served.__doc__ = original.__doc__
    return served


def _seed(a: Any = None, version: int = 2) -> None:
    """Re-seed the caller's simulated stream with ``a``; without ``a``, do nothing."""
    patch = _current()
    if patch is None:
        _original(random, "seed")(a, version)  # determinism: ok (no simulation active)
    elif a is not None:
        patch._rng().seed(a, version)


def _urandom(size: int) -> bytes:
    """Seeded bytes from the simulation (``os.urandom`` while a simulation runs)."""
    patch = _current()
    if patch is None:
        result: bytes = _original(os, "urandom")(size)
        return result
    return patch._urandom(size)


def _time_ns() -> int:
    patch = _current()
    if patch is None:
        result: int = _original(time, "time_ns")()  # determinism: ok (no simulation active)
        return result
    return patch._time_ns()


def _time() -> float:
    return _time_ns() / 1e9


def _monotonic_ns() -> int:
    patch = _current()
    if patch is None:
        result: int = _original(time, "monotonic_ns")()  # determinism: ok (no simulation)
        return result
    return patch._monotonic_ns()


def _monotonic() -> float:
    return _monotonic_ns() / 1e9


def _sleep(seconds: float) -> None:
    patch = _current()
    if patch is None:
        _original(time, "sleep")(seconds)  # determinism: ok (no simulation active)
    else:
        patch._sleep(seconds)


def _replacements() -> list[tuple[object, str, object]]:
    table: list[tuple[object, str, object]] = [
        (random, name, _random_function(name)) for name in _RANDOM_FUNCTIONS if name != "seed"
    ]
    table += [
        (random, "seed", _seed),
        (random, "_urandom", _urandom),
        (os, "urandom", _urandom),
        (time, "time", _time),
        (time, "time_ns", _time_ns),
        (time, "monotonic", _monotonic),
        (time, "monotonic_ns", _monotonic_ns),
        (time, "perf_counter", _monotonic),
        (time, "perf_counter_ns", _monotonic_ns),
        (time, "sleep", _sleep),
    ]
    return table


def _install() -> None:
    for owner, name, replacement in _replacements():
        if hasattr(owner, name):
            _SAVED.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)


def _restore() -> None:
    while _SAVED:
        owner, name, value = _SAVED.pop()
        setattr(owner, name, value)
