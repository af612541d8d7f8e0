"""``quic://``'s configuration, and the netweave error a connection's end becomes.

:func:`client_configuration` and :func:`server_configuration` turn the URL's
certificate options (the ``tls://`` ones) into aioquic's ``QuicConfiguration``,
checking every file before any I/O; :func:`termination_error` words how a
connection ended (a :class:`Termination`) as the netweave error its user sees.
Imported with :mod:`._quic_engine`, on first use of ``quic://``.

Rules of this file: a bad option or file is ``UsageError`` naming it; a TLS
alert that ended a handshake becomes a :class:`~netweave.errors.TlsError`
(the ``__cause__`` of ``ConnectFailed``) with a hint on how to fix it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import AlertDescription, load_pem_x509_certificates

from ..errors import (
    ConnectFailed,
    ConnectionBroken,
    NetweaveError,
    PeerUnresponsive,
    TlsError,
    UsageError,
)

__all__ = ["Termination", "client_configuration", "server_configuration", "termination_error"]

_ALERTS: Final = range(0x100, 0x200)
_CERTIFICATE_ALERTS: Final = {
    AlertDescription.bad_certificate,
    AlertDescription.unsupported_certificate,
    AlertDescription.certificate_revoked,
    AlertDescription.certificate_expired,
    AlertDescription.certificate_unknown,
    AlertDescription.unknown_ca,
}


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def _base_configuration(
    *, is_client: bool, options: Mapping[str, Any], window: int, idle_timeout: float
) -> QuicConfiguration:
    frame_size = options.get("max_datagram_frame_size", 65536)
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=list(options["alpn"]),
        idle_timeout=idle_timeout,
        max_datagram_frame_size=frame_size or None,
        congestion_control_algorithm=options.get("congestion_control", "reno"),
        max_stream_data=window,
        max_data=max(4 * window, 1024 * 1024),
    )


def client_configuration(
    *, options: Mapping[str, Any], server_name: str, window: int, idle_timeout: float
) -> QuicConfiguration:
    """The client's configuration; ``UsageError`` for a bad option (before any I/O).

    ``options`` holds the URL's ``ca``, ``cert``, ``key``, ``verify``, ``alpn``,
    ``max_datagram_frame_size`` and ``congestion_control``.
    """
    if options.get("cert") is not None or options.get("key") is not None:
        raise UsageError(
            "quic:// clients present no certificate (aioquic servers do not ask for one); "
            "drop cert= and key= from the URL"
        )
    config = _base_configuration(
        is_client=True, options=options, window=window, idle_timeout=idle_timeout
    )
    config.server_name = server_name
    config.verify_mode = ssl.CERT_REQUIRED if options.get("verify", True) else ssl.CERT_NONE
    ca = options.get("ca")
    if ca is not None:
        data = _read("CA file", ca)
        try:
            found = load_pem_x509_certificates(data)
        except ValueError as exc:
            raise UsageError(f"CA file {ca!r} is not PEM certificates: {exc}") from None
        if not found:
            raise UsageError(f"CA file {ca!r} holds no PEM certificate")
        config.cadata = data
    return config


def server_configuration(
    *, options: Mapping[str, Any], window: int, idle_timeout: float
) -> QuicConfiguration:
    """The server's configuration; ``UsageError`` without a loadable certificate and key."""
    cert, key = options.get("cert"), options.get("key")
    if cert is None:
        raise UsageError("a quic:// listener needs its certificate: add ?cert=server.pem&key=...")
    if options.get("ca") is not None:
        raise UsageError(
            "quic:// listeners cannot require client certificates (aioquic has no mutual "
            "TLS); drop ca= from the listening URL"
        )
    config = _base_configuration(
        is_client=False, options=options, window=window, idle_timeout=idle_timeout
    )
    _read("certificate", cert)
    if key is not None:
        _read("key file", key)
    try:
        config.load_cert_chain(cert, key)
    except (ValueError, TypeError, IndexError) as exc:
        raise UsageError(f"cannot load the certificate {cert!r} / key {key!r}: {exc}") from None
    if config.private_key is None:
        raise UsageError(f"{cert!r} holds no private key: add key=server.key to the URL")
    return config


def _read(what: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from None


@final
@dataclass(frozen=True, slots=True)
class Termination:
    """How a connection ended: ``code`` and ``reason`` as in CONNECTION_CLOSE;
    ``by_peer`` when the peer closed it; ``idle`` for the idle timeout;
    ``application`` when the code is an application's (not a transport error)."""

    code: int
    reason: str
    by_peer: bool
    idle: bool = False
    application: bool = False


def termination_error(
    end: Termination, *, target: str, during_connect: bool, idle_timeout: float
) -> NetweaveError:
    """The netweave error for a connection that ended as ``end``, not by our own close.

    While connecting: ``ConnectFailed`` (its cause a :class:`TlsError` when the
    handshake failed). Afterwards: ``PeerUnresponsive`` for the idle timeout,
    ``ConnectionBroken`` for everything else.
    """
    cause: NetweaveError | None = None
    if end.idle:
        message = (
            f"{target}: the peer went silent (no packet within the QUIC idle timeout: "
            f"idle_timeout={idle_timeout:g} s here, or the peer's if shorter)"
        )
        if not during_connect:
            return PeerUnresponsive(message)
        message = f"connecting to {target} timed out: the peer never answered"
    elif not end.application and end.code in _ALERTS:
        cause = _tls_error(end)
        message = f"QUIC handshake with {target} failed: {cause.detail}"
    elif end.by_peer:
        what = "closed" if end.code == QuicErrorCode.NO_ERROR else "aborted"
        kind = "application" if end.application else "transport"
        detail = f": {end.reason}" if end.reason else ""
        message = f"the peer {what} the QUIC connection {target} ({kind} code {end.code}){detail}"
    else:
        message = f"QUIC connection {target} failed: {end.reason or f'error code {end.code}'}"
    error: NetweaveError = ConnectFailed(message) if during_connect else ConnectionBroken(message)
    error.__cause__ = cause
    return error


def _tls_error(end: Termination) -> TlsError:
    alert = end.code - 0x100
    try:
        name = AlertDescription(alert).name
    except ValueError:
        name = f"alert {alert}"
    detail = f": {end.reason}" if end.reason else ""
    if alert in _CERTIFICATE_ALERTS and not end.by_peer:
        return TlsError(
            f"certificate verification failed{detail} (trust the issuing CA with ca=..., "
            f"check server_hostname, or opt out with verify=0 only for testing)",
            reason="CERTIFICATE_VERIFY_FAILED",
            verify_message=end.reason or None,
        )
    if alert in _CERTIFICATE_ALERTS:
        return TlsError(f"the peer rejected our certificate ({name}){detail}", reason=name.upper())
    if alert == AlertDescription.no_application_protocol:
        return TlsError(
            f"no ALPN protocol that both sides speak{detail} (set alpn= alike on both ends)",
            reason="NO_APPLICATION_PROTOCOL",
        )
    side = "the peer" if end.by_peer else "we"
    return TlsError(f"TLS alert {name} ({side} refused the handshake){detail}", reason=name.upper())
