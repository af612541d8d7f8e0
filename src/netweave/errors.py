"""Every error netweave raises, arranged by who is at fault.

::

    NetweaveError
    ├── UsageError                 we misused the API or gave bad configuration
    │   ├── InvalidEndpoint        a URL that names no usable endpoint
    │   ├── InvalidStackSpec       a ``--stack`` spec that cannot be built
    │   └── MissingDependency      an optional extra is not installed
    ├── ClosedResourceError        our side closed (or is closing) this object
    ├── CircuitOpen                our circuit breaker refuses calls while the peer recovers
    ├── TransportError             the network or the peer broke the connection
    │   ├── ConnectFailed          could not connect: refused, unreachable, unresolvable
    │   ├── ListenFailed           could not listen: address in use, permission denied
    │   └── ConnectionBroken       the peer reset or the link died mid-connection
    │       └── PeerUnresponsive   the peer went silent (heartbeat, idle or handshake timeout)
    ├── SessionExpired             the peer forgot our session (its grace period ran out)
    ├── RemoteError                the peer's handler failed a call (code, remote type, message)
    │   ├── MethodNotFound         the peer has no handler of that name
    │   ├── Overloaded             the peer refused the call: too many in flight, or draining
    │   ├── CallCancelled          the peer cancelled the call
    │   └── RemoteDeadlineExceeded the call's deadline passed on the peer (also a DeadlineExceeded)
    ├── ProtocolError              the peer sent data that a layer cannot accept
    │   ├── FrameTooLarge          a frame header announced more than the maximum
    │   ├── TruncatedInput         the stream ended in the middle of a unit
    │   ├── DecodeError            a unit's content is malformed for its codec
    │   └── TlsError               TLS refused the peer: certificate, tampered record, truncation
    ├── DeadlineExceeded           a deadline passed (also a builtin ``TimeoutError``)
    │   └── PoolExhausted          no pooled connection became free before the deadline
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
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = [
    "CallCancelled",
    "CircuitOpen",
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
    "MethodNotFound",
    "MissingDependency",
    "NegotiationFailed",
    "NetweaveError",
    "Overloaded",
    "PeerUnresponsive",
    "PoolExhausted",
    "ProtocolError",
    "RemoteDeadlineExceeded",
    "RemoteError",
    "SessionExpired",
    "TlsError",
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


class TlsError(ProtocolError):
    """TLS refused the peer or what it sent (``layer`` is ``"tls"``).

    ``reason`` is OpenSSL's reason code, such as ``"CERTIFICATE_VERIFY_FAILED"``,
    ``"DECRYPTION_FAILED_OR_BAD_RECORD_MAC"`` (a tampered record),
    ``"TLSV1_ALERT_UNKNOWN_CA"`` (the peer refused our certificate) or
    ``"UNEXPECTED_EOF"`` (the stream ended without a ``close_notify``: truncated).
    ``verify_message`` explains a failed certificate check.
    """

    def __init__(
        self, message: str, *, reason: str | None = None, verify_message: str | None = None
    ) -> None:
        super().__init__(message, layer="tls")
        self.reason = reason
        self.verify_message = verify_message


class DeadlineExceeded(NetweaveError, TimeoutError):
    """A deadline or timeout passed before the operation finished."""


class PoolExhausted(DeadlineExceeded):
    """Every connection of a pool stayed busy until the caller's deadline passed.

    Raise the pool's ``max_size``, return connections sooner, or allow a longer wait.
    """


class CircuitOpen(NetweaveError):
    """A circuit breaker is open: calls fail fast until ``retry_after`` seconds pass.

    Our side refuses to try, so the peer gets time to recover; nothing was sent.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PeerUnresponsive(ConnectionBroken):
    """The peer stayed silent past a limit: no heartbeat answer, no complete message
    within the idle timeout (a peer trickling bytes counts as silent), or no
    handshake in time. The connection was aborted."""


class SessionExpired(NetweaveError):
    """The peer no longer holds our session: the connection stayed broken past the
    server's grace period, so messages in flight then may be lost. Start a new session."""


class RemoteError(NetweaveError):
    """The peer's handler for a call failed.

    ``code`` is the wire error code (see ``docs/rpc.md``; application codes are
    ``>= 1000``), ``remote_type`` the name of the exception type raised on the
    peer, ``detail`` its message and ``method`` the called method. A handler may
    raise ``RemoteError(message, code=...)`` itself to choose what its caller sees.
    ``retryable`` says whether repeating the call may succeed.
    """

    #: The wire code used when none is given.
    default_code: int = 1
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        remote_type: str = "",
        method: str = "",
    ) -> None:
        where = f" in {method!r}" if method else ""
        kind = f" {remote_type}" if remote_type else ""
        super().__init__(f"remote{kind}{where}: {message}")
        self.code = self.default_code if code is None else code
        self.remote_type = remote_type
        self.method = method
        self.detail = message


class MethodNotFound(RemoteError):
    """The peer has no handler registered under the called method's name."""

    default_code = 2


class Overloaded(RemoteError):
    """The peer refused the call without running it (admission control): too many
    calls in flight on this connection, or the server is draining. Safe to retry later."""

    default_code = 3
    retryable = True


class RemoteDeadlineExceeded(RemoteError, DeadlineExceeded):
    """The call's deadline passed while the peer was running it; the handler was cancelled."""

    default_code = 4


class CallCancelled(RemoteError):
    """The peer cancelled the call (its handler was cancelled, or it is shutting down)."""

    default_code = 5


class NegotiationFailed(NetweaveError):
    """The two sides could not agree on a protocol version or capability.

    ``reason`` names what did not match; ``side`` is ``"local"`` when our own
    configuration ruled the agreement out and ``"remote"`` when the peer refused.
    ``what`` is the capability that did not match (``"protocol"``, ``"codec"``,
    ``"feature"``...; see ``docs/negotiation.md``), or ``""`` when not known.
    """

    def __init__(
        self, reason: str, *, side: Literal["local", "remote"] = "local", what: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.side = side
        self.what = what


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
    if isinstance(code, int) and code > 0 and not isinstance(exc, socket.gaierror):
        reason = os.strerror(code)  # asyncio replaces strerror with "Connect call failed ..."
        if reason.lower() not in detail.lower():
            detail = f"{reason} ({detail})"
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
