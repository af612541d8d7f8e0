"""Tests here run on a virtual-time loop (``netweave.sim.SimLoop``, see ``sim_loop.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from .sim_loop import loop_factories


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return loop_factories(item)
