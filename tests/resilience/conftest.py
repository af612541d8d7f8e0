"""Tests here run on a virtual-time loop (see ``virtual_time.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from .virtual_time import loop_factories


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return loop_factories(item)
