"""Sans-IO layers: framing, codecs and frame transforms, one contract for all.

The contract is :class:`~netweave.layers.base.Layer`; see its module docstring.

Framing (byte stream to frames): :class:`LengthPrefix`, :class:`Varint`,
:class:`Delimiter`. Codecs (frames to objects): :class:`Raw`, :class:`Text`,
:class:`Json`, :class:`Msgpack`, :class:`Cbor`, :class:`Protobuf`. Frame
transforms: the :class:`Compression` layers :class:`Zlib`, :class:`Zstd`,
:class:`Lz4`. TLS over a byte stream: :class:`Tls`. The exact
bytes each framing puts on the wire are documented in ``docs/wire-format.md``.
"""

from ._codecs import Cbor, Json, Msgpack, Protobuf, Raw, Text
from ._compress import Compression, Lz4, Zlib, Zstd
from ._framing import DEFAULT_MAX_FRAME, VARINT_MAX, Delimiter, LengthPrefix, Varint
from ._tls import Tls, tls_client_context, tls_server_context
from .base import Codec, FrameTransform, Framing, Layer, UnitKind

__all__ = [
    "DEFAULT_MAX_FRAME",
    "VARINT_MAX",
    "Cbor",
    "Codec",
    "Compression",
    "Delimiter",
    "FrameTransform",
    "Framing",
    "Json",
    "Layer",
    "LengthPrefix",
    "Lz4",
    "Msgpack",
    "Protobuf",
    "Raw",
    "Text",
    "Tls",
    "UnitKind",
    "Varint",
    "Zlib",
    "Zstd",
    "tls_client_context",
    "tls_server_context",
]
