"""``memory_stream_pair``: two connected in-memory stream ends, no listener, no sockets."""

from __future__ import annotations

from collections.abc import Sequence

from ..transports import MemoryStreamConnection, StreamConnection
from ..transports.base import DEFAULT_READ_HIGH_WATER

__all__ = ["memory_stream_pair"]


def memory_stream_pair(
    *, chunks: Sequence[int] | None = None, capacity: int = DEFAULT_READ_HIGH_WATER
) -> tuple[StreamConnection, StreamConnection]:
    """Return two connected :class:`~netweave.transports.StreamConnection` ends.

    The same connection class as ``mem://`` (see
    :class:`~netweave.transports.MemoryStreamConnection`), made without a
    listener. ``chunks`` (such as ``(1, 3, 7)``, cycled) makes every
    ``receive`` at either end return at most the next size, to test code
    against fragmentation; ``capacity`` bounds the unread bytes each end holds
    before the other's ``send`` waits. Call it with an event loop running.
    Raises ``UsageError`` for sizes below 1.
    """
    return MemoryStreamConnection.pair(
        chunks=None if chunks is None else tuple(chunks),
        capacity=capacity,
        names=("memory-a", "memory-b"),
    )
