"""The loop factory for the tests in ``tests/resilience`` and ``tests/session``.

Tests run on :class:`netweave.sim.SimLoop`, the project's virtual-time loop:
timers fire in virtual time, so a test that waits 30 s of deadlines takes
microseconds and never sleeps on the wall clock, and everything in-process
(``mem://``, the sans-IO cores) works on it. Modules that set
``REAL_LOOP = True`` (real TCP or UDP sockets, whose data arrives in wall
time) get the default loop instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from netweave.sim import SimLoop


def loop_factories(item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The pytest-asyncio loop factory for ``item``: a ``SimLoop`` unless ``REAL_LOOP``."""
    module = getattr(item, "module", None)
    if getattr(module, "REAL_LOOP", False):
        return {"real": asyncio.new_event_loop}
    return {"sim": SimLoop}
