"""A sans-IO TCP connection (one end): segments in, segments and events out.

Rules of this file:

* No clock, no loop, no sockets: every method that depends on time takes
  ``now`` (integer ns). :meth:`TcpCore.next_timer` says when the core next needs
  :meth:`TcpCore.handle_timer`. Packets to send collect in :attr:`TcpCore.outbox`;
  in-order received bytes in the ready queue (:meth:`TcpCore.take`);
  happenings as bits in :attr:`TcpCore.events` (the adapter clears them).
* Packets are emitted by :meth:`TcpCore.flush` (and by fast retransmit), so
  every ACK carries the window as it is after the application took its data,
  and several segments arriving at one instant share one ACK.
* States: ``SYN_SENT`` → ``ESTABLISHED`` (client), ``SYN_RCVD`` → ``ESTABLISHED``
  (server), then the close sequence is tracked by flags (FIN queued, sent,
  acknowledged; FIN received) instead of the textbook's seven states; there is
  no TIME_WAIT. ``CLOSED`` is final.
* Reliability: cumulative ACKs, out-of-order segments kept within the window
  (:mod:`netweave.sim._tcp_receive`) and reported as SACK blocks;
  retransmission after an RTO (RFC 6298, exponential backoff, go-back-N);
  fast recovery entered on three duplicate ACKs or three MSS of SACKed data,
  resending the SACK holes (:mod:`netweave.sim._tcp_sack`) or, without SACK
  information, the first hole on each partial ACK (NewReno), with a lower
  threshold when few segments are in flight (early retransmit) and a tail
  loss probe two round trips after the last ACK; a Reno congestion window;
  zero-window probes. Unacknowledged data older than
  ``user_timeout`` (or an unanswered SYN) fails the connection with ETIMEDOUT.
* Sequence numbers are unbounded integers; both ends use the same numbering.
"""

from __future__ import annotations

import errno
from typing import Final, final

from ..errors import UsageError
from ._packet import ACK, FIN, PSH, RST, SYN, TCP, Packet
from ._tcp_receive import FIN as REACHED_FIN
from ._tcp_receive import IN_ORDER, ReceiveBuffer
from ._tcp_sack import Scoreboard
from ._tcp_send import RtoEstimator, SendBuffer
from ._tcp_settings import TcpSettings

__all__ = [
    "CLOSED",
    "ESTABLISHED",
    "EV_CLOSED",
    "EV_EOF",
    "EV_ERROR",
    "EV_ESTABLISHED",
    "EV_SENDSPACE",
    "TcpCore",
    "TcpSettings",
]

SYN_SENT: Final = 1
SYN_RCVD: Final = 2
ESTABLISHED: Final = 3
CLOSED: Final = 4

#: Event bits in :attr:`TcpCore.events`.
EV_ESTABLISHED: Final = 1
EV_EOF: Final = 2
EV_ERROR: Final = 4
EV_CLOSED: Final = 8
EV_SENDSPACE: Final = 16

_NS: Final = 1_000_000_000


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


@final
class TcpCore:
    """One end of a TCP connection. Create with :meth:`client` or :meth:`server`."""

    def __init__(
        self,
        host: str,
        local: tuple[str, int],
        remote: tuple[str, int],
        *,
        iss: int,
        mss: int,
        settings: TcpSettings,
    ) -> None:
        self.host = host
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote
        self.mss = mss
        self.state = CLOSED
        self.events = 0
        self.error: OSError | None = None
        self.outbox: list[Packet] = []
        self._user_timeout = _ns(settings.user_timeout)
        self._fin_timeout = _ns(settings.fin_timeout)
        self._ack_delay = _ns(settings.ack_delay)
        # send side
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.sndbuf = SendBuffer(iss + 1)
        self.fin_queued = False
        self.fin_acked = False
        self.app_closed = False
        self.cwnd = settings.initial_window * mss
        self.ssthresh = 1 << 62
        self.dupacks = 0
        self.recover = -1
        self.rexmit_next = 0
        self.scoreboard = Scoreboard()
        self.rtt = RtoEstimator(
            _ns(settings.initial_rto), _ns(settings.min_rto), _ns(settings.max_rto)
        )
        self.rtt_seq = -1
        self.rtt_start = 0
        self.rtx_at = -1
        self.unacked_since = -1
        self.persist_at = -1
        self.probe_since = -1
        self.fin_at = -1
        self.tlp_at = -1
        # receive side
        self.irs = 0
        self.rcv = ReceiveBuffer(settings.rcvbuf)
        #: An ACK is due at the next flush.
        self.ack_now = False
        self.delack_at = -1
        self._segs_unacked = 0

    # -- construction ------------------------------------------------------------

    @classmethod
    def client(
        cls,
        host: str,
        local: tuple[str, int],
        remote: tuple[str, int],
        *,
        iss: int,
        mss: int,
        settings: TcpSettings,
        now: int,
    ) -> TcpCore:
        """An active opener; its SYN is in the outbox."""
        core = cls(host, local, remote, iss=iss, mss=mss, settings=settings)
        core.state = SYN_SENT
        core.snd_nxt = core.snd_max = iss + 1
        core.unacked_since = now
        core.rtt_seq, core.rtt_start = iss + 1, now
        core._emit_syn(now)
        return core

    @classmethod
    def server(
        cls,
        host: str,
        syn: Packet,
        *,
        iss: int,
        mss: int,
        settings: TcpSettings,
        now: int,
    ) -> TcpCore:
        """A passive opener answering ``syn``; its SYN-ACK is in the outbox."""
        core = cls(
            host,
            (syn.dst_ip, syn.dst_port),
            (syn.src_ip, syn.src_port),
            iss=iss,
            mss=mss,
            settings=settings,
        )
        core.state = SYN_RCVD
        core.irs = syn.seq
        core.rcv.nxt = syn.seq + 1
        core.snd_wnd = syn.window
        core.snd_nxt = core.snd_max = iss + 1
        core.unacked_since = now
        core.rtt_seq, core.rtt_start = iss + 1, now
        core._emit_syn(now)
        return core

    # -- state -------------------------------------------------------------------

    @property
    def established(self) -> bool:
        """True from the handshake's end until the connection is closed."""
        return self.state == ESTABLISHED

    @property
    def closed(self) -> bool:
        """True once the connection is over (finished, reset or timed out)."""
        return self.state == CLOSED

    @property
    def queued(self) -> int:
        """Bytes written and not yet acknowledged by the peer."""
        return self.sndbuf.held

    @property
    def data_end(self) -> int:
        """The sequence number after the last byte written."""
        return self.sndbuf.end

    @property
    def ready_len(self) -> int:
        """Received in-order bytes the application has not taken yet."""
        return self.rcv.ready_len

    @property
    def fin_received(self) -> bool:
        """Whether the peer's FIN arrived (after all its data)."""
        return self.rcv.fin_received

    def rcv_window(self) -> int:
        """The window advertised to the peer (0 while less than an MSS is free)."""
        return self.rcv.window(self.mss)

    # -- application side ----------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data`` for sending (call :meth:`flush` to emit segments)."""
        if self.fin_queued:
            raise UsageError("cannot send after the sending side was shut down")
        self.sndbuf.write(data)

    def shutdown_write(self) -> None:
        """Send a FIN after the queued data (idempotent)."""
        self.fin_queued = True

    def close(self, now: int) -> None:
        """The application closed the socket: FIN after the queued data, stop reading.

        Unread received data makes it a reset instead, as on Linux.
        """
        if self.state == CLOSED or self.app_closed:
            return
        self.app_closed = True
        if self.rcv.ready_len or self.state != ESTABLISHED:
            self.abort()
            return
        self.fin_queued = True

    def abort(self) -> None:
        """Reset the connection now: a RST goes out unless the handshake never got far."""
        if self.state == CLOSED:
            return
        if self.state != SYN_SENT:
            self.outbox.append(self._packet(RST | ACK, self.snd_nxt))
        self.app_closed = True
        self._finish()

    def take(self) -> bytes:
        """All in-order received data not yet taken (``b""`` if none)."""
        return self.rcv.take()

    def window_opened(self) -> None:
        """The application took data after a pause: tell the peer if the window grew."""
        if self.state == ESTABLISHED and not self.rcv.fin_received:
            self.ack_now = True

    # -- network side --------------------------------------------------------------

    def receive(self, pkt: Packet, now: int) -> None:
        """Process one segment addressed to this connection."""
        state = self.state
        if state == CLOSED:
            return
        flags = pkt.flags
        self.probe_since = -1
        if flags & RST:
            self._on_reset(pkt)
            return
        if state == SYN_SENT:
            self._on_syn_sent(pkt, now)
            return
        if state == SYN_RCVD:
            if flags & SYN and not flags & ACK:
                if pkt.seq == self.irs:
                    self._emit_syn(now)
                return
            if not flags & ACK or pkt.ack != self.iss + 1:
                return
            self.state = ESTABLISHED
            self.events |= EV_ESTABLISHED
        elif flags & SYN:
            self.ack_now = True  # our handshake ACK was lost: the peer repeats its SYN-ACK
            return
        if flags & ACK:
            pure = not pkt.payload and not flags & FIN
            self._on_ack(pkt.ack, pkt.window, pure, now, pkt.sack)
            if self.state == CLOSED:
                return
            if pure and pkt.seq == self.rcv.nxt - 1:
                self.ack_now = True  # a window probe: answer with our current window
        if pkt.payload or flags & FIN:
            if self.app_closed and pkt.payload and pkt.seq + len(pkt.payload) > self.rcv.nxt:
                self.abort()  # data for a closed socket
                return
            self._on_data(pkt.seq, pkt.payload, bool(flags & FIN), now)

    def next_timer(self) -> int:
        """When :meth:`handle_timer` is next needed (ns), or -1."""
        if self.state == CLOSED:
            return -1
        best = self.rtx_at
        when = self.delack_at
        if when >= 0 and (best < 0 or when < best):
            best = when
        when = self.persist_at
        if when >= 0 and (best < 0 or when < best):
            best = when
        when = self.fin_at
        if when >= 0 and (best < 0 or when < best):
            best = when
        when = self.tlp_at
        if when >= 0 and (best < 0 or when < best):
            best = when
        return best

    def handle_timer(self, now: int) -> None:
        """Run the timers due at ``now`` (call :meth:`flush` after)."""
        if self.state == CLOSED:
            return
        if 0 <= self.delack_at <= now:
            self.delack_at = -1
            self.ack_now = True
        if 0 <= self.tlp_at <= now:
            self._on_probe_timeout()
        if 0 <= self.rtx_at <= now:
            self._on_rto(now)
        if 0 <= self.persist_at <= now and self.state != CLOSED:
            self._on_persist(now)
        if 0 <= self.fin_at <= now and self.state != CLOSED:
            self._finish()

    def flush(self, now: int) -> None:
        """Emit the segments that are due: new data within the windows, FIN, a pending ACK.

        Does nothing unless the connection is established and one of ``ack_now``,
        ``fin_acked``, ``fin_queued`` or ``snd_nxt < sndbuf.end`` holds (an adapter may
        check that itself and skip the call).
        """
        if self.state != ESTABLISHED:
            return
        if self.snd_nxt < self.sndbuf.end or self.fin_queued:
            self._output(now)
        if self.ack_now:
            self.outbox.append(self._packet(ACK, self.snd_nxt))
            self.ack_now = False
            self.delack_at = -1
            self._segs_unacked = 0
        if self.fin_acked:
            if self.rcv.fin_received:
                self._finish()
            elif self.app_closed and self.fin_at < 0:
                self.fin_at = now + self._fin_timeout

    # -- internals: sending ---------------------------------------------------------

    def _packet(self, flags: int, seq: int, payload: bytes = b"") -> Packet:
        rcv = self.rcv
        # rcv.window(self.mss), inlined: every segment carries it.
        free = rcv.cap - rcv.ready_len
        mss = self.mss
        half = rcv.cap // 2
        window = free if free >= (mss if mss < half else half) else 0
        packet = Packet(
            TCP,
            self.host,
            self.local_ip,
            self.local_port,
            self.remote_ip,
            self.remote_port,
            payload,
            seq,  # (positional: keywords cost more, on every segment)
            rcv.nxt if flags & ACK else 0,
            flags,
            window,
        )
        if rcv.ooo and flags & ACK:
            packet.sack = rcv.sack_blocks()
        return packet

    def _emit_syn(self, now: int) -> None:
        flags = SYN | ACK if self.state == SYN_RCVD else SYN
        syn = self._packet(flags, self.iss)
        syn.mss = self.mss
        self.outbox.append(syn)
        if self.rtx_at < 0:
            self.rtx_at = now + self.rtt.rto

    def _segment(self, seq: int, limit: int) -> Packet:
        """The segment of up to ``limit`` data bytes starting at ``seq`` (FIN if it fits)."""
        data_end = self.sndbuf.end
        if seq >= data_end:
            return self._packet(FIN | ACK, data_end)
        n = data_end - seq
        if limit < n:  # noqa: PLR1730 (hot path: no call to max/min)
            n = limit
        payload = self.sndbuf.slice(seq, n)
        flags = ACK
        if seq + n == data_end:
            flags |= PSH
            if self.fin_queued:
                flags |= FIN
        return self._packet(flags, seq, payload)

    def _output(self, now: int) -> None:
        data_end = self.sndbuf.end
        fin_end = data_end + 1 if self.fin_queued else data_end
        nxt = self.snd_nxt
        if nxt >= fin_end:
            return
        window = self.snd_wnd if self.snd_wnd < self.cwnd else self.cwnd
        limit = self.snd_una + window
        mss = self.mss
        sent = False
        outbox = self.outbox
        while nxt < fin_end:
            if nxt < data_end:
                room = limit - nxt
                if room <= 0:
                    break
                left = data_end - nxt
                n = mss if mss < left else left
                if room < n:  # noqa: PLR1730 (hot path: no call to max/min)
                    n = room
                if n < mss and n < left and nxt > self.snd_una:
                    break  # do not send a sliver the window forces while data is in flight
                pkt = self._segment(nxt, n)
            else:
                pkt = self._packet(FIN | ACK, data_end)
            outbox.append(pkt)
            sent = True
            if self.rtt_seq < 0 and nxt >= self.snd_max:
                self.rtt_seq, self.rtt_start = nxt + 1, now
            nxt = pkt.seq + len(pkt.payload) + (pkt.flags & FIN)  # pkt.seq_space (no SYN here)
            if nxt > self.snd_max:  # noqa: PLR1730 (hot path: no call to max/min)
                self.snd_max = nxt
        self.snd_nxt = nxt
        if sent:
            self.ack_now = False
            self.delack_at = -1
            self._segs_unacked = 0
            if self.rtx_at < 0:
                self.rtx_at = now + self.rtt.rto
            if self.unacked_since < 0:
                self.unacked_since = now
            self._arm_probe(now)
        elif self.snd_wnd == 0 and self.snd_una == self.snd_max and self.persist_at < 0:
            self.persist_at = now + self.rtt.backed_off()
            if self.probe_since < 0:
                self.probe_since = now

    def _retransmit_first(self) -> None:
        self.outbox.append(self._segment(self.snd_una, self.mss))

    # -- internals: timers -------------------------------------------------------------

    def _on_rto(self, now: int) -> None:
        if self.unacked_since >= 0 and now - self.unacked_since >= self._user_timeout:
            self._fail(TimeoutError(errno.ETIMEDOUT, "Connection timed out"))
            return
        self.rtt.back_off()
        self.rtt_seq = -1
        self.tlp_at = -1
        if self.state != ESTABLISHED:
            self._emit_syn(now)
        else:
            flight = self.snd_max - self.snd_una
            self.ssthresh = max(flight // 2, 2 * self.mss)
            self.cwnd = self.mss
            self.snd_nxt = self.snd_una
            self.recover = -1
            self.dupacks = 0
            self.scoreboard.clear()
        deadline = now + self.rtt.rto
        if self.unacked_since >= 0:
            deadline = min(deadline, self.unacked_since + self._user_timeout)
        self.rtx_at = deadline

    def _on_persist(self, now: int) -> None:
        self.persist_at = -1
        if self.snd_wnd > 0 or self.snd_una != self.snd_max:
            return
        if self.probe_since >= 0 and now - self.probe_since >= self._user_timeout:
            self._fail(TimeoutError(errno.ETIMEDOUT, "Connection timed out"))
            return
        # A segment just below the window: the peer must answer with its current window.
        self.outbox.append(self._packet(ACK, self.snd_una - 1))
        self.rtt.backoff += 1
        self.persist_at = now + self.rtt.backed_off()
        if self.probe_since >= 0:
            self.persist_at = min(self.persist_at, self.probe_since + self._user_timeout)

    # -- internals: receiving -------------------------------------------------------------

    def _on_syn_sent(self, pkt: Packet, now: int) -> None:
        flags = pkt.flags
        if flags & ACK and pkt.ack != self.iss + 1:
            reset = pkt.reset_reply()
            if reset is not None:
                self.outbox.append(reset)
            return
        if not (flags & SYN and flags & ACK):
            return  # a simultaneous open is not simulated
        self.irs = pkt.seq
        self.rcv.nxt = pkt.seq + 1
        self.state = ESTABLISHED
        self.events |= EV_ESTABLISHED
        self._on_ack(pkt.ack, pkt.window, False, now)
        self.ack_now = True

    def _on_reset(self, pkt: Packet) -> None:
        if self.state == SYN_SENT:
            if pkt.flags & ACK and pkt.ack == self.iss + 1:
                self._fail(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
            return
        rcv_nxt = self.rcv.nxt
        if rcv_nxt <= pkt.seq <= rcv_nxt + self.rcv.cap:
            if self.state == SYN_RCVD:
                self._finish()
            else:
                self._fail(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))

    def _on_ack(
        self, ack: int, window: int, pure: bool, now: int, sack: tuple[tuple[int, int], ...] = ()
    ) -> None:
        snd_una = self.snd_una
        if ack > self.snd_max:
            self.ack_now = True  # acknowledges something never sent
            return
        scoreboard = self.scoreboard
        if ack > snd_una:
            if self.sndbuf.acknowledge(ack):
                self.events |= EV_SENDSPACE
            if self.fin_queued and ack == self.sndbuf.end + 1:
                self.fin_acked = True
            acked = ack - snd_una
            self.snd_una = ack
            if ack > self.snd_nxt:  # noqa: PLR1730 (hot path: no call to max/min)
                self.snd_nxt = ack
            if scoreboard.blocks:
                scoreboard.advance(ack)
            if self.rtt_seq >= 0 and ack >= self.rtt_seq:
                self.rtt.sample(now - self.rtt_start)
                self.rtt_seq = -1
            self.rtt.backoff = 0
            mss = self.mss
            if self.recover >= 0:
                if ack >= self.recover:
                    self.recover = -1
                    self.cwnd = self.ssthresh
            elif self.cwnd < self.ssthresh:
                self.cwnd += acked if acked < mss else mss
            else:
                self.cwnd += max(1, mss * mss // self.cwnd)
            self.dupacks = 0
            if ack >= self.snd_max:
                self.rtx_at = -1
                self.unacked_since = -1
                self.tlp_at = -1
            else:
                self.rtx_at = now + self.rtt.rto
                self.unacked_since = now
                self._arm_probe(now)
        newly = scoreboard.add(sack, self.snd_una, self.snd_max) if sack else 0
        if (
            ack == snd_una
            and self.snd_max > snd_una
            and (newly or (pure and window == self.snd_wnd))
        ):
            self.dupacks += 1
        if self.recover >= 0:
            if ack > snd_una or newly:
                self._repair()  # a partial ACK or new SACK information: resend the next hole
        elif self.snd_max > self.snd_una and (
            self.dupacks >= self._dupthresh() or scoreboard.sacked >= self._dupthresh() * self.mss
        ):
            flight = self.snd_max - self.snd_una
            self.ssthresh = max(flight // 2, 2 * self.mss)
            self.cwnd = self.ssthresh
            self.recover = self.snd_max
            self.rexmit_next = self.snd_una
            self._repair()
        if ack >= snd_una:
            self.snd_wnd = window
            if window > 0:
                self.persist_at = -1
                self.probe_since = -1

    def _dupthresh(self) -> int:
        """Three, or fewer when fewer segments are in flight (early retransmit, RFC 5827)."""
        segments = -(-(self.snd_max - self.snd_una) // self.mss)
        return min(3, max(1, segments - 1))

    def _arm_probe(self, now: int) -> None:
        """A tail loss probe two round trips from now (at least 10 ms), plus the peer's
        delayed-ACK time when a single segment is in flight (RFC 8985), before the RTO."""
        srtt = self.rtt.srtt
        if srtt < 0 or self.recover >= 0:
            return
        when = now + (2 * srtt if srtt > 5_000_000 else 10_000_000)
        if self.snd_max - self.snd_una <= self.mss:
            when += self._ack_delay
        if self.rtx_at < 0 or when < self.rtx_at:
            self.tlp_at = when

    def _on_probe_timeout(self) -> None:
        """Nothing was acknowledged for two round trips: resend the last segment so the
        peer's (selective) acknowledgement shows what is missing (tail loss probe)."""
        self.tlp_at = -1
        if self.snd_una >= self.snd_max or self.recover >= 0:
            return
        sent_end = min(self.data_end, self.snd_max)
        seq = max(self.snd_una, sent_end - self.mss)
        self.outbox.append(self._segment(seq, self.mss))

    def _repair(self) -> None:
        """In recovery: resend up to two SACK holes, or (without SACK) the first hole."""
        scoreboard = self.scoreboard
        if not scoreboard.blocks:
            if self.snd_una >= self.rexmit_next:
                self._retransmit_first()
                self.rexmit_next = self.snd_una + self.mss
            return
        start = max(self.rexmit_next, self.snd_una)
        for _ in range(2):
            hole = scoreboard.next_hole(start, self.mss)
            if hole is None:
                break
            seq, length = hole
            self.outbox.append(self._segment(seq, length))
            start = self.rexmit_next = seq + length

    def _on_data(self, seq: int, data: bytes, fin: bool, now: int) -> None:
        outcome = self.rcv.add(seq, data, fin)
        if outcome == REACHED_FIN:
            self.events |= EV_EOF
            self.ack_now = True
        elif outcome != IN_ORDER:
            self.ack_now = True  # repeat our ACK, or tell the sender about a hole at once
        else:
            self._segs_unacked += 1
            if self._segs_unacked >= 2 or self._ack_delay == 0:
                self.ack_now = True
            elif self.delack_at < 0:
                self.delack_at = now + self._ack_delay

    # -- internals: ending -------------------------------------------------------------------

    def _fail(self, error: OSError) -> None:
        self.error = error
        self.events |= EV_ERROR
        self._finish()

    def _finish(self) -> None:
        self.state = CLOSED
        self.events |= EV_CLOSED
        self.rtx_at = self.delack_at = self.persist_at = self.fin_at = self.tlp_at = -1
        self.rcv.clear()
        self.sndbuf.clear()
