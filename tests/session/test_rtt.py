"""RTO estimation against RFC 6298's formulas, and Karn's rule at the sender."""

from __future__ import annotations

import pytest

from netweave.errors import UsageError
from netweave.observe import RecordingObserver
from netweave.session import ArqConfig, ArqConnection, RttEstimator, RttSampled


def test_before_any_sample_the_rto_is_the_initial_one() -> None:
    rtt = RttEstimator(initial_rto=1.0)
    assert rtt.rto == 1.0
    assert rtt.srtt is None
    assert rtt.smoothed() == 1.0


def test_first_sample_rule_2_2() -> None:
    rtt = RttEstimator(min_rto=0.001, granularity=0.001)
    rtt.on_sample(0.1)
    assert rtt.srtt == 0.1
    assert rtt.rttvar == 0.05
    assert rtt.rto == pytest.approx(0.1 + 4 * 0.05)


def test_later_samples_rule_2_3() -> None:
    rtt = RttEstimator(min_rto=0.001, granularity=0.001)
    srtt, rttvar = 0.1, 0.05
    rtt.on_sample(0.1)
    for sample in (0.2, 0.05, 0.3, 0.1, 0.1, 0.1):
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - sample)  # RTTVAR first, with the old SRTT
        srtt = 0.875 * srtt + 0.125 * sample
        rtt.on_sample(sample)
        assert rtt.rttvar == pytest.approx(rttvar)
        assert rtt.srtt == pytest.approx(srtt)
        assert rtt.rto == pytest.approx(srtt + max(0.001, 4 * rttvar))


def test_granularity_floor_and_rto_bounds() -> None:
    steady = RttEstimator(min_rto=0.001, granularity=0.01)
    for _ in range(100):
        steady.on_sample(0.05)
    # RTTVAR decays toward 0, so the clock granularity G is the floor of the variance term.
    assert steady.rto == pytest.approx(0.05 + 0.01, rel=1e-3)
    clamped = RttEstimator(min_rto=1.0, max_rto=60.0)
    clamped.on_sample(0.01)
    assert clamped.rto == 1.0  # rule 2.4: raised to the minimum
    clamped.on_sample(100.0)
    assert clamped.rto == 60.0  # rule 2.5: capped at the maximum


def test_backoff_doubles_until_a_new_sample() -> None:
    rtt = RttEstimator(min_rto=0.2, max_rto=5.0)
    rtt.on_sample(0.05)
    assert rtt.rto == 0.2
    rtt.backoff()
    assert rtt.rto == 0.4
    for _ in range(10):
        rtt.backoff()
    assert rtt.rto == 5.0
    rtt.on_sample(0.05)  # a valid sample recomputes RTO from SRTT/RTTVAR
    assert rtt.rto == 0.2


def test_bad_bounds() -> None:
    with pytest.raises(UsageError):
        RttEstimator(min_rto=2.0, initial_rto=1.0)


def test_karn_no_sample_from_a_retransmitted_segment() -> None:
    observer = RecordingObserver()
    config = ArqConfig(initial_rto=1.0, min_rto=0.2)
    a, b = ArqConnection(config, observer=observer), ArqConnection(config)
    a.send(b"one")
    first = a.datagrams_to_send(0.0)
    assert len(first) == 1
    # The datagram is lost; the RTO (1 s) fires and the segment goes again.
    assert a.get_timer() == pytest.approx(1.0)
    a.handle_timer(1.0)
    again = a.datagrams_to_send(1.0)
    assert len(again) == 1
    assert a.rto == 2.0  # backed off
    # The retransmission arrives; its ACK comes back 0.05 s later.
    b.receive_datagram(again[0], 1.02)
    for datagram in b.datagrams_to_send(1.02):
        a.receive_datagram(datagram, 1.05)
    assert a.all_acknowledged
    assert observer.of_type(RttSampled) == []  # Karn: the ACK could be for either transmission
    assert a.rtt is None
    assert a.rto == 2.0  # the backed-off RTO stays until a valid sample
    # A fresh segment gives a valid sample, and RTO is recomputed from it.
    a.send(b"two")
    [datagram] = a.datagrams_to_send(2.0)
    b.receive_datagram(datagram, 2.02)
    for datagram in b.datagrams_to_send(2.02):
        a.receive_datagram(datagram, 2.04)
    [event] = observer.of_type(RttSampled)
    assert event.rtt == pytest.approx(0.04)
    assert a.rtt == pytest.approx(0.04)
    assert a.rto == 0.2
