"""Codecs: turn frames into application objects and back, one object per frame.

* ``Raw`` — the frame's bytes as they are (an identity layer, left out of the data path).
* ``Text`` — a ``str`` in a text encoding (utf-8 by default).
* ``Json`` — JSON (RFC 8259) in utf-8, compact, non-ASCII kept as is; ``NaN`` and
  ``Infinity`` are refused both ways.
* ``Msgpack`` — MessagePack through the ``msgpack`` package (extra ``msgpack``).
* ``Cbor`` — CBOR (RFC 8949) through the ``cbor2`` package (extra ``cbor``).
* ``Protobuf`` — one protobuf message class through ``protobuf`` (extra ``protobuf``).

Rules of this file:

* ``decode`` raises only the codec's ``DecodeError`` (``layer=self.name``) for a
  malformed frame, with the library's exception as ``__cause__``; nothing else
  escapes (bad utf-8, excessive nesting, trailing bytes, library errors).
* ``encode`` raises ``UsageError`` for a value the codec cannot carry.
* Optional packages are imported when a codec is constructed, never when
  netweave is imported; a missing one raises ``MissingDependency`` naming the
  extra to install.
"""

from __future__ import annotations

import codecs
import importlib
import io
import json as _json
import json.encoder as _json_encoder
import json.scanner as _json_scanner
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, Final, NoReturn, Self, cast, final

from ..errors import DecodeError, InvalidStackSpec, MissingDependency, UsageError
from ._params import check_params
from .base import Codec

__all__ = ["Cbor", "Json", "Msgpack", "Protobuf", "Raw", "Text"]


def _no_params(name: str, params: dict[str, str]) -> None:
    check_params(name, params, ())


def _require(module: str, *, feature: str, package: str, extra: str) -> ModuleType:
    """Import optional ``module``, or raise ``MissingDependency`` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(feature, package, extra) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


@final
class Text(Codec[str]):
    """Each frame is one ``str`` in ``encoding`` (utf-8 by default).

    ``errors`` is a Python codec error handler: with ``"strict"`` (the default)
    bytes that are not valid in the encoding raise ``DecodeError``, and ``encode``
    raises ``UsageError`` for a ``str`` the encoding cannot represent (or a value
    that is not a ``str``). An unknown encoding or handler, or one that is not a
    text encoding (``base64``), raises ``UsageError`` at construction.
    """

    def __init__(self, encoding: str = "utf-8", errors: str = "strict") -> None:
        try:
            codecs.lookup_error(errors)
            "".encode(encoding, errors)
            b"".decode(encoding, errors)
        except LookupError as exc:
            raise UsageError(f"text codec: {exc} (try encoding=utf-8, errors=strict)") from None
        self.encoding = encoding
        self.errors = errors
        self.name = "text"

    def clone(self) -> Self:
        return type(self)(self.encoding, self.errors)

    def encode(self, unit: str) -> bytes:
        if not isinstance(unit, str):
            raise UsageError(f"text codec sends str, not {type(unit).__name__}")
        try:
            return unit.encode(self.encoding, self.errors)
        except UnicodeError as exc:
            raise UsageError(f"text codec cannot encode this str: {exc}") from exc

    def decode(self, data: bytes) -> list[str]:
        try:
            return [str(data, self.encoding, self.errors)]
        except (ValueError, LookupError, TypeError) as exc:
            raise DecodeError(f"not valid {self.encoding}: {exc}", layer=self.name) from exc


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


@final
class Json(Codec[Any]):
    """Each frame is one JSON value in utf-8: compact separators, non-ASCII text
    written as is (``ensure_ascii=False``), no ``NaN``/``Infinity``.

    ``decode`` raises ``DecodeError`` for bad utf-8 (a byte-order mark
    included), malformed JSON, trailing data, ``NaN``/``Infinity``, and nesting
    too deep for the parser. ``encode`` raises ``UsageError`` for a value JSON
    cannot carry (not serialisable, circular, ``NaN``, a lone surrogate, too
    deep). JSON turns tuples into lists and non-``str`` dict keys into strings.
    """

    def __init__(self) -> None:
        self.name = "json"
        self._encoder = _json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        self._decoder = _json.JSONDecoder(parse_constant=_reject_constant)
        # The fast paths call the C encoder and scanner that JSONEncoder.encode and
        # JSONDecoder.decode use, without their Python frames; anything unusual (an
        # error, whitespace around the value) takes the ordinary path, so results and
        # errors are the same.
        self._iterencode = _c_encoder(self._encoder)
        self._scan_once: Callable[[str, int], tuple[Any, int]] = _json_scanner.make_scanner(
            cast(Any, self._decoder)  # typeshed types the context as the scanner itself
        )

    def clone(self) -> Self:
        return type(self)()

    def encode(self, unit: Any) -> bytes:
        iterencode = self._iterencode
        if iterencode is not None:
            try:
                return "".join(iterencode(unit, 0)).encode("utf-8")
            except Exception:
                # The ordinary path below raises the right error; a failed run may have
                # left entries in the circular-reference markers, so start afresh.
                self._iterencode = _c_encoder(self._encoder)
        try:
            return self._encoder.encode(unit).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise UsageError(f"json codec cannot encode this value: {_describe(exc)}") from exc

    def decode(self, data: bytes) -> list[Any]:
        try:
            text = str(data, "utf-8")
            try:
                value, end = self._scan_once(text, 0)
            except StopIteration:
                end = -1  # not a value at the very start (whitespace, or nothing)
            if end == len(text):
                return [value]
            return [self._decoder.decode(text)]
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"malformed JSON: {_describe(exc)}", layer=self.name) from exc


def _c_encoder(encoder: _json.JSONEncoder) -> Callable[[Any, int], Any] | None:
    """The C encoder ``encoder.encode`` runs for a one-shot encode of an encoder without
    ``indent`` (``None`` where Python has no C accelerator)."""
    make: Callable[..., Any] | None = getattr(_json_encoder, "c_make_encoder", None)
    if make is None:
        return None
    basestring = (
        _json_encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else _json_encoder.encode_basestring
    )
    function: Callable[[Any, int], Any] = make(
        {} if encoder.check_circular else None,
        encoder.default,
        basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    return function


@final
class Msgpack(Codec[Any]):
    """Each frame is one MessagePack value (``bin`` for bytes, ``str`` for text).

    Arrays decode as lists; map keys may be any hashable value. ``decode``
    raises ``DecodeError`` for malformed or truncated data, trailing bytes, bad
    utf-8 in a string, and unhashable map keys. ``encode`` raises ``UsageError``
    for a value MessagePack cannot carry. Needs the ``msgpack`` extra.
    """

    def __init__(self) -> None:
        self._msgpack = _require(
            "msgpack", feature="the msgpack codec", package="msgpack", extra="msgpack"
        )
        self.name = "msgpack"

    def clone(self) -> Self:
        return type(self)()

    def encode(self, unit: Any) -> bytes:
        try:
            packed: bytes = self._msgpack.packb(unit, use_bin_type=True)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise UsageError(f"msgpack codec cannot encode this value: {_describe(exc)}") from exc
        return packed

    def decode(self, data: bytes) -> list[Any]:
        try:
            value = self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # any library error on peer input is a decode error
            raise DecodeError(f"malformed msgpack: {_describe(exc)}", layer=self.name) from exc
        return [value]


@final
class Cbor(Codec[Any]):
    """Each frame is exactly one CBOR data item (RFC 8949).

    Semantic tags that ``cbor2`` knows become Python values (datetimes,
    decimals, sets...). ``decode`` raises ``DecodeError`` for malformed or
    truncated data, trailing bytes after the item, and invalid tag content.
    ``encode`` raises ``UsageError`` for a value CBOR cannot carry. Needs the
    ``cbor`` extra.
    """

    def __init__(self) -> None:
        self._cbor2 = _require("cbor2", feature="the cbor codec", package="cbor2", extra="cbor")
        self.name = "cbor"

    def clone(self) -> Self:
        return type(self)()

    def encode(self, unit: Any) -> bytes:
        cbor2 = self._cbor2
        try:
            encoded: bytes = cbor2.dumps(unit)
        except (cbor2.CBORError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise UsageError(f"cbor codec cannot encode this value: {_describe(exc)}") from exc
        return encoded

    def decode(self, data: bytes) -> list[Any]:
        stream = io.BytesIO(data)
        try:
            value = self._cbor2.CBORDecoder(stream).decode()
        except Exception as exc:  # any library error on peer input is a decode error
            raise DecodeError(f"malformed CBOR: {_describe(exc)}", layer=self.name) from exc
        extra = len(stream.getbuffer()) - stream.tell()
        if extra:
            raise DecodeError(
                f"{extra} bytes of trailing data after the CBOR item", layer=self.name
            )
        return [value]


@final
class Protobuf(Codec[Any]):
    """Each frame is one serialised ``message_type`` (a protobuf message class).

    ``encode`` takes an instance of exactly that class (``UsageError``
    otherwise, or when a proto2 required field is unset) and serialises it
    deterministically (map entries in key order). ``decode`` raises
    ``DecodeError`` for bytes that do not parse as that message. Protobuf's
    wire format lets unknown fields through, so a frame of another message
    type may still parse. Needs the ``protobuf`` extra.
    """

    def __init__(self, message_type: type[Any]) -> None:
        message_module = _require(
            "google.protobuf.message",
            feature="the protobuf codec",
            package="protobuf",
            extra="protobuf",
        )
        if not (
            isinstance(message_type, type) and issubclass(message_type, message_module.Message)
        ):
            raise UsageError(
                f"protobuf codec needs a generated message class, not {message_type!r}"
            )
        self.message_type = message_type
        self.name = "protobuf"

    def clone(self) -> Self:
        return type(self)(self.message_type)

    def encode(self, unit: Any) -> bytes:
        if type(unit) is not self.message_type:
            raise UsageError(
                f"protobuf codec sends {self.message_type.__name__} messages, "
                f"not {type(unit).__name__}"
            )
        try:
            encoded: bytes = unit.SerializeToString(deterministic=True)
        except Exception as exc:  # protobuf's EncodeError: a required field is missing
            raise UsageError(
                f"protobuf codec cannot encode this message: {_describe(exc)}"
            ) from exc
        return encoded

    def decode(self, data: bytes) -> list[Any]:
        message = self.message_type()
        try:
            message.ParseFromString(data if isinstance(data, bytes) else bytes(data))
        except Exception as exc:  # any library error on peer input is a decode error
            raise DecodeError(
                f"not a valid {self.message_type.__name__} message: {_describe(exc)}",
                layer=self.name,
            ) from exc
        return [message]


# ---------------------------------------------------------------------------
# Spec factories (names in ``netweave.registry.BUILTIN_LAYERS``)
# ---------------------------------------------------------------------------

_TEXT_PARAMS: Final = ("encoding", "errors")


def raw(**params: str) -> Raw:
    """Spec ``raw``."""
    _no_params("raw", params)
    return Raw()


def text(**params: str) -> Text:
    """Spec ``text[:encoding=NAME][:errors=HANDLER]`` (defaults utf-8, strict)."""
    check_params("text", params, _TEXT_PARAMS)
    try:
        return Text(params.get("encoding", "utf-8"), params.get("errors", "strict"))
    except UsageError as exc:
        raise InvalidStackSpec(f"layer 'text': {exc}") from None


def json(**params: str) -> Json:
    """Spec ``json``."""
    _no_params("json", params)
    return Json()


def msgpack(**params: str) -> Msgpack:
    """Spec ``msgpack`` (needs the ``msgpack`` extra)."""
    _no_params("msgpack", params)
    return Msgpack()


def cbor(**params: str) -> Cbor:
    """Spec ``cbor`` (needs the ``cbor`` extra)."""
    _no_params("cbor", params)
    return Cbor()


def protobuf(**params: str) -> Protobuf:
    """Spec ``protobuf:message=package.module.Class`` (needs the ``protobuf`` extra).

    Imports the module and takes the class from it; ``InvalidStackSpec`` says
    which part could not be found.
    """
    check_params("protobuf", params, ("message",))
    path = params.get("message", "")
    module_name, _, class_name = path.rpartition(".")
    if not module_name or not class_name:
        raise InvalidStackSpec(
            "layer 'protobuf' needs message=package.module.Class naming a generated message "
            f"class (e.g. protobuf:message=google.protobuf.struct_pb2.Struct), not {path!r}"
        )
    _require(
        "google.protobuf.message",
        feature="the protobuf codec",
        package="protobuf",
        extra="protobuf",
    )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidStackSpec(
            f"layer 'protobuf': cannot import module {module_name!r} for message={path}: {exc} "
            f"(is the package with your generated *_pb2 module installed?)"
        ) from None
    except Exception as exc:
        raise InvalidStackSpec(
            f"layer 'protobuf': importing module {module_name!r} failed: {_describe(exc)}"
        ) from None
    message_type = getattr(module, class_name, None)
    if message_type is None:
        raise InvalidStackSpec(
            f"layer 'protobuf': module {module_name!r} has no class {class_name!r}"
        )
    try:
        return Protobuf(message_type)
    except UsageError as exc:
        if isinstance(exc, MissingDependency):
            raise
        raise InvalidStackSpec(f"layer 'protobuf': message={path}: {exc}") from None
