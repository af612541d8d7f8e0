"""One registry of names: transports by URL scheme, layers and codecs by stack-spec name.

Built-in entries are listed below as ``module:attribute`` strings and imported
only when first used, so optional dependencies load lazily. Third-party
packages add entries through entry points, also loaded on first use:

* ``netweave.transports`` — name = URL scheme, value = a ``StreamTransport`` or
  ``DatagramTransport`` instance or class (a class is instantiated without arguments);
* ``netweave.layers`` and ``netweave.codecs`` — name = spec name, value = a
  :class:`LayerFactory`: a callable taking the spec's parameters as keyword
  strings and returning a new layer.

Built-in names win over plug-ins of the same name. A stack spec is a comma
list of names, each with optional ``:key=value`` parameters, bottom layer first:
``lp4:max=64k,json``.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, final

from .errors import InvalidEndpoint, InvalidStackSpec, MissingDependency, UsageError
from .layers.base import Layer
from .transports.base import DatagramTransport, StreamTransport

if TYPE_CHECKING:
    from .transports.base import Transport

__all__ = ["LayerFactory", "Registry", "default_registry", "parse_spec"]

TRANSPORT_GROUP = "netweave.transports"
LAYER_GROUPS = ("netweave.layers", "netweave.codecs")

BUILTIN_TRANSPORTS: dict[str, str] = {
    "tcp": "netweave.transports._tcp:TcpTransport",
    "unix": "netweave.transports._unix:UnixTransport",
    "udp": "netweave.transports._udp:UdpTransport",
    "mem": "netweave.transports._mem:MemTransport",
    "tls": "netweave.transports._tls_transport:TlsTransport",
    "quic": "netweave.transports._quic:QuicTransport",
}

BUILTIN_LAYERS: dict[str, str] = {
    "lp1": "netweave.layers._framing:lp1",
    "lp2": "netweave.layers._framing:lp2",
    "lp4": "netweave.layers._framing:lp4",
    "lp8": "netweave.layers._framing:lp8",
    "lp2le": "netweave.layers._framing:lp2le",
    "lp4le": "netweave.layers._framing:lp4le",
    "lp8le": "netweave.layers._framing:lp8le",
    "varint": "netweave.layers._framing:varint",
    "line": "netweave.layers._framing:line",
    "delim": "netweave.layers._framing:delim",
    "raw": "netweave.layers._codecs:raw",
    "text": "netweave.layers._codecs:text",
    "json": "netweave.layers._codecs:json",
    "msgpack": "netweave.layers._codecs:msgpack",
    "cbor": "netweave.layers._codecs:cbor",
    "protobuf": "netweave.layers._codecs:protobuf",
    "zlib": "netweave.layers._compress:zlib",
    "zstd": "netweave.layers._compress:zstd",
    "lz4": "netweave.layers._compress:lz4",
}

_NAME = re.compile(r"^[a-z][a-z0-9_+.-]*$")


class LayerFactory(Protocol):
    """Builds a fresh layer from a spec's ``key=value`` parameters (values are text).

    Raises ``InvalidStackSpec`` (or ``ValueError``/``TypeError``, which the registry
    turns into ``InvalidStackSpec``) for a bad or unknown parameter.
    """

    def __call__(self, **params: str) -> Layer[Any, Any]: ...


@final
@dataclass(frozen=True, slots=True)
class SpecItem:
    """One ``name:key=value:...`` item of a stack spec."""

    name: str
    params: dict[str, str]


def parse_spec(spec: str) -> list[SpecItem]:
    """Split a stack spec into items; ``InvalidStackSpec`` for malformed text."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidStackSpec("empty stack spec; expected names such as 'lp4,json'")
    items: list[SpecItem] = []
    for position, raw in enumerate(spec.split(","), start=1):
        text = raw.strip()
        if not text:
            raise InvalidStackSpec(f"stack spec {spec!r}: item {position} is empty")
        name, *param_texts = text.split(":")
        name = name.strip().lower()
        if not _NAME.match(name):
            raise InvalidStackSpec(f"stack spec {spec!r}: {name!r} is not a valid layer name")
        params: dict[str, str] = {}
        for param in param_texts:
            key, sep, value = param.partition("=")
            key = key.strip()
            if not sep or not key:
                raise InvalidStackSpec(
                    f"stack spec {spec!r}: parameter {param!r} of {name!r} must be key=value"
                )
            if key in params:
                raise InvalidStackSpec(f"stack spec {spec!r}: {name!r} parameter {key!r} twice")
            params[key] = value.strip()
        items.append(SpecItem(name, params))
    return items


def _import_ref(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


@final
class Registry:
    """Names to transports and layer factories.

    ``entry_points=False`` gives a registry of built-ins only (useful in tests).
    """

    def __init__(self, *, entry_points: bool = True) -> None:
        self._transport_refs: dict[str, Callable[[], Any]] = {}
        self._layer_refs: dict[str, Callable[[], Any]] = {}
        self._transports: dict[str, Transport] = {}
        self._layers: dict[str, LayerFactory] = {}
        self._origins: dict[str, str] = {}
        if entry_points:
            self._discover()
        for scheme, ref in BUILTIN_TRANSPORTS.items():
            self._transport_refs[scheme] = functools.partial(_import_ref, ref)
            self._origins[f"transport:{scheme}"] = "netweave"
        for name, ref in BUILTIN_LAYERS.items():
            self._layer_refs[name] = functools.partial(_import_ref, ref)
            self._origins[f"layer:{name}"] = "netweave"

    # -- registration -----------------------------------------------------

    def register_transport(self, transport: Transport, *, replace: bool = False) -> None:
        """Make ``transport`` available under its ``scheme``."""
        scheme = transport.scheme
        if not replace and (scheme in self._transports or scheme in self._transport_refs):
            raise UsageError(f"transport scheme {scheme!r} is already registered")
        self._transport_refs.pop(scheme, None)
        self._transports[scheme] = transport

    def register_layer(self, name: str, factory: LayerFactory, *, replace: bool = False) -> None:
        """Make ``factory`` available as stack-spec name ``name``."""
        if not _NAME.match(name):
            raise UsageError(f"{name!r} is not a valid layer name (lowercase, start with a letter)")
        if not replace and (name in self._layers or name in self._layer_refs):
            raise UsageError(f"layer name {name!r} is already registered")
        self._layer_refs.pop(name, None)
        self._layers[name] = factory

    def _discover(self) -> None:
        # Names are matched lowercased (URL schemes and spec names are), so an
        # entry point spelled "MyLayer" is reachable as "mylayer".
        for ep in entry_points(group=TRANSPORT_GROUP):
            name = ep.name.lower()
            self._transport_refs[name] = functools.partial(_load_entry_point, ep)
            self._origins[f"transport:{name}"] = _dist_name(ep)
        for group in LAYER_GROUPS:
            for ep in entry_points(group=group):
                name = ep.name.lower()
                self._layer_refs[name] = functools.partial(_load_entry_point, ep)
                self._origins[f"layer:{name}"] = _dist_name(ep)

    # -- lookup -----------------------------------------------------------

    def transport_names(self) -> list[str]:
        """Every known URL scheme, sorted."""
        return sorted({*self._transports, *self._transport_refs})

    def layer_names(self) -> list[str]:
        """Every known stack-spec name, sorted."""
        return sorted({*self._layers, *self._layer_refs})

    def transport(self, scheme: str) -> Transport:
        """The transport for ``scheme``; ``InvalidEndpoint`` listing known schemes if none."""
        found = self._transports.get(scheme)
        if found is not None:
            return found
        ref = self._transport_refs.get(scheme)
        if ref is None:
            raise InvalidEndpoint(
                f"unknown scheme {scheme!r}; known schemes: {', '.join(self.transport_names())}"
            )
        loaded = self._load(ref, f"transport:{scheme}")
        if isinstance(loaded, type):
            loaded = self._load(loaded, f"transport:{scheme}")
        if not isinstance(loaded, StreamTransport | DatagramTransport):
            raise UsageError(
                f"transport plug-in {scheme!r} from {self._origins[f'transport:{scheme}']} "
                f"is not a StreamTransport or DatagramTransport"
            )
        self._transports[scheme] = loaded
        return loaded

    def layer_factory(self, name: str) -> LayerFactory:
        """The factory for ``name``; ``InvalidStackSpec`` listing known names if none."""
        found = self._layers.get(name)
        if found is not None:
            return found
        ref = self._layer_refs.get(name)
        if ref is None:
            raise InvalidStackSpec(
                f"unknown layer {name!r}; known layers: {', '.join(self.layer_names())}"
            )
        factory = self._load(ref, f"layer:{name}")
        if not callable(factory):
            raise UsageError(
                f"layer {name!r} from {self._origins.get(f'layer:{name}', '?')} is not "
                f"callable (an entry point must name a factory function or a Layer class)"
            )
        self._layers[name] = factory
        return factory  # type: ignore[no-any-return]

    def build_layers(self, spec: str) -> list[Layer[Any, Any]]:
        """Parse ``spec`` and build one fresh layer per item, bottom first."""
        layers: list[Layer[Any, Any]] = []
        for item in parse_spec(spec):
            factory = self.layer_factory(item.name)
            try:
                layer = factory(**item.params)
            except (InvalidStackSpec, MissingDependency):
                raise
            except (ValueError, TypeError) as exc:
                raise InvalidStackSpec(f"layer {item.name!r}: {exc}") from None
            except Exception as exc:
                raise UsageError(
                    f"layer {item.name!r} from {self._origins.get(f'layer:{item.name}', '?')} "
                    f"failed to build: {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(layer, Layer):
                raise UsageError(
                    f"layer {item.name!r} from {self._origins.get(f'layer:{item.name}', '?')} "
                    f"returned a {type(layer).__name__}, not a netweave Layer"
                )
            layers.append(layer)
        return layers

    def _load(self, ref: Callable[[], Any], key: str) -> Any:
        try:
            return ref()
        except MissingDependency:
            raise
        except Exception as exc:
            kind, _, name = key.partition(":")
            raise UsageError(
                f"{kind} {name!r} from {self._origins.get(key, '?')} failed to load: "
                f"{type(exc).__name__}: {exc} (fix or uninstall that package)"
            ) from exc

    def describe(self) -> dict[str, list[tuple[str, str]]]:
        """``{"transports": [(name, origin)], "layers": [...]}`` for ``netweave list``."""
        return {
            "transports": [
                (n, self._origins.get(f"transport:{n}", "?")) for n in self.transport_names()
            ],
            "layers": [(n, self._origins.get(f"layer:{n}", "?")) for n in self.layer_names()],
        }


def _load_entry_point(ep: EntryPoint) -> Any:
    return ep.load()


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"plug-in {dist.name}" if dist is not None else f"plug-in {ep.value}"


@functools.cache
def default_registry() -> Registry:
    """The process-wide registry with built-ins and installed plug-ins, built on first use."""
    return Registry()


def names(items: Iterable[SpecItem]) -> str:
    """The spec text of ``items`` (``lp4,json``), parameters left out."""
    return ",".join(item.name for item in items)
