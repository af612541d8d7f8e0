"""The sending half of the ARQ core: segments, loss recovery, timers, flow control.

Rules of this file:

* Every message becomes one or more segments with consecutive sequence
  numbers (FIRST on the first fragment, LAST on the last); ``close`` adds one
  FIN segment. Segments go out in sequence order the first time.
* A segment is *in flight* from a transmission until it is acknowledged or
  deemed lost. Each transmission rides in a datagram with a *packet number*,
  and every ACK echoes the largest packet number its sender received. Loss is
  detected per RFC 9002 on packet numbers: a segment is lost once a datagram
  sent ``packet_threshold`` datagrams later got through, or once
  ``time_threshold`` round trips (plus the learned reordering delay) passed and
  a later datagram got through. Lost segments are retransmitted first, lowest
  sequence number first. A loss that starts a congestion recovery episode lets
  one segment past the reduced window, so the first lost segment goes out at
  once instead of waiting for the flight to drain (RFC 6675 section 5, step
  4.2; RFC 9002 section 7.3.2).
* Spurious losses teach: when a segment deemed lost turns out to have arrived
  the first time (acknowledged before its retransmission, or while the echoed
  packet number shows the retransmission had not arrived yet), the packet
  threshold (up to 16) and the reordering delay (up to one smoothed RTT, as
  RACK's reordering window) grow to what that segment needed, and
  congestion control may undo its reduction (see ``_arq_congestion``).
* RTT samples come only from segments sent exactly once (Karn's rule: the ACK
  of a retransmitted segment may be for either transmission).
* Tail loss probe (RFC 8985): when nothing is acknowledged for two smoothed
  round trips, one probe goes out past the congestion window: a new segment if
  there is one, else the last segment in flight again, so its acknowledgement
  lets loss detection find the tail losses long before the RTO would. Up to
  three probes go out in a row, each after twice the previous wait.
* The retransmission timer follows RFC 6298 section 5: started when a segment
  is sent and none is running, restarted when an ACK acknowledges new data,
  stopped when nothing is in flight. On expiry RTO doubles (5.5) and the
  earliest segment in flight is retransmitted (5.4) together with one new
  segment, both allowed past the congestion window; with no new segment to
  send, every segment in flight is retransmitted instead. A second expiry in a
  row without progress deems every segment in flight lost and drops the
  congestion window to its minimum (RFC 5681). ``max_rto_expirations`` in a
  row fail the connection.
* Flow control: a new segment is sent only if its sequence number is below the
  peer's advertised right edge. With a closed window and nothing in flight, a
  persist timer lets one segment past the edge as a window probe.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from ..errors import ClosedResourceError, UsageError
from ._arq_config import ArqConfig, unwrap
from ._arq_congestion import NewReno
from ._arq_wire import DATA, DATA_HEADER, FIN, FIRST, LAST, AckChunk
from ._events import Retransmitted, RttSampled
from ._rtt import RttEstimator

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["ArqSender", "Segment"]

_NEVER: Final = float("inf")
#: Tail loss probes in a row (each after twice the wait of the last) before only
#: the RTO is left.
_MAX_TAIL_PROBES: Final = 3
#: The packet threshold never learns past this many datagrams.
_MAX_PACKET_THRESHOLD: Final = 16


@dataclass(slots=True, eq=False)
class Segment:
    """One segment and its transmission history."""

    seq: int
    flags: int
    payload: bytes
    first_sent: float = 0.0
    sent_time: float = 0.0
    packet: int = -1
    tx: int = 0
    transmissions: int = 0
    in_flight: bool = False
    acked: bool = False
    lost_reason: str = ""
    lost_gap: int = 0  # packets between it and the largest acknowledged, when deemed lost
    episode: int = -1  # congestion episode it was deemed lost in

    @property
    def size(self) -> int:
        """Bytes of this segment's DATA chunk on the wire."""
        return DATA_HEADER + len(self.payload)

    def encode(self) -> bytes:
        length = len(self.payload)
        seq = self.seq
        return (
            bytes(
                (
                    DATA,
                    self.flags,
                    (seq >> 24) & 0xFF,
                    (seq >> 16) & 0xFF,
                    (seq >> 8) & 0xFF,
                    seq & 0xFF,
                    length >> 8,
                    length & 0xFF,
                )
            )
            + self.payload
        )


@final
class ArqSender:
    """Queues messages as segments and decides what to (re)send and when."""

    def __init__(
        self, config: ArqConfig, *, observer: Observer | None = None, name: str = "arq"
    ) -> None:
        self._config = config
        self._observer = observer
        self._name = name
        self.rtt = RttEstimator(
            initial_rto=config.initial_rto, min_rto=config.min_rto, max_rto=config.max_rto
        )
        self.mss = config.segment_payload + DATA_HEADER
        self.cc = NewReno(
            mss=self.mss,
            initial_window=config.initial_window,
            max_window=2 * config.recv_window * self.mss,
            observer=observer,
            name=name,
        )
        start = config.initial_sequence
        self._next_seq = start  # next sequence number to assign
        self._queue: deque[Segment] = deque()  # assigned, never sent
        self._unacked: dict[int, Segment] = {}  # sent at least once, by sequence number
        self._flight: dict[int, Segment] = {}  # in the network now, by transmission number
        self._lost: list[tuple[int, Segment]] = []  # heap by sequence number
        self._tx = 0
        self._packet = 0  # number of the datagram being filled
        self.snd_una = start
        self._sent_edge = start  # one past the highest sequence number ever sent
        self._largest_acked_packet = -1
        self.bytes_in_flight = 0
        self._buffered = 0
        self.packet_threshold = config.packet_threshold
        self.reorder_delay = 0.0
        self.peer_edge = start + config.recv_window  # until the first ACK says otherwise
        self._rto_at: float | None = None
        self._pto_at: float | None = None
        self._loss_at: float | None = None
        self._persist_at: float | None = None
        self._window_probe = False  # one segment may pass the peer's closed window
        self._probes = 0  # segments that may pass the congestion window
        self._tail_probes = 0
        self._expirations = 0
        self._fin_queued = False
        self.fin_acked = False
        self.failed: str | None = None
        self.retransmissions = 0
        self.spurious = 0
        self.segments_sent = 0

    # -- the application side -------------------------------------------------------

    @property
    def writable(self) -> bool:
        """True while queued and unacknowledged payload is below ``send_buffer``."""
        return self._buffered < self._config.send_buffer

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing unacknowledged."""
        return not self._queue and not self._unacked

    def send(self, message: bytes) -> None:
        """Queue one message (split into segments)."""
        if self._fin_queued:
            raise ClosedResourceError(f"{self._name}: cannot send after close()")
        size = len(message)
        if size > self._config.max_message_size:
            raise UsageError(
                f"{self._name}: message of {size} bytes exceeds max_message_size "
                f"({self._config.max_message_size}); raise it on both sides"
            )
        step = self._config.segment_payload
        data = bytes(message)
        if size <= step:
            self._enqueue(FIRST | LAST, data)
        else:
            for offset in range(0, size, step):
                flags = (FIRST if offset == 0 else 0) | (LAST if offset + step >= size else 0)
                self._enqueue(flags, data[offset : offset + step])
        self._buffered += size

    def close(self) -> None:
        """Queue the end of stream after everything sent so far. Idempotent."""
        if not self._fin_queued:
            self._fin_queued = True
            self._enqueue(FIN, b"")

    def _enqueue(self, flags: int, payload: bytes) -> None:
        self._queue.append(Segment(self._next_seq, flags, payload))
        self._next_seq += 1

    # -- building datagrams ------------------------------------------------------------

    @property
    def packet(self) -> int:
        """The packet number of the datagram being filled."""
        return self._packet

    def datagram_done(self) -> None:
        """The datagram being filled is complete; the next one gets a new packet number."""
        self._packet += 1

    def next_segment(self, now: float) -> Segment | None:
        """The segment to transmit next if congestion and flow control allow, else ``None``."""
        if self.failed is not None:
            return None
        room = self._probes > 0 or self.cc.can_send(self.bytes_in_flight)
        lost = self._lost
        while lost:
            seg = lost[0][1]
            if seg.acked or seg.in_flight:
                heapq.heappop(lost)
                continue
            if not room:
                return None
            heapq.heappop(lost)
            return seg
        if not self._queue or not room:
            return None
        if self._queue[0].seq >= self.peer_edge:
            if not self._window_probe:
                if self.bytes_in_flight == 0 and self._persist_at is None:
                    self._persist_at = now + self.rtt.rto
                return None
            self._window_probe = False
        return self._queue.popleft()

    def transmitted(self, seg: Segment, now: float) -> None:
        """Record that ``seg`` goes out now in the datagram being filled."""
        seg.transmissions += 1
        seg.sent_time = now
        seg.packet = self._packet
        seg.in_flight = True
        if self._probes:
            self._probes -= 1
        self._tx += 1
        seg.tx = self._tx
        self._flight[self._tx] = seg
        self.bytes_in_flight += seg.size
        self.segments_sent += 1
        if seg.transmissions == 1:
            seg.first_sent = now
            self._unacked[seg.seq] = seg
            self._sent_edge = seg.seq + 1
        else:
            self.retransmissions += 1
            if self._observer is not None:
                self._observer(
                    Retransmitted(self._name, seg.seq, seg.transmissions, seg.lost_reason)
                )
        if self._rto_at is None:
            self._rto_at = now + self.rtt.rto
        self._persist_at = None
        self._arm_probe(now)

    # -- acknowledgements -----------------------------------------------------------------

    def on_ack(self, ack: AckChunk, now: float) -> None:
        """Process one ACK chunk from the peer."""
        cumulative = unwrap(ack.cumulative, self.snd_una)
        if cumulative < self.snd_una or cumulative > self._sent_edge:
            return  # an older, reordered ACK, or nonsense: nothing to learn
        echoed = unwrap(ack.largest, max(self._packet - 1, 0))
        if echoed >= self._packet:
            echoed = -1  # names a datagram never sent: ignore it
        self._largest_acked_packet = max(self._largest_acked_packet, echoed)
        newly: list[Segment] = []
        unacked = self._unacked
        for seq in range(self.snd_una, cumulative):
            seg = unacked.pop(seq, None)
            if seg is not None:
                newly.append(seg)
        self.snd_una = cumulative
        edge = self._sent_edge
        for start, end in ack.ranges:
            if not unacked:
                break
            for seq in range(cumulative + start, min(cumulative + end, edge)):
                seg = unacked.pop(seq, None)
                if seg is not None:
                    newly.append(seg)
        self.peer_edge = max(self.peer_edge, cumulative + ack.window)
        if self.peer_edge > self._sent_edge:
            self._persist_at = None
        if newly:
            self._acknowledged(newly, echoed, now)
        self._detect_losses(now)

    def _acknowledged(self, newly: list[Segment], echoed: int, now: float) -> None:
        self._expirations = 0
        sample: Segment | None = None
        grown = 0
        recovery_start = self.cc.recovery_start
        for seg in newly:
            seg.acked = True
            self._buffered -= len(seg.payload)
            if seg.flags & FIN:
                self.fin_acked = True
            if seg.in_flight:
                seg.in_flight = False
                self.bytes_in_flight -= seg.size
                del self._flight[seg.tx]
            if seg.transmissions == 1 and (sample is None or seg.sent_time > sample.sent_time):
                sample = seg
            if seg.packet >= recovery_start:
                grown += seg.size
            if seg.lost_reason and (seg.transmissions == 1 or 0 <= echoed < seg.packet):
                self._spurious(seg, now)
        if sample is not None:
            rtt = self.rtt
            rtt.on_sample(now - sample.sent_time)
            if self._observer is not None:
                assert rtt.srtt is not None
                self._observer(RttSampled(self._name, rtt.latest, rtt.srtt, rtt.rttvar, rtt.rto))
        self.cc.on_acked(grown)
        self._rto_at = now + self.rtt.rto if self._flight else None
        self._tail_probes = 0
        self._pto_at = None
        self._arm_probe(now)

    def _spurious(self, seg: Segment, now: float) -> None:
        """``seg`` was deemed lost but its first transmission arrived: learn from it."""
        self.spurious += 1
        if seg.lost_reason == "loss":
            self.packet_threshold = min(
                max(self.packet_threshold, seg.lost_gap + 1), _MAX_PACKET_THRESHOLD
            )
            late = now - seg.first_sent - self._config.time_threshold * self.rtt.smoothed()
            self.reorder_delay = min(max(self.reorder_delay, late), self.rtt.smoothed())
        self.cc.on_spurious(seg.episode)

    def _arm_probe(self, now: float) -> None:
        """Arm the tail loss probe: two smoothed RTTs out, doubled for each probe
        already sent without an answer; never later than the RTO."""
        if self._pto_at is not None or not self._flight or self.rtt.srtt is None:
            return
        if self._tail_probes >= _MAX_TAIL_PROBES:
            return
        when = now + max(2 * self.rtt.srtt + self.reorder_delay, 0.01) * (1 << self._tail_probes)
        if self._rto_at is None or when < self._rto_at:
            self._pto_at = when

    def _detect_losses(self, now: float) -> None:
        self._loss_at = None
        largest = self._largest_acked_packet
        if largest < 0 or not self._flight:
            return
        rtt = self.rtt
        delay = self._config.time_threshold * max(rtt.smoothed(), rtt.latest) + self.reorder_delay
        delay = max(delay, 0.001)
        threshold = self.packet_threshold
        lost: list[Segment] = []
        for seg in self._flight.values():
            if seg.packet >= largest:
                break
            if largest - seg.packet >= threshold or seg.sent_time + delay <= now:
                seg.lost_gap = largest - seg.packet
                lost.append(seg)
            else:
                self._loss_at = seg.sent_time + delay
                break
        if lost:
            newest = max(seg.packet for seg in lost)
            previous = self.cc.episode
            episode = self.cc.on_lost(len(lost), newest, self._packet)
            if episode != previous:
                # A new recovery episode: the first lost segment goes out at once,
                # past the reduced window (RFC 6675 section 5 step 4.2, RFC 9002 7.3.2).
                self._probes += 1
            self._declare_lost(lost, "loss", episode)

    def _declare_lost(self, lost: list[Segment], reason: str, episode: int) -> None:
        for seg in lost:
            del self._flight[seg.tx]
            seg.in_flight = False
            seg.lost_reason = reason
            seg.episode = episode
            self.bytes_in_flight -= seg.size
            heapq.heappush(self._lost, (seg.seq, seg))

    # -- timers ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest loop time at which :meth:`handle_timer` has work, or ``None``."""
        if self.failed is not None:
            return None
        when = min(
            _NEVER if self._rto_at is None else self._rto_at,
            _NEVER if self._pto_at is None else self._pto_at,
            _NEVER if self._loss_at is None else self._loss_at,
            _NEVER if self._persist_at is None else self._persist_at,
        )
        return None if when == _NEVER else when

    def handle_timer(self, now: float) -> None:
        """Run whatever timers are due at ``now``."""
        if self.failed is not None:
            return
        if self._loss_at is not None and now >= self._loss_at:
            self._detect_losses(now)
        if self._rto_at is not None and now >= self._rto_at:
            self._on_rto()
        elif self._pto_at is not None and now >= self._pto_at:
            self._on_probe_timeout()
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self._window_probe = True
            self.rtt.backoff()

    def _fresh_segment_ready(self) -> bool:
        return bool(self._queue) and self._queue[0].seq < self.peer_edge

    def _on_probe_timeout(self) -> None:
        self._pto_at = None
        if not self._flight:
            return
        self._tail_probes += 1
        self._probes += 1
        if not self._fresh_segment_ready():
            last = next(reversed(self._flight.values()))
            self._declare_lost([last], "probe", self.cc.episode)

    def _on_rto(self) -> None:
        self._rto_at = None
        self._pto_at = None
        self._loss_at = None
        self._expirations += 1
        if self._expirations > self._config.max_rto_expirations:
            self.failed = (
                f"{self._name}: the peer acknowledged nothing through "
                f"{self._config.max_rto_expirations} retransmission timeouts "
                f"(last RTO {self.rtt.rto:.3f} s)"
            )
            return
        self.rtt.backoff()
        in_flight = list(self._flight.values())
        if not in_flight:
            return
        if self._expirations == 1:
            fresh = self._fresh_segment_ready()
            self._declare_lost(in_flight[:1] if fresh else in_flight, "rto", self.cc.episode)
            self._probes = 2 if fresh else len(in_flight)
            return
        self.cc.on_timeout(self.bytes_in_flight, self._packet)
        self._declare_lost(in_flight, "rto", self.cc.episode)
        self._probes = 1
