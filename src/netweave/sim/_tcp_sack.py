"""Selective acknowledgements (RFC 2018): what the peer holds above the cumulative ACK.

Rules of this file: the scoreboard keeps sorted, disjoint ``[start, end)``
ranges strictly above the cumulative ACK and below what was sent; the holes
between them (below the highest SACKed byte) are what a sender in recovery
resends, each at most once per recovery, one MSS at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import final

__all__ = ["Scoreboard"]


@final
class Scoreboard:
    """The sender's record of SACKed ranges."""

    __slots__ = ("blocks", "sacked")

    def __init__(self) -> None:
        self.blocks: list[tuple[int, int]] = []
        #: Bytes covered by :attr:`blocks`.
        self.sacked = 0

    def add(self, blocks: Iterable[tuple[int, int]], una: int, limit: int) -> int:
        """Merge SACK ``blocks`` (clipped to ``(una, limit]``); return the bytes newly SACKed."""
        before = self.sacked
        merged = list(self.blocks)
        for block_start, block_end in blocks:
            start, end = max(block_start, una), min(block_end, limit)
            if start < end:
                merged.append((start, end))
        if len(merged) == len(self.blocks):
            return 0
        merged.sort()
        out: list[tuple[int, int]] = []
        for start, end in merged:
            if out and start <= out[-1][1]:
                if end > out[-1][1]:
                    out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
        self.blocks = out
        self.sacked = sum(end - start for start, end in out)
        return self.sacked - before

    def advance(self, una: int) -> None:
        """The cumulative ACK moved to ``una``: forget what lies below it."""
        blocks = self.blocks
        if not blocks or blocks[0][0] >= una:
            return
        kept = [(max(start, una), end) for start, end in blocks if end > una]
        self.blocks = kept
        self.sacked = sum(end - start for start, end in kept)

    def next_hole(self, start: int, mss: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after ``start`` and below the highest SACKed
        byte, as ``(seq, length)`` with ``length <= mss``; ``None`` if there is none."""
        for block_start, block_end in self.blocks:
            if start < block_start:
                return start, min(mss, block_start - start)
            start = max(start, block_end)
        return None

    def clear(self) -> None:
        """Forget everything (after a retransmission timeout, as RFC 6675 allows)."""
        self.blocks = []
        self.sacked = 0
