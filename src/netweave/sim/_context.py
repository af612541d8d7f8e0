"""Which simulated host the running code belongs to.

Rules of this file: the current host is a context variable, set when a host's
main task is spawned; tasks and callbacks created from there inherit it, so
the loop knows whose tasks to cancel on a crash and the network knows which
host a socket call comes from. ``None`` means "the simulation's own driver".
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_host", "host_of_caller"]

current_host: ContextVar[str | None] = ContextVar("netweave_sim_host", default=None)


def host_of_caller() -> str | None:
    """The name of the simulated host whose code is running, or ``None``."""
    return current_host.get()
