"""Fault rule chains, sans-IO: order, verdicts, matching, limits, draws and scopes."""

from __future__ import annotations

import random

import pytest

from netweave.errors import UsageError
from netweave.sim._faults import (
    CORRUPT,
    DROP,
    DUPLICATE,
    PASS,
    REORDER,
    Match,
    Rule,
    RuleChain,
    Verdict,
)
from netweave.sim._link import CORRUPTED, DUPLICATED, REORDERED
from netweave.sim._packet import ACK, SYN, TCP, UDP, Packet

MS = 1_000_000


def udp(payload: bytes = b"data", *, src_port: int = 1000, dst_port: int = 2000) -> Packet:
    packet = Packet(UDP, "a", "10.0.0.1", src_port, "10.0.0.2", dst_port, payload)
    packet.dst_host = "b"
    return packet


def tcp(flags: int) -> Packet:
    packet = Packet(TCP, "a", "10.0.0.1", 1000, "10.0.0.2", 80, flags=flags)
    packet.dst_host = "b"
    return packet


def test_empty_chain_passes_untouched() -> None:
    assert RuleChain().evaluate(udp(), random.Random(0)) == (0, 0)


def test_drop_stops_the_chain() -> None:
    later = Rule.delay(0.5)
    chain = RuleChain()
    chain.install(Rule.drop(), later)
    assert chain.evaluate(udp(), random.Random(0)) == (-1, 0)
    assert later.hits == 0


def test_pass_accepts_and_skips_the_rest() -> None:
    chain = RuleChain()
    chain.install(Rule.accept(match=Match(flags=SYN)), Rule.drop())
    assert chain.evaluate(tcp(SYN), random.Random(0)) == (0, 0)
    assert chain.evaluate(tcp(ACK), random.Random(0)) == (-1, 0)


def test_delays_add_up_and_marks_combine() -> None:
    chain = RuleChain()
    chain.install(Rule.delay(0.002), Rule.duplicate(), Rule.delay(0.003), Rule.corrupt())
    chain.install(Rule.reorder())
    assert chain.evaluate(udp(), random.Random(0)) == (5 * MS, DUPLICATED | CORRUPTED | REORDERED)


def test_match_fields() -> None:
    packet = udp(b"hello world", src_port=1, dst_port=2)
    assert Match(proto="udp", src_host="a", dst_host="b", src_port=1, dst_port=2)(packet)
    assert Match(contains=b"world")(packet)
    assert Match(where=lambda p: len(p.payload) == 11)(packet)
    assert not Match(proto="tcp")(packet)
    assert not Match(dst_port=3)(packet)
    assert not Match(flags=SYN)(packet)  # flags only match TCP
    assert Match(flags=SYN)(tcp(SYN | ACK))
    assert not Match(flags=SYN | ACK)(tcp(SYN))
    with pytest.raises(UsageError):
        Match(proto="sctp")  # type: ignore[arg-type]


def test_times_limits_the_rule() -> None:
    rule = Rule.drop(times=2)
    chain = RuleChain()
    chain.install(rule)
    rng = random.Random(0)
    results = [chain.evaluate(udp(), rng)[0] for _ in range(4)]
    assert results == [-1, -1, 0, 0]
    assert rule.hits == 2


def test_probability_draws_once_per_matching_packet_only() -> None:
    rule = Rule.drop(0.5, match=Match(dst_port=2000))
    chain = RuleChain()
    chain.install(rule)
    rng = random.Random(4)
    reference = random.Random(4)
    for _ in range(20):
        chain.evaluate(udp(dst_port=9999), rng)  # not matched: no draw
    assert rng.getstate() == reference.getstate()
    dropped = sum(chain.evaluate(udp(), rng)[0] < 0 for _ in range(1000))
    assert 430 < dropped < 570
    assert rule.hits == dropped
    for _ in range(1000):
        reference.random()
    assert rng.getstate() == reference.getstate()


def test_install_scope_removes_the_rules_on_exit_even_after_an_error() -> None:
    chain = RuleChain()
    keep = Rule.delay(0.001)
    chain.install(keep)
    sizes: list[int] = []

    def fail_inside_the_scope() -> None:
        with chain.install(Rule.drop(), Rule.duplicate()):
            sizes.append(len(chain))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_inside_the_scope()
    assert sizes == [3]
    assert list(chain) == [keep]
    handle = chain.install(Rule.drop(), first=True)
    assert chain.evaluate(udp(), random.Random(0)) == (-1, 0)
    handle.remove()
    handle.remove()  # idempotent
    assert list(chain) == [keep]


def test_custom_rules_are_plain_callables() -> None:
    seen: list[int] = []

    def every_third(packet: Packet, rng: random.Random) -> Verdict | None:
        seen.append(packet.dst_port)
        return DROP if len(seen) % 3 == 0 else None

    chain = RuleChain()
    chain.install(every_third)
    outcomes = [chain.evaluate(udp(), random.Random(0))[0] for _ in range(6)]
    assert outcomes == [0, 0, -1, 0, 0, -1]
    with pytest.raises(UsageError):
        chain.install("not a rule")  # type: ignore[arg-type]


def test_verdict_constants_and_bad_arguments() -> None:
    assert Verdict.delay(0.25).delay_ns == 250 * MS
    assert DUPLICATE.mark == DUPLICATED
    assert CORRUPT.mark == CORRUPTED
    assert REORDER.mark == REORDERED
    assert PASS != DROP
    with pytest.raises(UsageError):
        Verdict.delay(-1)
    with pytest.raises(UsageError):
        Rule.drop(1.5)
    with pytest.raises(UsageError):
        Rule.drop(times=-1)
