"""The sans-IO TCP core, driven by hand over a wire with explicit times."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import pytest

from netweave.sim._packet import ACK, FIN, RST, SYN, Packet
from netweave.sim._tcp import (
    EV_CLOSED,
    EV_EOF,
    EV_ERROR,
    EV_ESTABLISHED,
    TcpCore,
    TcpSettings,
)

MS = 1_000_000
S = 1_000_000_000


class Pair:
    """A client core ("a") and a server core ("b") joined by a wire.

    ``fate(pkt)`` returns ``None`` to lose a packet, an extra delay in ns, or a
    tuple of extra delays to deliver it once per entry.
    """

    def __init__(
        self,
        *,
        latency_ns: int = MS,
        settings: TcpSettings | None = None,
        mss: int = 1460,
        fate: Callable[[Packet], int | tuple[int, ...] | None] | None = None,
        listening: bool = True,
    ) -> None:
        self.now = 0
        self.latency_ns = latency_ns
        self.settings = settings or TcpSettings()
        self.mss = mss
        self.fate = fate or (lambda pkt: 0)
        self.listening = listening
        self._heap: list[tuple[int, int, str, Packet]] = []
        self._n = 0
        self.log: list[tuple[int, str, Packet]] = []
        self.data = {"a": bytearray(), "b": bytearray()}
        self.eof = {"a": False, "b": False}
        self.errors: dict[str, OSError | None] = {"a": None, "b": None}
        self.established = {"a": False, "b": False}
        self.closed = {"a": False, "b": False}
        self.reading = {"a": True, "b": True}
        self.client = TcpCore.client(
            "a",
            ("10.0.0.1", 40000),
            ("10.0.0.2", 80),
            iss=1000,
            mss=mss,
            settings=self.settings,
            now=0,
        )
        self.server: TcpCore | None = None
        self.pump("a")

    def core(self, side: str) -> TcpCore:
        core = self.client if side == "a" else self.server
        assert core is not None
        return core

    def pump(self, side: str) -> None:
        core = self.core(side)
        if self.reading[side] and core.ready_len:
            self.data[side] += core.take()
        core.flush(self.now)
        for pkt in core.outbox:
            self.log.append((self.now, side, pkt))
            fate = self.fate(pkt)
            if fate is None:
                continue
            other = "b" if side == "a" else "a"
            for extra in fate if isinstance(fate, tuple) else (fate,):
                self._n += 1
                when = self.now + self.latency_ns + extra
                heapq.heappush(self._heap, (when, self._n, other, pkt))
        core.outbox.clear()
        events, core.events = core.events, 0
        if events & EV_ESTABLISHED:
            self.established[side] = True
        if events & EV_EOF:
            self.eof[side] = True
        if events & EV_ERROR:
            self.errors[side] = core.error
        if events & EV_CLOSED:
            self.closed[side] = True

    def arrive(self, side: str, pkt: Packet) -> None:
        if side == "b" and (self.server is None or self.server.closed):
            if pkt.flags & SYN and not pkt.flags & ACK and self.listening:
                self.server = TcpCore.server(
                    "b", pkt, iss=5000, mss=self.mss, settings=self.settings, now=self.now
                )
                self.pump("b")
                return
            pkt.dst_host = "b"
            reset = pkt.reset_reply()
            if reset is not None:
                self._n += 1
                heapq.heappush(self._heap, (self.now + self.latency_ns, self._n, "a", reset))
            return
        core = self.core(side)
        core.receive(pkt, self.now)
        self.pump(side)

    def run(self, until_ns: int, *, max_steps: int = 200_000) -> None:
        for _ in range(max_steps):
            timers = []
            for side in ("a", "b"):
                core = self.client if side == "a" else self.server
                if core is not None and core.next_timer() >= 0:
                    timers.append((core.next_timer(), side))
            next_packet = self._heap[0][0] if self._heap else None
            next_timer = min(timers) if timers else None
            candidates = [t for t in (next_packet, next_timer and next_timer[0]) if t is not None]
            if not candidates or min(candidates) > until_ns:
                self.now = until_ns
                return
            if next_packet is not None and (next_timer is None or next_packet <= next_timer[0]):
                when, _, side, pkt = heapq.heappop(self._heap)
                self.now = when
                self.arrive(side, pkt)
            else:
                assert next_timer is not None
                self.now = next_timer[0]
                core = self.core(next_timer[1])
                core.handle_timer(self.now)
                self.pump(next_timer[1])
        raise AssertionError("the wire did not settle")

    def send(self, side: str, data: bytes) -> None:
        self.core(side).send(data)
        self.pump(side)


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def test_handshake_and_transfer_both_ways() -> None:
    pair = Pair()
    pair.run(10 * MS)
    assert pair.established == {"a": True, "b": True}
    up, down = payload(300_000, 1), payload(200_000, 2)
    pair.send("a", up)
    pair.send("b", down)
    pair.run(5 * S)
    assert bytes(pair.data["b"]) == up
    assert bytes(pair.data["a"]) == down
    assert pair.client.queued == 0
    # Segments never exceed the MSS.
    assert max(len(p.payload) for _, _, p in pair.log) == 1460


def test_first_syn_lost_is_retransmitted_after_initial_rto() -> None:
    lost: list[Packet] = []

    def fate(pkt: Packet) -> int | None:
        if pkt.flags == SYN and not lost:
            lost.append(pkt)
            return None
        return 0

    pair = Pair(fate=fate)
    pair.run(999 * MS)
    assert not pair.established["a"]
    pair.run(1100 * MS)
    assert pair.established == {"a": True, "b": True}


def test_loss_shows_as_delay_never_as_missing_bytes() -> None:
    rng = random.Random(7)
    pair = Pair(fate=lambda pkt: None if rng.random() < 0.1 else 0)
    pair.run(20 * MS)
    data = payload(200_000, 3)
    pair.send("a", data)
    pair.run(120 * S)
    assert bytes(pair.data["b"]) == data
    retransmitted = len({p.seq for _, side, p in pair.log if side == "a" and p.payload})
    sent = sum(1 for _, side, p in pair.log if side == "a" and p.payload)
    assert sent > retransmitted  # some segments went out twice


def test_reordering_and_duplication_keep_the_byte_stream_exact() -> None:
    rng = random.Random(11)
    copies: list[Packet] = []

    def fate(pkt: Packet) -> int | tuple[int, ...] | None:
        roll = rng.random()
        if roll < 0.2:
            return rng.randrange(5 * MS)
        if roll < 0.3:
            copies.append(pkt)
            return (0, rng.randrange(3 * MS))
        return 0

    pair = Pair(fate=fate)
    pair.run(20 * MS)
    data = payload(100_000, 4)
    pair.send("a", data)
    pair.run(30 * S)
    assert bytes(pair.data["b"]) == data
    assert len(copies) > 10


def test_lost_handshake_ack_is_recovered_by_data_or_by_the_repeated_syn_ack() -> None:
    def lose_the_first_pure_ack(dropped: list[Packet]) -> Callable[[Packet], int | None]:
        def fate(pkt: Packet) -> int | None:
            if pkt.flags == ACK and not pkt.payload and not dropped:
                dropped.append(pkt)
                return None
            return 0

        return fate

    for send_data in (True, False):
        dropped: list[Packet] = []
        pair = Pair(fate=lose_the_first_pure_ack(dropped))
        pair.run(5 * MS)
        assert pair.established == {"a": True, "b": False}
        if send_data:
            pair.send("a", b"hello")
        pair.run(3 * S)
        assert dropped
        assert pair.established == {"a": True, "b": True}
        assert bytes(pair.data["b"]) == (b"hello" if send_data else b"")


def test_refused_when_nobody_listens() -> None:
    pair = Pair(listening=False)
    pair.run(10 * MS)
    assert isinstance(pair.errors["a"], ConnectionRefusedError)
    assert pair.closed["a"]


def test_silent_peer_times_out_after_user_timeout() -> None:
    settings = TcpSettings(user_timeout=5.0)
    cut = {"on": False}
    pair = Pair(settings=settings, fate=lambda pkt: None if cut["on"] else 0)
    pair.run(10 * MS)
    cut["on"] = True
    pair.send("a", b"x" * 5000)
    start = pair.now
    pair.run(start + 4900 * MS)
    assert pair.errors["a"] is None
    pair.run(start + 5001 * MS)
    assert isinstance(pair.errors["a"], TimeoutError)
    # The silent side never notices anything (no keepalive).
    assert pair.errors["b"] is None
    assert not pair.closed["b"]


def test_unanswered_syn_times_out() -> None:
    pair = Pair(settings=TcpSettings(user_timeout=10.0), fate=lambda pkt: None)
    pair.run(9 * S)
    assert pair.errors["a"] is None
    pair.run(11 * S)
    assert isinstance(pair.errors["a"], TimeoutError)
    syns = [p for _, _, p in pair.log if p.flags == SYN]
    assert len(syns) == 4  # at 0, 1, 3 and 7 s (exponential backoff)


def test_slow_reader_closes_the_window_and_probes_reopen_it() -> None:
    pair = Pair(settings=TcpSettings(rcvbuf=16384))
    pair.run(10 * MS)
    pair.reading["b"] = False
    data = payload(100_000, 5)
    pair.send("a", data)
    pair.run(2 * S)
    server = pair.core("b")
    assert server.ready_len <= 16384
    assert server.rcv_window() == 0
    assert pair.client.queued >= 100_000 - 16384
    # The reader takes its data; the window update is lost, a probe recovers.
    pair.data["b"] += server.take()
    lose_next_ack = {"done": False}

    def fate(pkt: Packet) -> int | None:
        if not lose_next_ack["done"] and pkt.flags == ACK:
            lose_next_ack["done"] = True
            return None
        return 0

    pair.fate = fate
    pair.reading["b"] = True
    server.window_opened()
    pair.pump("b")
    pair.run(60 * S)
    assert bytes(pair.data["b"]) == data
    assert lose_next_ack["done"]


def test_half_close_then_close() -> None:
    pair = Pair()
    pair.run(10 * MS)
    pair.send("a", b"request")
    pair.client.shutdown_write()
    pair.pump("a")
    pair.run(100 * MS)
    assert bytes(pair.data["b"]) == b"request"
    assert pair.eof == {"a": False, "b": True}
    pair.send("b", b"response after eof")
    pair.core("b").close(pair.now)
    pair.pump("b")
    pair.run(500 * MS)
    assert bytes(pair.data["a"]) == b"response after eof"
    assert pair.eof["a"]
    assert pair.closed == {"a": True, "b": True}
    assert pair.errors == {"a": None, "b": None}
    fins = [p for _, _, p in pair.log if p.flags & FIN]
    assert len(fins) == 2


def test_abort_resets_the_peer() -> None:
    pair = Pair()
    pair.run(10 * MS)
    pair.client.abort()
    pair.pump("a")
    pair.run(100 * MS)
    assert isinstance(pair.errors["b"], ConnectionResetError)
    assert pair.errors["a"] is None
    assert pair.closed == {"a": True, "b": True}


def test_close_with_unread_data_resets() -> None:
    pair = Pair()
    pair.run(10 * MS)
    pair.reading["b"] = False
    pair.send("a", b"unread")
    pair.run(100 * MS)
    pair.core("b").close(pair.now)
    pair.pump("b")
    pair.run(200 * MS)
    assert isinstance(pair.errors["a"], ConnectionResetError)
    assert any(p.flags & RST for _, side, p in pair.log if side == "b")


def test_data_to_a_closed_socket_resets_the_sender() -> None:
    pair = Pair()
    pair.run(10 * MS)
    pair.core("b").close(pair.now)
    pair.pump("b")
    pair.run(20 * MS)
    assert pair.eof["a"]
    pair.send("a", b"anyone there?")
    pair.run(100 * MS)
    assert isinstance(pair.errors["a"], ConnectionResetError)


def test_rtt_estimate_sets_the_retransmission_timeout() -> None:
    pair = Pair(latency_ns=50 * MS)
    pair.run(200 * MS)
    for i in range(20):
        pair.send("a", b"ping %d" % i)
        pair.run(pair.now + 200 * MS)
    # srtt ~ one round trip (100 ms); the RTO is at least min_rto (200 ms).
    assert 90 * MS <= pair.client.rtt.srtt <= 150 * MS
    assert 200 * MS <= pair.client.rtt.rto <= 400 * MS


@pytest.mark.parametrize("seed", range(5))
def test_lossy_bidirectional_exchange_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    pair = Pair(fate=lambda pkt: None if rng.random() < 0.05 else rng.randrange(2 * MS))
    pair.run(5 * S)
    up, down = payload(50_000, seed), payload(60_000, seed + 100)
    pair.send("a", up)
    pair.send("b", down)
    pair.run(200 * S)
    assert bytes(pair.data["b"]) == up
    assert bytes(pair.data["a"]) == down


def test_receiver_reports_holes_as_sack_blocks() -> None:
    lost_seq: list[int] = []

    def fate(pkt: Packet) -> int | None:
        # lose the 2nd and the 5th data segment of the client, once each
        if pkt.payload and len(lost_seq) < 2:
            index = (pkt.seq - 1001) // 1460
            if index in (1, 4) and pkt.seq not in lost_seq:
                lost_seq.append(pkt.seq)
                return None
        return 0

    pair = Pair(fate=fate)
    pair.run(10 * MS)
    data = payload(10 * 1460, 7)
    pair.send("a", data)
    pair.run(pair.now + 1 * MS)  # the first flight arrived, the ACKs are on their way
    acks = [p for _, side, p in pair.log if side == "b" and p.sack]
    assert acks
    start = 1001 + 1460
    assert acks[-1].sack == ((start + 1460, start + 3 * 1460), (start + 4 * 1460, 1001 + 10 * 1460))
    pair.run(pair.now + 5 * S)
    assert bytes(pair.data["b"]) == data


def test_sack_recovery_resends_only_the_holes_without_a_timeout() -> None:
    rng = random.Random(3)
    pair = Pair(fate=lambda pkt: None if pkt.payload and rng.random() < 0.08 else 0)
    pair.run(10 * MS)
    data = payload(300_000, 8)
    pair.send("a", data)
    pair.run(pair.now + 30 * S)
    assert bytes(pair.data["b"]) == data
    sent = [p for _, side, p in pair.log if side == "a" and p.payload]
    distinct = {p.seq for p in sent}
    lost = len(sent) - len(distinct)
    # Retransmissions stay close to what was lost (no go-back-N flood)...
    assert lost < 0.2 * len(distinct)
    # ...and the transfer takes well under a second of 2 ms round trips.
    finished = max(t for t, side, p in pair.log if side == "b" and p.ack >= 1001 + len(data))
    assert finished < 1 * S


def test_early_retransmit_with_two_segments_in_flight() -> None:
    dropped: list[Packet] = []

    def fate(pkt: Packet) -> int | None:
        if pkt.payload and not dropped:
            dropped.append(pkt)
            return None
        return 0

    pair = Pair(fate=fate)
    pair.run(10 * MS)
    pair.send("a", payload(2 * 1460, 9))  # two segments; the first is lost
    pair.run(pair.now + 100 * MS)
    assert len(pair.data["b"]) == 2 * 1460
    # The SACK for the second segment triggers the retransmission one round trip
    # in, long before the tail loss probe (10 ms) or the RTO (200 ms).
    sends = [t for t, side, p in pair.log if side == "a" and p.seq == dropped[0].seq and p.payload]
    assert len(sends) == 2
    assert sends[1] - sends[0] == 2 * MS


def test_tail_loss_probe_resends_the_last_segment() -> None:
    dropped: list[Packet] = []

    def fate(pkt: Packet) -> int | None:
        if pkt.payload and not dropped:
            dropped.append(pkt)
            return None
        return 0

    pair = Pair(fate=fate)
    pair.run(10 * MS)
    start = pair.now
    pair.send("a", b"only segment")
    pair.run(start + 100 * MS)
    assert bytes(pair.data["b"]) == b"only segment"
    resent = [t for t, side, p in pair.log if side == "a" and p.payload == b"only segment"]
    # Two round trips (at least 10 ms) plus the peer's delayed-ACK time (40 ms).
    assert resent == [start, start + 50 * MS]
