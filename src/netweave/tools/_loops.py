"""Choosing the event loop a command runs on: ``--loop auto|asyncio|uvloop``."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Final, Literal, cast

from ..errors import MissingDependency, UsageError

__all__ = ["LOOP_CHOICES", "LoopName", "loop_factory"]

LoopName = Literal["auto", "asyncio", "uvloop"]

#: The accepted ``--loop`` values.
LOOP_CHOICES: Final[tuple[LoopName, ...]] = ("auto", "asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for ``asyncio.Runner(loop_factory=...)``.

    ``"asyncio"`` is the standard loop; ``"uvloop"`` is uvloop, raising
    ``MissingDependency`` (naming the ``uvloop`` extra) when it is not installed;
    ``"auto"`` is uvloop when installed and the standard loop otherwise. Any other
    name raises ``UsageError``.
    """
    if name not in LOOP_CHOICES:
        raise UsageError(f"unknown event loop {name!r}; choose one of: {', '.join(LOOP_CHOICES)}")
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if name == "uvloop":
            raise MissingDependency("the uvloop event loop", "uvloop", "uvloop") from None
        return asyncio.new_event_loop
    return cast("Callable[[], asyncio.AbstractEventLoop]", uvloop.new_event_loop)
