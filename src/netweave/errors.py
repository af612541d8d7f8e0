"""Every error netweave raises, arranged by who is at fault.

::

    NetweaveError
    ├── UsageError                 we misused the API or gave bad configuration
    │   ├── InvalidEndpoint        a URL that names no usable endpoint
    │   ├── InvalidStackSpec       a ``--stack`` spec that cannot be built
    │   └── MissingDependency      an optional extra is not installed
    ├── ClosedResourceError        our side closed (or is closing) this object
    ├── TransportError             the network or the peer broke the connection
    │   ├── ConnectFailed          could not connect: refused, unreachable, unresolvable
    │   ├── ListenFailed           could not listen: address in use, permission denied
    │   └── ConnectionBroken       the peer reset or the link died mid-connection
    ├── ProtocolError              the peer sent data that a layer cannot accept
    │   ├── FrameTooLarge          a frame header announced more than the maximum
    │   ├── TruncatedInput         the stream ended in the middle of a unit
    │   └── DecodeError            a unit's content is malformed for its codec
    ├── DeadlineExceeded           a deadline passed (also a builtin ``TimeoutError``)
    ├── NegotiationFailed          the two sides found no common agreement
    └── EndOfStream                the peer ended the stream cleanly (not a failure)

Rules of this file:

* Foreign exceptions (``OSError``, ``ssl.SSLError``, codec libraries' errors) are
  translated exactly once, at the boundary where they are raised, with
  :func:`translate_os_error` / :func:`map_os_errors`, keeping the original as
  ``__cause__``.
* A ``ProtocolError`` names the ``layer`` that rejected the input, and may carry a
  wire ``code``.
* Messages say what went wrong and, where there is one, how to fix it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = [
    "ClosedResourceError",
    "ConnectFailed",
    "ConnectionBroken",
    "DeadlineExceeded",
    "DecodeError",
    "EndOfStream",
    "FrameTooLarge",
    "InvalidEndpoint",
    "InvalidStackSpec",
    "ListenFailed",
    "MissingDependency",
    "NegotiationFailed",
    "NetweaveError",
    "ProtocolError",
    "TransportError",
    "TruncatedInput",
    "UsageError",
    "map_os_errors",
    "translate_os_error",
]


class NetweaveError(Exception):
    """Base class of every error netweave raises on purpose."""


# ---------------------------------------------------------------------------
# Our side's fault
# ---------------------------------------------------------------------------


class UsageError(NetweaveError, ValueError):
    """The caller misused the API or passed bad configuration."""


class InvalidEndpoint(UsageError):
    """A URL that does not name a usable endpoint (scheme, host, port, option)."""


class InvalidStackSpec(UsageError):
    """A stack spec such as ``lp4,json`` that cannot be built."""


class MissingDependency(UsageError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, feature: str, module: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the {module!r} package; "
            f"install it with: pip install 'netweave[{extra}]'"
        )
        self.feature = feature
        self.module = module
        self.extra = extra


class ClosedResourceError(NetweaveError):
    """This object was closed (or is closing) by our own side and cannot be used."""


# ---------------------------------------------------------------------------
# The network's or the peer's fault
# ---------------------------------------------------------------------------


class TransportError(NetweaveError, ConnectionError):
    """The network or the peer failed us. ``errno`` is set when the OS gave one."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ConnectFailed(TransportError):
    """Could not establish a connection (refused, unreachable, unresolvable, timed out)."""


class ListenFailed(TransportError):
    """Could not bind or listen (address in use, permission denied, bad path)."""


class ConnectionBroken(TransportError):
    """An established connection was reset or died; data in flight may be lost."""


class ProtocolError(NetweaveError):
    """The peer sent input that ``layer`` cannot accept.

    ``layer`` is the registered name of the rejecting layer (``"lp4"``, ``"json"``);
    ``code`` is a wire error code where the protocol defines one.
    """

    def __init__(self, message: str, *, layer: str, code: int | None = None) -> None:
        super().__init__(f"{layer}: {message}")
        self.layer = layer
        self.code = code
        self.detail = message


class FrameTooLarge(ProtocolError):
    """A frame header announced ``size`` bytes, over the configured ``limit``."""

    def __init__(self, *, layer: str, size: int, limit: int) -> None:
        super().__init__(
            f"frame of {size} bytes exceeds the maximum of {limit} bytes "
            f"(raise the layer's max frame size if the peer is trusted)",
            layer=layer,
        )
        self.size = size
        self.limit = limit


class TruncatedInput(ProtocolError):
    """The input ended in the middle of a unit (``pending`` bytes were left over)."""

    def __init__(self, *, layer: str, pending: int) -> None:
        super().__init__(
            f"input ended inside a unit ({pending} bytes of an incomplete unit)", layer=layer
        )
        self.pending = pending


class DecodeError(ProtocolError):
    """A complete unit whose content is malformed for this codec."""


class DeadlineExceeded(NetweaveError, TimeoutError):
    """A deadline or timeout passed before the operation finished."""


class NegotiationFailed(NetweaveError):
    """The two sides could not agree on a protocol version or capability.

    ``reason`` names what did not match; ``side`` is ``"local"`` when our own
    configuration ruled the agreement out and ``"remote"`` when the peer refused.
    """

    def __init__(self, reason: str, *, side: Literal["local", "remote"] = "local") -> None:
        super().__init__(reason)
        self.reason = reason
        self.side = side


class EndOfStream(NetweaveError):
    """The peer finished sending cleanly; there is nothing more to receive."""


# ---------------------------------------------------------------------------
# The one place where OSError becomes a netweave error
# ---------------------------------------------------------------------------


def translate_os_error(
    exc: BaseException, *, during: Literal["connect", "listen", "io"], target: str
) -> NetweaveError:
    """Return the netweave error that stands for ``exc`` raised while ``during`` on ``target``.

    Non-OS exceptions that are already netweave errors are returned unchanged.
    """
    if isinstance(exc, NetweaveError):
        return exc
    code = getattr(exc, "errno", None)
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) and during == "connect":
        return ConnectFailed(f"connecting to {target} timed out", errno=errno.ETIMEDOUT)
    if during == "connect":
        return ConnectFailed(f"cannot connect to {target}: {detail}", errno=code)
    if during == "listen":
        hint = ""
        if code == errno.EADDRINUSE:
            hint = " (another process is listening there; pick another port or stop it)"
        return ListenFailed(f"cannot listen on {target}: {detail}{hint}", errno=code)
    return ConnectionBroken(f"connection {target} broken: {detail}", errno=code)


@contextmanager
def map_os_errors(*, during: Literal["connect", "listen", "io"], target: str) -> Iterator[None]:
    """Translate ``OSError`` (and ``socket.gaierror``) raised in the block, once."""
    try:
        yield
    except NetweaveError:
        raise
    except OSError as exc:
        raise translate_os_error(exc, during=during, target=target) from exc
