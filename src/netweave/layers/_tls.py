"""TLS as a sans-IO stream layer, on :class:`ssl.SSLObject` and two :class:`ssl.MemoryBIO`.

:class:`Tls` turns ciphertext (the lower byte stream) into plaintext (the upper
byte stream) and back, so TLS runs over any stream: TCP, Unix sockets, memory
pipes, simulated links. It does no I/O: records the layer produces on its own
(the handshake, alerts, ``close_notify``, TLS 1.3 session tickets) are handed
out by :meth:`Tls.data_to_send`; :class:`~netweave.transports.TlsConnection`
is the adapter that moves them.

Rules of this file:

* The handshake starts on the first :meth:`Tls.data_to_send` (a client's
  ``ClientHello``) or :meth:`Tls.decode` call, and advances on every
  ``decode`` until :attr:`Tls.handshake_complete`.
* ``encode`` before the handshake completes queues the plaintext (at most
  ``max_pending`` bytes) and encrypts it as soon as the handshake is done;
  the records then come out of ``data_to_send``.
* Every ``ssl.SSLError`` becomes a :class:`~netweave.errors.TlsError` here,
  once, carrying OpenSSL's reason code: a failed certificate check, a tampered
  record (``DECRYPTION_FAILED_OR_BAD_RECORD_MAC``), an alert from the peer.
  After a ``TlsError`` the layer is unusable; any alert OpenSSL queued for the
  peer is still handed out by ``data_to_send``.
* A stream that ends without the peer's ``close_notify`` is truncated:
  :meth:`Tls.end_of_input` raises ``TlsError`` with reason ``UNEXPECTED_EOF``.
  After ``close_notify`` (:attr:`Tls.peer_closed`) the upper stream has ended.
* Certificate verification is on by default in :func:`tls_client_context`;
  turning it off is explicit (``verify=False``).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Self, final

from ..errors import ClosedResourceError, TlsError, UsageError
from .base import Layer, UnitKind

__all__ = ["DEFAULT_MAX_PENDING", "Tls", "tls_client_context", "tls_server_context", "tls_error"]

#: The most plaintext ``encode`` queues while the handshake is still running.
DEFAULT_MAX_PENDING: Final = 256 * 1024
#: How much plaintext one ``SSLObject.read`` asks for (several records at most).
_READ_SIZE: Final = 256 * 1024
#: Attribute the server context's SNI callback sets on the ``SSLObject``.
_SNI_ATTRIBUTE: Final = "netweave_requested_server_name"

_HINTS: Final = {
    "CERTIFICATE_VERIFY_FAILED": "the peer's certificate could not be verified",
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": (
        "a TLS record failed its integrity check: the data was tampered with or "
        "corrupted in transit"
    ),
    "BAD_RECORD_MAC": (
        "a TLS record failed its integrity check: the data was tampered with or "
        "corrupted in transit"
    ),
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS (or speaks an unsupported version)",
    "HTTP_REQUEST": "the peer does not speak TLS: it sent a plain HTTP request",
    "UNSUPPORTED_PROTOCOL": "no TLS version that both sides allow",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust the CA that issued our certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer rejected our certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "the peer requires a client certificate (pass cert= and key=)"
    ),
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer sent no client certificate, but one is required",
    "NO_SHARED_CIPHER": "no cipher suite that both sides allow",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer aborted the handshake",
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "no ALPN protocol that both sides speak",
    "NO_APPLICATION_PROTOCOL": "no ALPN protocol that both sides speak",
}


def tls_error(exc: ssl.SSLError, *, during: str) -> TlsError:
    """The :class:`TlsError` that stands for ``exc`` raised ``during`` (``"handshake"``...).

    The one place where ``ssl.SSLError`` becomes a netweave error.
    """
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        verify = str(exc.verify_message or exc)
        return TlsError(
            f"certificate verification failed during the {during}: {verify} "
            f"(trust the issuing CA with ca=..., check server_hostname, or opt out with "
            f"verify=0 only for testing)",
            reason=reason or "CERTIFICATE_VERIFY_FAILED",
            verify_message=verify,
        )
    hint = _HINTS.get(reason or "", "")
    text = f"{hint} ({reason})" if hint else f"TLS failed: {reason or exc}"
    return TlsError(f"{text} during the {during}", reason=reason)


@final
class Tls(Layer[bytes, bytes]):
    """TLS over a byte stream (lower: ciphertext; upper: plaintext).

    ``context`` is a client or server :class:`ssl.SSLContext` (see
    :func:`tls_client_context` / :func:`tls_server_context`); ``server_hostname`` is
    the name a client checks the certificate against and sends as SNI (required
    when the context checks host names).

    Raises ``UsageError`` for a bad configuration; ``decode`` raises only
    :class:`~netweave.errors.TlsError`.
    """

    lower_kind: ClassVar[UnitKind] = "stream"
    upper_kind: ClassVar[UnitKind] = "stream"

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise UsageError(f"the TLS layer needs an ssl.SSLContext, not {context!r}")
        if server_side and server_hostname is not None:
            raise UsageError("server_hostname is for the client side of TLS only")
        if not server_side and context.check_hostname and not server_hostname:
            raise UsageError(
                "this TLS client context checks host names, so give server_hostname "
                "(the name on the server's certificate)"
            )
        self.name = "tls"
        self.context = context
        self.server_side = server_side
        self.max_pending = max_pending
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        try:
            self._ssl = context.wrap_bio(
                self._incoming,
                self._outgoing,
                server_side=server_side,
                server_hostname=server_hostname,
            )
        except (ValueError, ssl.SSLError) as exc:
            raise UsageError(f"cannot start TLS: {exc}") from None
        self._started = False
        self._complete = False
        self._peer_closed = False
        self._closed = False
        self._failure: TlsError | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0

    def clone(self) -> Self:
        return type(self)(
            self.context,
            server_side=self.server_side,
            server_hostname=self._ssl.server_hostname,
            max_pending=self.max_pending,
        )

    # -- the layer contract -------------------------------------------------

    def encode(self, unit: bytes) -> bytes:
        """Encrypt ``unit``; return the records to send (with any queued handshake
        records before them). Before the handshake completes the plaintext is
        queued instead. ``ClosedResourceError`` after :meth:`send_close_notify`."""
        if self._closed:
            raise ClosedResourceError("TLS: cannot send after our close_notify")
        if self._failure is not None:
            raise self._failure
        if not self._complete:
            if self._pending_size + len(unit) > self.max_pending:
                raise UsageError(
                    f"TLS: {self._pending_size + len(unit)} bytes queued before the handshake "
                    f"finished, over max_pending={self.max_pending}; wait for the handshake"
                )
            if unit:
                self._pending.append(bytes(unit))
                self._pending_size += len(unit)
            self._advance()
            return self._outgoing.read()
        if unit:
            self._write(unit)
        return self._outgoing.read()

    def decode(self, data: bytes) -> list[bytes]:
        """Feed ciphertext; return the plaintext now available (one chunk, or none)."""
        if self._failure is not None:
            raise self._failure
        if data:
            self._incoming.write(data)
        if not self._complete:
            self._advance()
            if not self._complete:
                return []
        return self._read()

    def end_of_input(self) -> list[bytes]:
        """The lower stream ended: fine after the peer's ``close_notify``, else ``TlsError``
        (``UNEXPECTED_EOF``): the handshake or the data was cut short."""
        if self._peer_closed:
            return []
        if self._failure is not None:
            raise self._failure
        if not self._complete:
            message = "the stream ended during the TLS handshake"
        else:
            message = (
                "the stream ended without a TLS close_notify, so the data may have been "
                "truncated (by the network, an attacker, or a crashed peer)"
            )
        self._failure = TlsError(message, reason="UNEXPECTED_EOF")
        raise self._failure

    def data_to_send(self) -> list[bytes]:
        """Records the layer produced on its own: handshake, alerts, ``close_notify``,
        and plaintext queued during the handshake. A client's first call starts
        the handshake (its ``ClientHello``)."""
        if not self._started and self._failure is None:
            # A failure is kept in self._failure and raised by the next decode/encode.
            with contextlib.suppress(TlsError):
                self._advance()
        if self._outgoing.pending:
            return [self._outgoing.read()]
        return []

    @property
    def buffered(self) -> int:
        """Ciphertext of incomplete records plus plaintext queued during the handshake."""
        return self._incoming.pending + self._pending_size

    # -- closing --------------------------------------------------------------

    def send_close_notify(self) -> None:
        """Queue our ``close_notify`` (hand it out with :meth:`data_to_send`): we send
        nothing more, but keep receiving until the peer's. Idempotent; does nothing
        if the handshake never completed or TLS already failed."""
        if self._closed:
            return
        self._closed = True
        if not self._complete or self._failure is not None:
            return
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # the peer's close_notify has not arrived yet; that is fine
        except ssl.SSLError as exc:
            self._failure = tls_error(exc, during="close")

    # -- state and peer information --------------------------------------------

    @property
    def handshake_complete(self) -> bool:
        """True once the handshake finished (certificates checked, keys agreed)."""
        return self._complete

    @property
    def peer_closed(self) -> bool:
        """True once the peer's ``close_notify`` arrived: the upper stream has ended."""
        return self._peer_closed

    @property
    def closed(self) -> bool:
        """True once :meth:`send_close_notify` was called."""
        return self._closed

    @property
    def failure(self) -> TlsError | None:
        """The error that made this layer unusable, if any."""
        return self._failure

    @property
    def wants_to_send(self) -> bool:
        """True when :meth:`data_to_send` has records waiting."""
        return self._outgoing.pending > 0

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The underlying :class:`ssl.SSLObject` (for information; do not drive it)."""
        return self._ssl

    @property
    def server_hostname(self) -> str | None:
        """Client: the name checked and sent as SNI. Server: the SNI name the client
        asked for, when the context came from :func:`tls_server_context`."""
        if self.server_side:
            name = getattr(self._ssl, _SNI_ATTRIBUTE, None)
            return name if isinstance(name, str) else None
        return self._ssl.server_hostname

    @property
    def peercert(self) -> dict[str, Any] | None:
        """The peer's verified certificate as :meth:`ssl.SSLSocket.getpeercert` gives it,
        or ``None`` (no certificate, not verified, or handshake not complete)."""
        if not self._complete:
            return None
        cert = self._ssl.getpeercert()
        return cert or None

    @property
    def peercert_der(self) -> bytes | None:
        """The peer's certificate in DER form (even when not verified), or ``None``."""
        if not self._complete:
            return None
        return self._ssl.getpeercert(binary_form=True)

    @property
    def alpn_protocol(self) -> str | None:
        """The ALPN protocol both sides agreed on, or ``None``."""
        return self._ssl.selected_alpn_protocol() if self._complete else None

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol version, secret bits)`` of the agreed cipher suite."""
        return self._ssl.cipher() if self._complete else None

    @property
    def version(self) -> str | None:
        """The TLS version in use (``"TLSv1.3"``), or ``None`` before the handshake."""
        return self._ssl.version() if self._complete else None

    # -- internals --------------------------------------------------------------

    def _advance(self) -> None:
        self._started = True
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            self._failure = tls_error(exc, during="handshake")
            raise self._failure from exc
        self._complete = True
        pending, self._pending, self._pending_size = self._pending, [], 0
        for unit in pending:
            self._write(unit)

    def _write(self, unit: bytes) -> None:
        try:
            self._ssl.write(unit)
        except ssl.SSLError as exc:
            self._failure = tls_error(exc, during="write")
            raise self._failure from exc

    def _read(self) -> list[bytes]:
        chunks: list[bytes] = []
        read = self._ssl.read
        try:
            while True:
                chunk = read(_READ_SIZE)
                if not chunk:
                    self._peer_closed = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._peer_closed = True
        except ssl.SSLError as exc:
            self._failure = tls_error(exc, during="read")
            raise self._failure from exc
        if not chunks:
            return []
        return [chunks[0] if len(chunks) == 1 else b"".join(chunks)]

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        state = "open" if self._complete else "handshaking"
        return f"<Tls {side} {state}>"


# ---------------------------------------------------------------------------
# Contexts
# ---------------------------------------------------------------------------


def _record_sni(sslobj: Any, name: str | None, context: ssl.SSLContext) -> None:
    setattr(sslobj, _SNI_ATTRIBUTE, name)


def _load(what: str, path: str, action: Any) -> None:
    try:
        action()
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS {what} {path!r}: {exc}") from None


def tls_client_context(
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    verify: bool = True,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A client :class:`ssl.SSLContext`: verification on (the system's CAs, or the
    PEM file ``ca``), host names checked; ``cert``/``key`` (PEM files) for mutual
    TLS; ``alpn`` protocols offered in preference order.

    ``verify=False`` turns verification off entirely (for tests against
    self-signed peers only). ``UsageError`` names a file that cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        _load("CA file", ca, lambda: context.load_verify_locations(cafile=ca))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        _load("certificate", cert, lambda: context.load_cert_chain(cert, key))
    elif key is not None:
        raise UsageError("a TLS key was given without its certificate (cert=...)")
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def tls_server_context(
    *,
    cert: str,
    key: str | None = None,
    ca: str | None = None,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A server :class:`ssl.SSLContext` presenting ``cert`` (PEM, with ``key`` unless the
    file holds both). With ``ca``, clients must present a certificate issued by it
    (mutual TLS). ``alpn`` lists the protocols served, in preference order. The
    SNI name each client asks for becomes :attr:`Tls.server_hostname` on the server.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load("certificate", cert, lambda: context.load_cert_chain(cert, key))
    if ca is not None:
        _load("CA file", ca, lambda: context.load_verify_locations(cafile=ca))
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(list(alpn))
    context.sni_callback = _record_sni
    return context
