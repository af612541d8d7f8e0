"""Offers, agreements, and the one pure function that turns two hellos into an agreement.

Rules of this file (they are the agreement rules of ``docs/negotiation.md``):

* Within the intersection the server's preference wins: for the protocol
  version, framing, codec and compression, the first entry of the *server's*
  list that the client also offers.
* ``max_frame`` is the smaller of the two; ``heartbeat`` the smaller of the two
  non-zero intervals (zero means "none wanted", so the other side's applies).
* A compression level (wire version 2) is the server's for the chosen
  algorithm if it names one, else the client's, else the algorithm's default.
* Features: those both sides offer. A feature either side requires must be
  offered by the other. TLS: on when both offer it (``optional`` or
  ``required``); a side that ``requires`` it fails against one that ``never``
  does. Version 1 hellos carry no features and cannot ask for TLS.
* The checks run in a fixed order (protocol, version, framing, codec,
  compression, features, tls); the first one that fails is reported, with a
  reason worded the same for both sides ("the client ...", "the server ...").
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal, final, get_args

from ..errors import InvalidStackSpec, NegotiationFailed, UsageError
from ..layers import DEFAULT_MAX_FRAME
from ..registry import SpecItem, parse_spec
from ._wire import SUPPORTED_WIRE_VERSIONS, Hello, valid_name

__all__ = ["NONE", "Agreement", "Offer", "TlsMode", "agree", "check_agreement"]

#: The compression name meaning "frames go uncompressed".
NONE: Final = "none"

TlsMode = Literal["never", "optional", "required"]
_TLS_CODES: Final[dict[str, int]] = {"never": 0, "optional": 1, "required": 2}


def _spec_items(kind: str, entries: Sequence[str]) -> tuple[SpecItem, ...]:
    if isinstance(entries, str):
        raise UsageError(f"{kind}s must be a list of names, not the string {entries!r}")
    if not entries:
        raise UsageError(f"offer at least one {kind}")
    items: list[SpecItem] = []
    for entry in entries:
        try:
            parsed = parse_spec(entry)
        except InvalidStackSpec as exc:
            raise UsageError(f"{kind} {entry!r}: {exc}") from None
        if len(parsed) != 1:
            raise UsageError(f"{kind} {entry!r} must be one name, not a comma list")
        item = parsed[0]
        if not valid_name(item.name):
            raise UsageError(f"{kind} name {item.name!r} is not a valid name")
        items.append(item)
    if len({item.name for item in items}) != len(items):
        raise UsageError(f"{kind}s repeat a name: {[item.name for item in items]}")
    return tuple(items)


def _check_compression_item(item: SpecItem) -> None:
    if item.name == NONE and item.params:
        raise UsageError("compression 'none' takes no parameters")
    level = item.params.get("level")
    if level is None:
        return
    try:
        number = int(level)
    except ValueError:
        raise UsageError(f"compression {item.name!r}: level {level!r} is not an integer") from None
    if not -128 <= number <= 127:
        raise UsageError(f"compression {item.name!r}: level {number} is outside -128..127")


@final
class Offer:
    """What one side supports, each list in preference order (best first).

    The same class serves the client (its offer) and the server (its policy,
    whose preferences win). ``framings``, ``codecs`` and ``compression`` take
    stack-spec items: the name goes on the wire, the parameters stay local
    (``"protobuf:message=pkg.Msg"``, ``"zstd:level=9:threshold=1k"``; a
    compression ``level`` is also offered to the peer). ``"none"`` in
    ``compression`` allows uncompressed frames. ``heartbeat`` is the wanted
    interval in seconds (0: none). ``required_features`` must be agreed or
    negotiation fails; they count as offered. ``tls``: ``"never"``,
    ``"optional"`` (used when the peer can) or ``"required"``.
    ``wire_versions`` are the hello wire versions this side will speak.

    Raises ``UsageError`` for invalid values. Offers are immutable and compare
    by value.
    """

    __slots__ = (
        "_items",
        "codecs",
        "compression",
        "features",
        "framings",
        "heartbeat",
        "max_frame",
        "protocol",
        "required_features",
        "tls",
        "versions",
        "wire_versions",
    )

    protocol: str
    versions: tuple[int, ...]
    framings: tuple[str, ...]
    codecs: tuple[str, ...]
    compression: tuple[str, ...]
    max_frame: int
    heartbeat: float
    features: frozenset[str]
    required_features: frozenset[str]
    tls: TlsMode
    wire_versions: tuple[int, ...]

    def __init__(
        self,
        protocol: str,
        *,
        versions: Sequence[int] = (1,),
        framings: Sequence[str] = ("lp4",),
        codecs: Sequence[str] = ("json",),
        compression: Sequence[str] = (NONE,),
        max_frame: int = DEFAULT_MAX_FRAME,
        heartbeat: float = 0.0,
        features: Collection[str] = (),
        required_features: Collection[str] = (),
        tls: TlsMode = "never",
        wire_versions: Sequence[int] = (2, 1),
    ) -> None:
        if (
            not isinstance(protocol, str)
            or not protocol
            or not protocol.isprintable()
            or len(protocol.encode("utf-8")) > 255
        ):
            raise UsageError(f"protocol must be 1 to 255 bytes of printable text, not {protocol!r}")
        version_list = tuple(versions)
        if not version_list or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF
            for v in version_list
        ):
            raise UsageError(f"versions must be one or more integers 0-65535, not {versions!r}")
        if len(set(version_list)) != len(version_list):
            raise UsageError(f"versions repeat a version: {version_list!r}")
        if (
            isinstance(max_frame, bool)
            or not isinstance(max_frame, int)
            or not 1 <= max_frame <= 0xFFFFFFFF
        ):
            raise UsageError(f"max_frame must be from 1 to 4294967295 bytes, not {max_frame!r}")
        if not 0 <= heartbeat * 1000 <= 0xFFFFFFFF:
            raise UsageError(f"heartbeat must be from 0 to 4294967 seconds, not {heartbeat!r}")
        if tls not in get_args(TlsMode):
            raise UsageError(f"tls must be 'never', 'optional' or 'required', not {tls!r}")
        if isinstance(features, str) or isinstance(required_features, str):
            raise UsageError("features must be a collection of names, not one string")
        required = frozenset(required_features)
        offered = frozenset(features) | required
        for name in offered:
            if not valid_name(name):
                raise UsageError(
                    f"feature {name!r} is not a valid name (lowercase letters, digits, _+.-)"
                )
        wire = tuple(wire_versions)
        if not wire or any(v not in SUPPORTED_WIRE_VERSIONS for v in wire):
            raise UsageError(
                f"wire_versions must be chosen from {SUPPORTED_WIRE_VERSIONS}, not {wire!r}"
            )
        if max(wire) < 2 and (required or tls == "required"):
            raise UsageError(
                "required features and tls='required' need hello wire version 2, which "
                f"wire_versions={wire!r} leaves out"
            )
        items = {
            "framing": _spec_items("framing", framings),
            "codec": _spec_items("codec", codecs),
            "compression": _spec_items("compression", compression),
        }
        for item in items["framing"]:
            if "max" in item.params:
                raise UsageError(f"framing {item.name!r}: set max_frame on the offer, not max=")
        for item in items["compression"]:
            _check_compression_item(item)
        self.protocol = protocol
        self.versions = version_list
        self.framings = tuple(framings)
        self.codecs = tuple(codecs)
        self.compression = tuple(compression)
        self.max_frame = max_frame
        self.heartbeat = float(heartbeat)
        self.features = offered
        self.required_features = required
        self.tls = tls
        self.wire_versions = tuple(sorted(set(wire), reverse=True))
        self._items = items

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__ if name != "_items")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Offer) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "_items"
        )
        return f"Offer({fields})"

    def items(self, kind: Literal["framing", "codec", "compression"]) -> tuple[SpecItem, ...]:
        """The parsed stack-spec items of one kind, in preference order."""
        return self._items[kind]

    def item(self, kind: Literal["framing", "codec", "compression"], name: str) -> SpecItem:
        """The local stack-spec item for ``name`` (``KeyError`` if not offered)."""
        for item in self._items[kind]:
            if item.name == name:
                return item
        raise KeyError(name)

    def hello(self, wire_version: int) -> Hello:
        """This offer as a hello of ``wire_version`` (version 1 leaves out what it cannot carry)."""
        hello = Hello(
            protocol=self.protocol,
            versions=tuple(self.versions),
            framings=tuple(item.name for item in self._items["framing"]),
            codecs=tuple(item.name for item in self._items["codec"]),
            compression=tuple(item.name for item in self._items["compression"]),
            max_frame=self.max_frame,
        )
        if wire_version < 2:
            return hello
        return Hello(
            protocol=hello.protocol,
            versions=hello.versions,
            framings=hello.framings,
            codecs=hello.codecs,
            compression=hello.compression,
            max_frame=hello.max_frame,
            levels=tuple(
                (item.name, int(item.params["level"]))
                for item in self._items["compression"]
                if "level" in item.params
            ),
            heartbeat_ms=round(self.heartbeat * 1000),
            features=tuple(sorted(self.features)),
            required=tuple(sorted(self.required_features)),
            tls=_TLS_CODES[self.tls],
        )

    def v1_shortfall(self, side: Literal["client", "server"]) -> tuple[str, str] | None:
        """``(what, reason)`` if this offer cannot be honoured over hello version 1
        (it requires features or TLS, which version 1 cannot negotiate)."""
        if self.required_features:
            names = ", ".join(repr(name) for name in sorted(self.required_features))
            return "feature", (
                f"the {side} requires feature {names}, but hello wire version 1 carries no "
                f"feature flags"
            )
        if self.tls == "required":
            return "tls", f"the {side} requires TLS, but hello wire version 1 cannot negotiate TLS"
        return None


@dataclass(frozen=True, slots=True)
class Agreement:
    """What both sides agreed; both compute the same one (it compares equal)."""

    wire_version: int
    protocol: str
    version: int
    framing: str
    codec: str
    compression: str
    compression_level: int | None
    max_frame: int
    heartbeat: float
    features: frozenset[str]
    tls: bool

    def has_feature(self, name: str) -> bool:
        """Whether feature ``name`` was agreed (offered by both sides)."""
        return name in self.features

    def to_hello(self) -> Hello:
        """This agreement as the content of an AGREE."""
        levels = (
            () if self.compression_level is None else ((self.compression, self.compression_level),)
        )
        return Hello(
            protocol=self.protocol,
            versions=(self.version,),
            framings=(self.framing,),
            codecs=(self.codec,),
            compression=(self.compression,),
            max_frame=self.max_frame,
            levels=levels,
            heartbeat_ms=round(self.heartbeat * 1000),
            features=tuple(sorted(self.features)),
            tls=int(self.tls),
        )

    @classmethod
    def from_hello(cls, hello: Hello, wire_version: int) -> Agreement:
        """The agreement an AGREE of ``wire_version`` holds (its shape already checked)."""
        return cls(
            wire_version=wire_version,
            protocol=hello.protocol,
            version=hello.versions[0],
            framing=hello.framings[0],
            codec=hello.codecs[0],
            compression=hello.compression[0],
            compression_level=hello.levels[0][1] if hello.levels else None,
            max_frame=hello.max_frame,
            heartbeat=hello.heartbeat_ms / 1000,
            features=frozenset(hello.features),
            tls=bool(hello.tls),
        )

    def describe(self) -> str:
        """One line for people: ``myproto v2 over lp4/zstd(3)/json, max 1 MiB, ...``."""
        compression = self.compression
        if self.compression_level is not None:
            compression += f"({self.compression_level})"
        parts = [
            f"{self.protocol} v{self.version} over {self.framing}/{compression}/{self.codec}",
            f"max frame {self.max_frame} B",
            f"heartbeat {self.heartbeat:g} s" if self.heartbeat else "no heartbeat",
            "features " + ",".join(sorted(self.features)) if self.features else "no features",
            "TLS" if self.tls else "no TLS",
            f"hello v{self.wire_version}",
        ]
        return ", ".join(parts)


def _fail(what: str, reason: str) -> NegotiationFailed:
    return NegotiationFailed(reason, side="local", what=what)


def _pick(what: str, client: Sequence[str], server: Sequence[str]) -> str:
    for choice in server:
        if choice in client:
            return choice
    raise _fail(
        what,
        f"no common {what}: the client offers {', '.join(client)}; "
        f"the server accepts {', '.join(server)}",
    )


def agree(client: Hello, server: Hello, wire_version: int) -> Agreement:
    """The agreement between the ``client``'s hello and the ``server``'s (its full,
    version-2 hello, whatever ``wire_version`` the client spoke). Pure and
    deterministic. Raises ``NegotiationFailed(side="local")`` naming what did not
    match (``what``) in words that read the same on both sides."""
    if client.protocol != server.protocol:
        raise _fail(
            "protocol",
            f"protocol mismatch: the client speaks {client.protocol!r}, "
            f"the server speaks {server.protocol!r}",
        )
    version = next((v for v in server.versions if v in client.versions), None)
    if version is None:
        raise _fail(
            "version",
            f"no common protocol version: the client offers "
            f"{', '.join(map(str, client.versions))}; the server accepts "
            f"{', '.join(map(str, server.versions))}",
        )
    framing = _pick("framing", client.framings, server.framings)
    codec = _pick("codec", client.codecs, server.codecs)
    compression = _pick("compression", client.compression, server.compression)
    level: int | None = None
    if wire_version >= 2 and compression != NONE:
        level = dict(server.levels).get(compression, dict(client.levels).get(compression))
    heartbeats = [ms for ms in (client.heartbeat_ms, server.heartbeat_ms) if ms]
    if wire_version < 2:
        heartbeats = []
    v1 = " (hello wire version 1 carries no feature flags)" if wire_version < 2 else ""
    client_features = set(client.features) | set(client.required)
    server_features = set(server.features) | set(server.required)
    missing = sorted(set(server.required) - client_features)
    if missing:
        raise _fail(
            "feature",
            f"the server requires feature {', '.join(map(repr, missing))}, which the client "
            f"does not offer{v1}",
        )
    missing = sorted(set(client.required) - server_features)
    if missing:
        raise _fail(
            "feature",
            f"the client requires feature {', '.join(map(repr, missing))}, which the server "
            f"does not offer",
        )
    client_tls = client.tls if wire_version >= 2 else 0
    if server.tls == 2 and client_tls == 0:
        suffix = " (hello wire version 1 cannot negotiate TLS)" if wire_version < 2 else ""
        raise _fail("tls", f"the server requires TLS, but the client does not offer it{suffix}")
    if client_tls == 2 and server.tls == 0:
        raise _fail("tls", "the client requires TLS, but the server does not offer it")
    return Agreement(
        wire_version=wire_version,
        protocol=server.protocol,
        version=version,
        framing=framing,
        codec=codec,
        compression=compression,
        compression_level=level,
        max_frame=min(client.max_frame, server.max_frame),
        heartbeat=min(heartbeats) / 1000 if heartbeats else 0.0,
        features=frozenset(client_features & server_features) if wire_version >= 2 else frozenset(),
        tls=bool(client_tls and server.tls),
    )


def check_agreement(offer: Offer, agreement: Agreement) -> None:
    """Raise ``NegotiationFailed(side="remote")`` unless ``agreement`` (from the server)
    lies within the client's ``offer``: a server that chose something the client
    never offered broke the protocol."""

    def refuse(what: str, reason: str) -> NegotiationFailed:
        return NegotiationFailed(f"the server's agreement {reason}", side="remote", what=what)

    hello = offer.hello(agreement.wire_version)
    if agreement.protocol != offer.protocol:
        raise refuse("protocol", f"names protocol {agreement.protocol!r}, not {offer.protocol!r}")
    if agreement.version not in hello.versions:
        raise refuse(
            "version", f"chose version {agreement.version}, which the client did not offer"
        )
    for what, value, offered in (
        ("framing", agreement.framing, hello.framings),
        ("codec", agreement.codec, hello.codecs),
        ("compression", agreement.compression, hello.compression),
    ):
        if value not in offered:
            raise refuse(what, f"chose {what} {value!r}, which the client did not offer")
    if agreement.max_frame > offer.max_frame:
        raise refuse("max_frame", f"allows frames of {agreement.max_frame} bytes, over ours")
    if not agreement.features <= offer.features:
        raise refuse("feature", "turned on features the client did not offer")
    if not offer.required_features <= agreement.features:
        raise refuse("feature", "left out a feature the client requires")
    if agreement.tls and offer.tls == "never":
        raise refuse("tls", "turned on TLS, which the client does not offer")
    if not agreement.tls and offer.tls == "required":
        raise refuse("tls", "left TLS off, which the client requires")
