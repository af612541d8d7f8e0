"""Transport tests: the event loop each test runs on (socket directories: ``tests/conftest.py``).

A test class (or module) chooses its loops with ``event_loops = ("uvloop",)``;
the default is the standard asyncio loop. pytest-asyncio's
``pytest_asyncio_loop_factories`` hook does the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest


def _uvloop() -> asyncio.AbstractEventLoop:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


LOOP_FACTORIES: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": _uvloop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    names = getattr(getattr(item, "cls", None), "event_loops", None) or getattr(
        getattr(item, "module", None), "event_loops", ("asyncio",)
    )
    return {name: LOOP_FACTORIES[name] for name in names}
