"""The URL options of ``quic://`` and the settings parsed from them.

The certificate options are the ``tls://`` ones (``ca``, ``verify``,
``server_hostname``, ``alpn``, ``cert``/``key`` to listen), parsed by the same
functions; the rest are QUIC's own. This module does not import aioquic, so
``quic://`` URLs parse (and show in ``netweave list``) without the extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from ..endpoints import Endpoint, Option, parse_seconds, parse_size
from ._listener import parse_count
from ._tls_transport import TLS_OPTIONS, parse_alpn
from .base import DEFAULT_WRITE_HIGH_WATER

__all__ = [
    "ABORT_CODE",
    "CLOSE_CODE",
    "CONGESTION_CONTROLS",
    "DEFAULT_ALPN",
    "DEFAULT_STREAM_WINDOW",
    "QUIC_OPTIONS",
    "QuicSettings",
    "tls_options",
]

#: Application error code of the RESET_STREAM and STOP_SENDING that ``abort`` sends.
ABORT_CODE: Final = 1
#: Application error code of the STOP_SENDING that ``close`` sends (we stopped reading).
CLOSE_CODE: Final = 0
#: The ALPN protocol offered and served when the URL names none (QUIC requires one).
DEFAULT_ALPN: Final = ("netweave",)
#: Bytes of one stream the peer may send before we read them (the stream's receive window).
DEFAULT_STREAM_WINDOW: Final = 1024 * 1024
#: The congestion controllers aioquic ships.
CONGESTION_CONTROLS: Final = ("reno", "cubic")
#: Seconds ``close`` waits for the peer to acknowledge what was sent before it gives up.
CLOSE_TIMEOUT: Final = 10.0


def _parse_positive_seconds(text: str) -> float:
    value = parse_seconds(text)
    if value <= 0:
        raise ValueError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _parse_congestion(text: str) -> str:
    name = text.strip().lower()
    if name not in CONGESTION_CONTROLS:
        raise ValueError(f"expected one of {', '.join(CONGESTION_CONTROLS)}, got {text!r}")
    return name


def _parse_frame_size(text: str) -> int:
    value = parse_size(text)
    if value > 2**62 - 1:
        raise ValueError(f"a QUIC varint holds at most 2**62-1, got {text!r}")
    return value


def _parse_window(text: str) -> int:
    value = parse_size(text)
    if value < 4096:
        raise ValueError(f"a stream window below 4096 bytes stalls every stream, got {text!r}")
    return value


QUIC_OPTIONS: Final[dict[str, Option[Any]]] = {
    "ca": TLS_OPTIONS["ca"],
    "cert": TLS_OPTIONS["cert"],
    "key": TLS_OPTIONS["key"],
    "verify": TLS_OPTIONS["verify"],
    "server_hostname": TLS_OPTIONS["server_hostname"],
    "alpn": Option(parse_alpn, DEFAULT_ALPN, "ALPN protocols, comma-separated (netweave)"),
    "connect_timeout": Option.seconds(10.0, "seconds the connection and its handshake may take"),
    "idle_timeout": Option(
        _parse_positive_seconds, 30.0, "seconds without a packet before the connection is dropped"
    ),
    "max_datagram_frame_size": Option(
        _parse_frame_size, 65536, "largest QUIC DATAGRAM frame accepted; 0 turns datagrams off"
    ),
    "congestion_control": Option(_parse_congestion, "reno", "reno or cubic"),
    "write_high_water": Option.size(
        DEFAULT_WRITE_HIGH_WATER, "send() waits above this many unsent bytes, per stream"
    ),
    "read_high_water": Option(
        _parse_window, DEFAULT_STREAM_WINDOW, "unread bytes the peer may send, per stream"
    ),
    "backlog": Option(parse_count, 128, "incoming streams queued for accept() before refusing"),
    "max_connections": Option(parse_count, 1024, "connections a listener serves at once"),
    "datagram_queue": Option(parse_count, 1024, "received QUIC datagrams held before dropping"),
}


@final
@dataclass(frozen=True, slots=True)
class QuicSettings:
    """The non-certificate options of one ``quic://`` endpoint."""

    connect_timeout: float | None = 10.0
    idle_timeout: float = 30.0
    write_high_water: int = DEFAULT_WRITE_HIGH_WATER
    stream_window: int = DEFAULT_STREAM_WINDOW
    backlog: int = 128
    max_connections: int = 1024
    datagram_queue: int = 1024
    close_timeout: float = CLOSE_TIMEOUT

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> QuicSettings:
        option = endpoint.option
        return cls(
            connect_timeout=option("connect_timeout"),
            idle_timeout=option("idle_timeout"),
            write_high_water=option("write_high_water"),
            stream_window=option("read_high_water"),
            backlog=option("backlog"),
            max_connections=option("max_connections"),
            datagram_queue=option("datagram_queue"),
        )


def tls_options(endpoint: Endpoint) -> Mapping[str, Any]:
    """The certificate options of ``endpoint`` (for the engine's configuration)."""
    return {name: endpoint.option(name) for name in ("ca", "cert", "key", "verify", "alpn")}
