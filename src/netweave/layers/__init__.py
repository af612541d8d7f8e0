"""Sans-IO layers: framing, codecs and frame transforms, one contract for all.

The contract is :class:`~netweave.layers.base.Layer`; see its module docstring.
"""

from .base import Codec, FrameTransform, Framing, Layer, UnitKind

__all__ = ["Codec", "FrameTransform", "Framing", "Layer", "UnitKind"]
