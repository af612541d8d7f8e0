"""Observers: the callables that receive events.

An observer is any callable taking one :class:`~netweave.observe.Event`.
Components accept ``observer=None`` and test ``if observer is not None`` before
building an event, so running without one costs one attribute check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar, final

from ._events import Event

__all__ = [
    "LoggingObserver",
    "Observer",
    "RecordingObserver",
    "event_to_dict",
    "fanout",
    "loop_time",
]

E = TypeVar("E", bound=Event)


class Observer(Protocol):
    """Anything that can be called with an event. Must not raise and must not block."""

    def __call__(self, event: Event, /) -> None: ...


def loop_time() -> float | None:
    """The running loop's clock (virtual under the simulator), or ``None`` outside a loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return None


@final
class RecordingObserver:
    """Keeps every event with the loop time it arrived at, for tests.

    ``limit`` bounds memory: once reached, the oldest events are dropped and
    ``dropped`` counts them.
    """

    def __init__(self, *, limit: int = 100_000) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._limit = limit
        self.records: list[tuple[float | None, Event]] = []
        self.dropped = 0

    def __call__(self, event: Event, /) -> None:
        self.records.append((loop_time(), event))
        if len(self.records) > self._limit:
            excess = len(self.records) - self._limit
            del self.records[:excess]
            self.dropped += excess

    @property
    def events(self) -> list[Event]:
        """The recorded events, oldest first."""
        return [event for _, event in self.records]

    def of_type(self, kind: type[E]) -> list[E]:
        """The recorded events that are instances of ``kind``."""
        return [event for _, event in self.records if isinstance(event, kind)]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.records)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.records.clear()
        self.dropped = 0


def event_to_dict(event: Event, *, time: float | None = None) -> dict[str, Any]:
    """A JSON-ready dict: ``{"event": kind, "time": t, **fields}``."""
    out: dict[str, Any] = {"event": event.kind}
    if time is not None:
        out["time"] = time
    for field in dataclasses.fields(event):
        out[field.name] = getattr(event, field.name)
    return out


@final
class LoggingObserver:
    """Writes each event as one JSON object per line through stdlib :mod:`logging`.

    Records go to ``logger`` (default ``netweave.events``) at ``level``; the
    message is the JSON text, so any handler or formatter prints one object per line.
    """

    def __init__(self, logger: logging.Logger | None = None, *, level: int = logging.INFO) -> None:
        self._logger = logger if logger is not None else logging.getLogger("netweave.events")
        self._level = level

    def __call__(self, event: Event, /) -> None:
        if not self._logger.isEnabledFor(self._level):
            return
        text = json.dumps(event_to_dict(event, time=loop_time()), default=str, sort_keys=True)
        self._logger.log(self._level, text)


def fanout(*observers: Observer | None) -> Observer | None:
    """One observer that calls each given one in order (``None`` entries are skipped)."""
    present = [o for o in observers if o is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call_all(event: Event, /) -> None:
        for observer in present:
            observer(event)

    return call_all
