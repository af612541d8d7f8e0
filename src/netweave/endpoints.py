"""Endpoint URLs: ``tcp://127.0.0.1:9000?nodelay=0``, ``unix:///run/x.sock``, ``mem://name``.

The scheme selects a transport from the registry; the transport's declared
:class:`Option` table says which query options are allowed and how each is
parsed. Every mistake raises :class:`~netweave.errors.InvalidEndpoint` with a
message naming the problem and, where possible, the accepted alternatives.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import InvalidEndpoint

if TYPE_CHECKING:
    from .registry import Registry
    from .transports.base import Transport

__all__ = [
    "Endpoint",
    "Option",
    "format_host_port",
    "parse_bool",
    "parse_endpoint",
    "parse_seconds",
    "parse_size",
]

T = TypeVar("T")


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case)."""
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {text!r}")


def parse_seconds(text: str) -> float:
    """A non-negative number of seconds (``2``, ``0.5``)."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


_SIZE_SUFFIXES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """A byte count, optionally with a binary suffix: ``65536``, ``64k``, ``16m``, ``1g``."""
    stripped = text.strip().lower().removesuffix("ib").removesuffix("b")
    suffix = stripped[-1:] if stripped[-1:] in _SIZE_SUFFIXES else ""
    number = stripped[: len(stripped) - len(suffix)]
    if not number.isdigit():
        raise ValueError(f"expected a size such as 65536, 64k or 16m, got {text!r}")
    return int(number) * _SIZE_SUFFIXES[suffix]


def _parse_int(text: str) -> int:
    return int(text)


@final
@dataclass(frozen=True, slots=True)
class Option(Generic[T]):
    """One query-string option a transport accepts."""

    parse: Callable[[str], T]
    default: T
    help: str

    @classmethod
    def boolean(cls, default: bool, help: str) -> Option[bool]:
        return Option(parse_bool, default, help)

    @classmethod
    def seconds(cls, default: float | None, help: str) -> Option[float | None]:
        return Option(parse_seconds, default, help)

    @classmethod
    def integer(cls, default: int | None, help: str) -> Option[int | None]:
        return Option(_parse_int, default, help)

    @classmethod
    def size(cls, default: int, help: str) -> Option[int]:
        return Option(parse_size, default, help)


@final
@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed endpoint URL.

    ``host``/``port`` are set for host-and-port schemes (``port`` may be 0 for a
    listener, meaning "any free port"); ``path`` holds the socket path of
    ``unix://`` or the name of ``mem://``. ``options`` maps every option the
    transport declares to its parsed value (defaults filled in).
    """

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    url: str = ""

    def option(self, name: str) -> Any:
        """The parsed value of option ``name`` (its default when not in the URL)."""
        return self.options[name]

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets) or the path/name."""
        if self.path:
            return self.path
        return format_host_port(self.host, self.port)


def format_host_port(host: str, port: int) -> str:
    """``127.0.0.1:80``, ``[::1]:80``."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def parse_endpoint(url: str, *, registry: Registry | None = None) -> tuple[Endpoint, Transport]:
    """Parse ``url`` and find its transport; raise ``InvalidEndpoint`` naming the problem."""
    from .registry import default_registry

    reg = registry if registry is not None else default_registry()
    if not isinstance(url, str) or "://" not in url:
        raise InvalidEndpoint(
            f"{url!r} is not an endpoint URL; expected SCHEME://ADDRESS such as "
            f"tcp://127.0.0.1:9000 (known schemes: {', '.join(reg.transport_names())})"
        )
    scheme = url.split("://", 1)[0].lower()
    transport = reg.transport(scheme)  # raises InvalidEndpoint listing known schemes
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", a bracketed non-address
        raise InvalidEndpoint(f"{url!r}: {exc}; write IPv6 addresses like [::1]:9000") from None
    if parts.fragment:
        raise InvalidEndpoint(f"{url!r}: endpoint URLs take no #fragment")
    options = _parse_options(url, parts.query, transport.options)
    if transport.uses_host_port:
        host, port = _host_port(url, parts.netloc, parts.path)
        return Endpoint(scheme, host=host, port=port, options=options, url=url), transport
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise InvalidEndpoint(
            f"{url!r}: missing the {'path' if scheme == 'unix' else 'name'} after {scheme}://"
        )
    return Endpoint(scheme, path=path, options=options, url=url), transport


def _host_port(url: str, netloc: str, path: str) -> tuple[str, int]:
    if path not in {"", "/"}:
        raise InvalidEndpoint(f"{url!r}: unexpected path {path!r} after host:port")
    if "@" in netloc:
        raise InvalidEndpoint(f"{url!r}: user information (user@) is not supported")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidEndpoint(f"{url!r}: unclosed '[' in IPv6 address")
        host, rest = netloc[1:end], netloc[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidEndpoint(f"{url!r}: {host!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise InvalidEndpoint(f"{url!r}: expected ':PORT' after the IPv6 address")
        port_text = rest[1:] if rest else ""
    else:
        host, sep, port_text = netloc.rpartition(":")
        if not sep:
            host, port_text = netloc, ""
        if ":" in host:
            raise InvalidEndpoint(f"{url!r}: write IPv6 addresses in brackets, like [::1]:9000")
    if not host:
        raise InvalidEndpoint(f"{url!r}: missing host (e.g. 127.0.0.1)")
    if not port_text:
        raise InvalidEndpoint(
            f"{url!r}: missing port; write HOST:PORT, e.g. {format_host_port(host, 9000)}"
        )
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidEndpoint(f"{url!r}: invalid port {port_text!r}; use a number from 0 to 65535")
    return host, int(port_text)


def _parse_options(url: str, query: str, declared: Mapping[str, Option[Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {name: opt.default for name, opt in declared.items()}
    if not query:
        return values
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidEndpoint(f"{url!r}: malformed query string {query!r}") from None
    seen: set[str] = set()
    for name, raw in pairs:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidEndpoint(
                f"{url!r}: unknown option {name!r} (this scheme accepts: {known})"
            )
        if name in seen:
            raise InvalidEndpoint(f"{url!r}: option {name!r} given twice")
        seen.add(name)
        try:
            values[name] = declared[name].parse(raw)
        except ValueError as exc:
            raise InvalidEndpoint(f"{url!r}: bad value for option {name!r}: {exc}") from None
    return values
