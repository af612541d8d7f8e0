"""Codecs: turn frames into application objects and back.

* ``Raw`` — the frame's bytes as they are (an identity layer, left out of the data path).
"""

from __future__ import annotations

from typing import ClassVar, Self, final

from ..errors import InvalidStackSpec
from .base import Codec

__all__ = ["Raw"]


def _no_params(name: str, params: dict[str, str]) -> None:
    if params:
        raise InvalidStackSpec(f"layer {name!r} takes no parameters (got {', '.join(params)})")


@final
class Raw(Codec[bytes]):
    """Frames are delivered as ``bytes`` unchanged; ``bytearray``/``memoryview`` are accepted."""

    identity: ClassVar[bool] = True

    def __init__(self) -> None:
        self.name = "raw"

    def clone(self) -> Self:
        return type(self)()

    def encode(self, unit: bytes) -> bytes:
        return unit

    def decode(self, data: bytes) -> list[bytes]:
        return [data]


def raw(**params: str) -> Raw:
    """Spec ``raw``."""
    _no_params("raw", params)
    return Raw()
