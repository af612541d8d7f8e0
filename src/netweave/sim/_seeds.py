"""One root seed, split into independent named random streams.

``SeedTree(42).stream("link:a->b")`` always gives the same sequence for the same
root seed and name, whatever other streams exist or were drawn from: adding a
host or a link does not change what happens elsewhere.
"""

from __future__ import annotations

import hashlib
import random  # determinism: ok (seeded Random instances only)
from typing import final

__all__ = ["SeedTree"]


@final
class SeedTree:
    """Derives named :class:`random.Random` streams from one root seed."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, not {type(seed).__name__}")
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def derive(self, name: str) -> int:
        """The 64-bit seed of stream ``name`` (stable across runs and platforms)."""
        digest = hashlib.blake2b(f"{self.seed}/{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def stream(self, name: str) -> random.Random:
        """The stream called ``name``; the same object on every call."""
        rng = self._streams.get(name)
        if rng is None:
            rng = random.Random(self.derive(name))
            self._streams[name] = rng
        return rng

    def child(self, name: str) -> SeedTree:
        """A sub-tree (for a host's own streams), independent of its siblings."""
        return SeedTree(self.derive(name))
