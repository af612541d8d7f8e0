"""The aioquic boundary of ``quic://``: the sans-IO engine and packet headers.

:class:`QuicEngine` wraps aioquic's sans-IO ``QuicConnection`` (bytes and
``now`` in, datagrams, events and a timer deadline out) behind the few calls
the runtime adapter (:mod:`._quic_connection`) makes, and hands aioquic's
events to an :class:`EngineSink`. This is the only module that imports
aioquic; :func:`netweave.transports._quic.load_engine` imports it on first
use and names the ``quic`` extra when aioquic is missing.

Rules of this file:

* aioquic's exceptions and events become netweave's here, once: a failing
  aioquic call ends the connection with a :class:`Termination` instead of
  raising into the event loop, and :func:`termination_error` words it.
* Receive credit follows what the application *read*, not what arrived, so a
  reader that stops reading stops its peer (bounded memory, and backpressure
  all the way to the sender). aioquic raises a stream's credit on its own
  (doubling it once half has arrived); :class:`_Connection` overrides that one
  decision. Everything below that reaches past aioquic's public API is listed
  here, each for one behaviour (written against aioquic 1.7):

  - ``_write_stream_limits`` (override): the MAX_STREAM_DATA we grant is
    ``consumed + window``; aioquic's own doubling is neutralised by showing it
    ``receiver.highest_offset = 0`` for the duration of the call;
  - ``_close_begin`` (override): learn at once that the connection is closing
    (aioquic reports ``ConnectionTerminated`` only after the closing period);
  - ``_streams``: the per-stream state (send progress, whether acknowledged);
  - ``_local_max_streams_bidi.used`` / ``_uni``: how many streams the peer has
    opened, so a stream the peer announced without data can be accepted;
  - ``_remote_max_datagram_frame_size``, ``_datagrams_pending``: the peer's
    datagram limit and our queue of unsent datagrams.
* A stream we open is announced to the peer at once by re-sending its
  MAX_STREAM_DATA (``max_stream_data_local_sent = 0``, as aioquic does itself
  when that frame is lost), so the peer can accept it before any data flows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final, Protocol, final

from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported, no __all__
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import QuicConnection as _AioQuicConnection
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicPacketType,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream as AioQuicStream

from ..errors import ConnectionBroken, UsageError
from ._quic_config import (
    Termination,
    client_configuration,
    server_configuration,
    termination_error,
)
from ._quic_options import ABORT_CODE

__all__ = [
    "MIN_DATAGRAM",
    "AioQuicStream",
    "EngineSink",
    "Header",
    "QuicEngine",
    "Termination",
    "client_configuration",
    "parse_header",
    "server_configuration",
    "termination_error",
    "version_negotiation",
]

#: Smallest UDP payload every QUIC path carries (and the least a client's Initial fills).
MIN_DATAGRAM: Final = SMALLEST_MAX_DATAGRAM_SIZE
#: Largest peer connection ID (RFC 9000) and aioquic's packet number size, for the
#: room a DATAGRAM frame has in one packet: short header 1 + CID + 2, AEAD tag 16.
_MAX_CID: Final = 20
_PACKET_OVERHEAD: Final = 1 + _MAX_CID + 2 + 16


# ---------------------------------------------------------------------------
# Packet headers (for a listener's demultiplexing)
# ---------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Header:
    """What a listener needs from a datagram's first QUIC header."""

    destination_cid: bytes
    source_cid: bytes
    version: int | None
    initial: bool
    negotiation: bool


def parse_header(data: bytes, cid_length: int) -> Header | None:
    """The datagram's first header, or ``None`` if it is not QUIC."""
    try:
        header = pull_quic_header(Buffer(data=data), host_cid_length=cid_length)
    except ValueError:
        return None
    return Header(
        header.destination_cid,
        header.source_cid,
        header.version,
        header.packet_type == QuicPacketType.INITIAL,
        header.packet_type == QuicPacketType.VERSION_NEGOTIATION,
    )


def version_negotiation(header: Header, config: QuicConfiguration) -> bytes | None:
    """The Version Negotiation reply to ``header``, or ``None`` when none is due."""
    if header.negotiation or header.version is None:
        return None
    if header.version in config.supported_versions:
        return None
    return encode_quic_version_negotiation(
        source_cid=header.destination_cid,
        destination_cid=header.source_cid,
        supported_versions=config.supported_versions,
    )


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------


class EngineSink(Protocol):
    """Receives what :meth:`QuicEngine.process_events` found, in order."""

    def on_handshake(self) -> None: ...
    def on_new_stream(self, stream_id: int) -> None: ...
    def on_stream_data(self, stream_id: int, data: bytes, fin: bool) -> None: ...
    def on_stream_reset(self, stream_id: int, code: int) -> None: ...
    def on_stop_sending(self, stream_id: int, code: int) -> None: ...
    def on_datagram(self, data: bytes) -> None: ...
    def on_connection_id(self, cid: bytes, issued: bool) -> None: ...


class _Connection(_AioQuicConnection):
    """aioquic's connection, with receive credit that follows what was consumed."""

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        window: int,
        original_destination_connection_id: bytes | None,
    ) -> None:
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
        )
        self.window = window
        self.consumed: dict[int, int] = {}
        self.closing: Termination | None = None

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: AioQuicStream
    ) -> None:
        limit = stream.max_stream_data_local
        if not limit:
            return  # a stream we only send on: there is no credit to grant
        window = self.window
        target = self.consumed.get(stream.stream_id, 0) + window  # type: ignore[arg-type]
        if target - limit >= window // 2:
            stream.max_stream_data_local = target
        elif stream.max_stream_data_local_sent == limit:
            return  # nothing to grant, nothing to (re)send: the common case, kept cheap
        receiver = stream.receiver
        seen = receiver.highest_offset
        receiver.highest_offset = 0  # aioquic would double the credit by what arrived
        try:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
        finally:
            receiver.highest_offset = seen

    def _close_begin(self, is_initiator: bool, now: float) -> None:
        super()._close_begin(is_initiator=is_initiator, now=now)
        event = self._close_event
        if self.closing is None and event is not None:
            self.closing = Termination(
                event.error_code,
                event.reason_phrase,
                by_peer=not is_initiator,
                application=event.frame_type is None,
            )


@final
class QuicEngine:
    """One QUIC connection's protocol state; no I/O, no clock (``now`` is passed in).

    Every method is safe to call in any state: after the connection ended,
    calls that would send do nothing, and :attr:`termination` says why it ended.
    ``ConnectionBroken`` is raised only by :meth:`send` (a stream the peer reset).
    """

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        window: int,
        original_destination_connection_id: bytes | None = None,
    ) -> None:
        try:
            self._quic = _Connection(
                configuration=configuration,
                window=window,
                original_destination_connection_id=original_destination_connection_id,
            )
        except ValueError as exc:
            raise UsageError(f"bad QUIC configuration: {exc}") from None
        self._is_client = configuration.is_client
        self._window = window
        self._termination: Termination | None = None
        self._timer_ran = False
        self._peer_bidi = 0
        self._peer_uni = 0
        self._unannounced: list[int] = []
        self.handshake_complete = False
        self.alpn_protocol: str | None = None

    # -- driving ----------------------------------------------------------------

    @property
    def host_cid(self) -> bytes:
        """Our first connection ID (the one the peer addresses its packets to)."""
        return self._quic.host_cid

    @property
    def termination(self) -> Termination | None:
        """Why the connection ended or is closing; ``None`` while it is open."""
        return self._termination or self._quic.closing

    def connect(self, addr: Any, now: float) -> None:
        """Start a client's handshake with the peer at ``addr``."""
        self._guard(self._quic.connect, addr, now=now)

    def receive(self, data: bytes, addr: Any, now: float) -> None:
        """Feed one received UDP datagram."""
        try:
            self._quic.receive_datagram(data, addr, now=now)
        except Exception as exc:  # aioquic failed: end the connection, never raise into the loop
            self._fail(exc)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        """The UDP datagrams to send now, each with its destination."""
        try:
            return self._quic.datagrams_to_send(now=now)
        except Exception as exc:  # aioquic failed: end the connection, never raise into the loop
            self._fail(exc)
            return []

    def timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (loop time), or ``None``."""
        return self._quic.get_timer()

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now`` (retransmission, acknowledgements, idle timeout)."""
        self._timer_ran = True  # until process_events: an end it reports is the idle timeout
        self._guard(self._quic.handle_timer, now=now)

    def process_events(self, sink: EngineSink) -> None:
        """Hand every pending event to ``sink``: new peer streams first, then the rest."""
        quic = self._quic
        if self._unannounced:
            self._announce()
        used = quic._local_max_streams_bidi.used
        if used > self._peer_bidi:
            low = 1 if self._is_client else 0  # peer-opened bidirectional: server 1, client 0
            for index in range(self._peer_bidi, used):
                sink.on_new_stream(index * 4 + low)
            self._peer_bidi = used
        used_uni = quic._local_max_streams_uni.used
        if used_uni > self._peer_uni:
            for index in range(self._peer_uni, used_uni):  # we take no one-way streams
                self.stop(index * 4 + (3 if self._is_client else 2), ABORT_CODE)
            self._peer_uni = used_uni
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is quic_events.StreamDataReceived:
                assert isinstance(event, quic_events.StreamDataReceived)
                sink.on_stream_data(event.stream_id, event.data, event.end_stream)
            elif kind is quic_events.StreamReset:
                assert isinstance(event, quic_events.StreamReset)
                sink.on_stream_reset(event.stream_id, event.error_code)
            elif kind is quic_events.StopSendingReceived:
                assert isinstance(event, quic_events.StopSendingReceived)
                sink.on_stop_sending(event.stream_id, event.error_code)
            elif kind is quic_events.DatagramFrameReceived:
                assert isinstance(event, quic_events.DatagramFrameReceived)
                sink.on_datagram(event.data)
            elif kind is quic_events.HandshakeCompleted:
                assert isinstance(event, quic_events.HandshakeCompleted)
                self.handshake_complete = True
                self.alpn_protocol = event.alpn_protocol
                sink.on_handshake()
            elif kind is quic_events.ConnectionIdIssued:
                assert isinstance(event, quic_events.ConnectionIdIssued)
                sink.on_connection_id(event.connection_id, True)
            elif kind is quic_events.ConnectionIdRetired:
                assert isinstance(event, quic_events.ConnectionIdRetired)
                sink.on_connection_id(event.connection_id, False)
            elif kind is quic_events.ConnectionTerminated:
                assert isinstance(event, quic_events.ConnectionTerminated)
                self._terminated(event)
        self._timer_ran = False

    # -- streams ----------------------------------------------------------------

    def open_stream(self) -> int:
        """Open a bidirectional stream and announce it to the peer; return its ID."""
        quic = self._quic
        stream_id = quic.get_next_available_stream_id()
        self._guard(quic.send_stream_data, stream_id, b"")
        self._unannounced.append(stream_id)
        self._announce()
        return stream_id

    def stream(self, stream_id: int) -> AioQuicStream | None:
        """aioquic's state of a stream (``None`` if unknown or already discarded)."""
        return self._quic._streams.get(stream_id)

    def send(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        """Queue ``data`` (and the FIN) on a stream; ``ConnectionBroken`` if aioquic
        refuses (the stream was reset)."""
        try:
            self._quic.send_stream_data(stream_id, data, end_stream=fin)
        except (ValueError, RuntimeError) as exc:
            raise ConnectionBroken(f"QUIC stream {stream_id} cannot send: {exc}") from None

    def consume(self, stream: AioQuicStream, consumed: int) -> bool:
        """Record that ``consumed`` bytes of ``stream`` were read in all; True when the
        credit this frees is worth a MAX_STREAM_DATA now (call ``datagrams_to_send``)."""
        stream_id = stream.stream_id
        assert stream_id is not None
        self._quic.consumed[stream_id] = consumed
        return consumed + self._window - stream.max_stream_data_local >= self._window // 2

    def forget(self, stream_id: int) -> None:
        """The application is done with a stream: drop its bookkeeping."""
        self._quic.consumed.pop(stream_id, None)

    def send_done(self, stream_id: int) -> bool:
        """True once every byte and the FIN (or the reset) we sent were acknowledged."""
        stream = self._quic._streams.get(stream_id)
        return stream is None or stream.sender.is_finished

    def reset(self, stream_id: int, code: int) -> None:
        """Abandon sending on a stream (RESET_STREAM); nothing if it already finished."""
        with contextlib.suppress(ValueError, RuntimeError):  # the stream is already gone
            self._quic.reset_stream(stream_id, code)

    def stop(self, stream_id: int, code: int) -> None:
        """Ask the peer to stop sending on a stream (STOP_SENDING); nothing if it finished."""
        with contextlib.suppress(ValueError, RuntimeError):  # the stream is already gone
            self._quic.stop_stream(stream_id, code)

    # -- datagrams --------------------------------------------------------------

    @property
    def datagram_limit(self) -> int:
        """The largest datagram the peer accepts and one packet carries; 0: none."""
        peer = self._quic._remote_max_datagram_frame_size
        if not peer or self._quic.configuration.max_datagram_frame_size is None:
            return 0
        packet = self._quic.configuration.max_datagram_size - _PACKET_OVERHEAD
        room = min(packet, peer) - 1  # less the frame's type byte
        length_size = 1 if room - 1 < 64 else 2 if room - 2 < 16384 else 4
        return max(0, room - length_size)

    @property
    def datagrams_queued(self) -> int:
        """Datagrams handed to :meth:`send_datagram` and not yet sent."""
        return len(self._quic._datagrams_pending)

    def send_datagram(self, data: bytes) -> None:
        """Queue one unreliable datagram (RFC 9221)."""
        self._quic.send_datagram_frame(data)

    # -- closing ----------------------------------------------------------------

    def close(self, *, code: int = QuicErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close the connection (CONNECTION_CLOSE goes out with the next datagrams)."""
        self._guard(self._quic.close, error_code=code, reason_phrase=reason)

    # -- internals --------------------------------------------------------------

    def _announce(self) -> None:
        waiting: list[int] = []
        for stream_id in self._unannounced:
            stream = self._quic._streams.get(stream_id)
            if stream is None or stream.sender.highest_offset:
                continue  # gone, or data already told the peer
            if stream.is_blocked:  # over the peer's stream limit: announce once allowed
                waiting.append(stream_id)
                continue
            stream.max_stream_data_local_sent = 0
        self._unannounced = waiting

    def _terminated(self, event: quic_events.ConnectionTerminated) -> None:
        if self.termination is not None:
            return
        idle = self._timer_ran and event.error_code != QuicErrorCode.NO_VIABLE_PATH
        self._termination = Termination(
            event.error_code,
            event.reason_phrase,
            by_peer=False,
            idle=idle,
            application=event.frame_type is None,
        )

    def _guard(self, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except Exception as exc:  # aioquic failed: end the connection, never raise into the loop
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self.termination is None:
            self._termination = Termination(
                QuicErrorCode.INTERNAL_ERROR,
                f"aioquic failed: {type(exc).__name__}: {exc}",
                by_peer=False,
            )
        with contextlib.suppress(Exception):
            self._quic.close(error_code=QuicErrorCode.INTERNAL_ERROR, reason_phrase="internal")
