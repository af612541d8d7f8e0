"""The SACK scoreboard and the receiver's SACK blocks, sans-IO."""

from __future__ import annotations

from netweave.sim._tcp_receive import (
    FILLED,
    FIN,
    IN_ORDER,
    NOTHING_NEW,
    OUT_OF_ORDER,
    ReceiveBuffer,
)
from netweave.sim._tcp_sack import Scoreboard


def test_scoreboard_merges_clips_and_advances() -> None:
    board = Scoreboard()
    assert board.add([(150, 200), (300, 400)], una=100, limit=1000) == 150
    assert board.add([(190, 260)], una=100, limit=1000) == 60
    assert board.blocks == [(150, 260), (300, 400)]
    assert board.add([(50, 120), (900, 2000)], una=100, limit=1000) == 120  # clipped to (100, 1000]
    assert board.blocks == [(100, 120), (150, 260), (300, 400), (900, 1000)]
    assert board.add([(150, 260)], una=100, limit=1000) == 0  # nothing new
    board.advance(200)
    assert board.blocks == [(200, 260), (300, 400), (900, 1000)]
    assert board.sacked == 60 + 100 + 100
    board.clear()
    assert (board.blocks, board.sacked) == ([], 0)


def test_scoreboard_holes_below_the_highest_sack() -> None:
    board = Scoreboard()
    board.add([(3000, 4000), (5000, 6000)], una=1000, limit=9000)
    assert board.next_hole(1000, 1460) == (1000, 1460)
    assert board.next_hole(2460, 1460) == (2460, 540)
    assert board.next_hole(3000, 1460) == (4000, 1000)
    assert board.next_hole(6000, 1460) is None  # above the highest SACK: not known lost


def test_receive_buffer_outcomes_and_blocks() -> None:
    buffer = ReceiveBuffer(10_000)
    buffer.nxt = 100
    assert buffer.add(110, b"b" * 10, False) == OUT_OF_ORDER
    assert buffer.add(130, b"d" * 10, True) == OUT_OF_ORDER
    assert buffer.sack_blocks() == ((110, 120), (130, 140))
    assert buffer.holding
    assert buffer.add(90, b"z" * 10, False) == NOTHING_NEW  # old
    assert buffer.add(100, b"a" * 10, False) == FILLED
    assert buffer.add(100, b"a" * 15, False) == NOTHING_NEW  # overlap inside what arrived
    assert buffer.add(120, b"c" * 10, False) == FIN  # the FIN seen earlier is reached
    assert buffer.take() == b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10
    assert buffer.nxt == 141
    assert buffer.fin_received
    assert buffer.add(141, b"late", False) == NOTHING_NEW


def test_receive_buffer_respects_the_window() -> None:
    buffer = ReceiveBuffer(100)
    buffer.nxt = 0
    assert buffer.add(0, b"x" * 80, False) == IN_ORDER
    assert buffer.window(mss=50) == 0  # 20 free: under an MSS and under half the buffer
    assert buffer.add(80, b"y" * 50, True) == IN_ORDER  # trimmed to the 20 that fit, FIN dropped
    assert buffer.ready_len == 100
    assert not buffer.fin_received
    assert buffer.add(100, b"z", False) == NOTHING_NEW  # zero window
    buffer.take()
    assert buffer.window(mss=50) == 100
