"""An asyncio loop whose clock jumps to the next timer when nothing is ready.

Test-only. Real file descriptors still work (polled without blocking), so
in-memory transports run on it; timers fire in virtual time, so a test that
waits 30 s of deadlines takes microseconds and never sleeps on the wall clock.
Tests in modules that set ``REAL_LOOP = True`` (real TCP sockets, whose data
arrives in wall time) get the default loop instead.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Mapping
from typing import Any

import pytest


class _JumpingSelector(selectors.BaseSelector):
    def __init__(self) -> None:
        self._inner = selectors.DefaultSelector()
        self.now = 0.0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("virtual-time loop: nothing ready and no timer pending (deadlock)")
        self.now += timeout
        return []

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector loop with a virtual clock starting at 0."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(selector=self._jumping)

    def time(self) -> float:
        return self._jumping.now


def loop_factories(item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The pytest-asyncio loop factory for ``item``: virtual time unless ``REAL_LOOP``."""
    module = getattr(item, "module", None)
    if getattr(module, "REAL_LOOP", False):
        return {"real": asyncio.new_event_loop}
    return {"virtual": VirtualTimeLoop}
