"""The layer contract: sans-IO transforms composed into a :class:`~netweave.stack.Stack`.

A layer turns *lower* units into *upper* units on the way up (``decode``) and
back on the way down (``encode``). Units come in three kinds:

* ``"stream"`` — bytes of a byte stream, with arbitrary chunk boundaries;
* ``"frame"``  — one whole message as bytes (a datagram is a frame);
* ``"object"`` — an application value (a dict, a protobuf message, text).

Families by (lower, upper): stream transforms such as TLS (stream, stream);
framing (stream, frame); frame transforms such as compression (frame, frame);
codecs (frame, object). A stack checks that neighbours fit.

Rules of every layer:

* No I/O, no clock, no randomness it was not given.
* ``decode`` is bulk: one input in, *every* complete unit out, partial input
  kept for the next call. Feeding input whole or one byte at a time gives the
  same units.
* Bad input raises this layer's :class:`~netweave.errors.ProtocolError`
  (carrying ``layer=self.name``) and nothing else. After a ``ProtocolError`` the
  layer is unusable: the connection must be closed.
* Buffers are bounded: a unit larger than the configured maximum is rejected
  as soon as its size is known, before it is buffered.
* Layers that speak on their own (a TLS handshake) queue that output and hand
  it out through :meth:`Layer.data_to_send`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, Self, TypeVar

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["Codec", "FrameTransform", "Framing", "Layer", "UnitKind"]

UnitKind = Literal["stream", "frame", "object"]

L = TypeVar("L")
U = TypeVar("U")


class Layer(ABC, Generic[L, U]):
    """One sans-IO transform between ``lower_kind`` units ``L`` and ``upper_kind`` units ``U``."""

    lower_kind: ClassVar[UnitKind]
    upper_kind: ClassVar[UnitKind]
    #: True for layers whose encode and decode return their input unchanged;
    #: a stack leaves them out of the data path.
    identity: ClassVar[bool] = False

    #: The registered name used in errors and events (``"lp4"``, ``"json"``).
    name: str
    #: Optional observer for layer-specific events; the stack reports protocol errors.
    observer: Observer | None = None

    @abstractmethod
    def encode(self, unit: U) -> L:
        """Turn one upper unit into lower data. Raises ``UsageError`` (ours, not the
        peer's fault) for a unit this layer cannot carry, such as a frame over the maximum."""

    @abstractmethod
    def decode(self, data: L) -> list[U]:
        """Feed lower data; return every upper unit now complete (possibly none).
        Raises only this layer's ``ProtocolError`` on bad input."""

    def end_of_input(self) -> list[U]:
        """The lower side ended. Return units still held, or raise ``TruncatedInput``
        if a unit was left incomplete. The default holds nothing."""
        return []

    def data_to_send(self) -> list[L]:
        """Lower data the layer produced on its own (handshakes, alerts), oldest first.
        Each call hands over and forgets what it returns. The default produces nothing."""
        return []

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete unit (for memory-bound checks); 0 by default."""
        return 0

    @abstractmethod
    def clone(self) -> Self:
        """A new layer with the same configuration and fresh (empty) state."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Framing(Layer[bytes, bytes]):
    """Cuts a byte stream into frames and frames into a byte stream."""

    lower_kind: ClassVar[UnitKind] = "stream"
    upper_kind: ClassVar[UnitKind] = "frame"

    #: The largest frame payload this framing encodes or accepts.
    max_frame: int


class FrameTransform(Layer[bytes, bytes]):
    """Maps each frame to one frame (compression, checksums)."""

    lower_kind: ClassVar[UnitKind] = "frame"
    upper_kind: ClassVar[UnitKind] = "frame"


class Codec(Layer[bytes, U]):
    """Serialises application objects to frames and back; each frame is one object."""

    lower_kind: ClassVar[UnitKind] = "frame"
    upper_kind: ClassVar[UnitKind] = "object"
