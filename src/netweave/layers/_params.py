"""Spec parameters of the built-in layer factories (``lp4:max=64k``, ``delim:sep=0d0a``).

Rules of this file: every factory validates its own ``key=value`` strings
through these helpers, so every mistake raises ``InvalidStackSpec`` naming the
layer, the bad parameter and the parameters that layer accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from ..endpoints import parse_size
from ..errors import InvalidStackSpec, UsageError

__all__ = ["DEFAULT_MAX_FRAME", "check_params", "hex_bytes_param", "positive_int", "size_param"]

#: The maximum frame size that spec names use when ``max`` is not given: 1 MiB.
DEFAULT_MAX_FRAME: Final = 1024 * 1024

_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")


def check_params(name: str, params: Mapping[str, str], accepted: tuple[str, ...]) -> None:
    """Raise ``InvalidStackSpec`` if ``params`` holds a key outside ``accepted``."""
    for key in params:
        if key not in accepted:
            allowed = ", ".join(accepted) if accepted else "no parameters"
            raise InvalidStackSpec(
                f"layer {name!r} has no parameter {key!r} (it accepts: {allowed})"
            )


def size_param(name: str, params: Mapping[str, str], key: str = "max") -> int:
    """The positive byte count in ``params[key]`` (``65536``, ``64k``, ``16m``), or
    :data:`DEFAULT_MAX_FRAME` when absent."""
    text = params.get(key)
    if text is None:
        return DEFAULT_MAX_FRAME
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise InvalidStackSpec(f"layer {name!r}: bad {key}: {exc}") from None
    if value <= 0:
        raise InvalidStackSpec(f"layer {name!r}: {key} must be positive, not {text!r}")
    return value


def hex_bytes_param(name: str, params: Mapping[str, str], key: str) -> bytes | None:
    """The bytes spelled in hex by ``params[key]`` (``0a``, ``0d0a``), or ``None`` if absent."""
    text = params.get(key)
    if text is None:
        return None
    if not _HEX.fullmatch(text):
        raise InvalidStackSpec(
            f"layer {name!r}: {key} must be one or more bytes in hex, two digits each "
            f"(e.g. {key}=0a for a newline, {key}=0d0a for CRLF, {key}=00 for NUL), "
            f"not {text!r}"
        )
    return bytes.fromhex(text)


def positive_int(what: str, value: object) -> int:
    """``value`` if it is an ``int`` above zero, else ``UsageError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{what} must be a positive integer, not {value!r}")
    return value
