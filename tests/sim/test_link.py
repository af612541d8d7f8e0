"""Links, sans-IO: latency distributions, jitter, faults, bandwidth and queues at explicit times."""

from __future__ import annotations

import random
import statistics

import pytest

from netweave.errors import UsageError
from netweave.sim import SeedTree
from netweave.sim._faults import RuleChain
from netweave.sim._link import (
    CORRUPTED,
    DROP_LOSS,
    DROP_QUEUE,
    DUPLICATED,
    REORDERED,
    ExponentialTail,
    Fixed,
    Link,
    LinkConfig,
    Normal,
    Uniform,
)

MS = 1_000_000


def make(config: LinkConfig, seed: int = 1) -> Link:
    return Link("a", "b", config, random.Random(seed), RuleChain())


def test_fixed_latency_draws_nothing() -> None:
    link = make(LinkConfig(latency=0.005))
    state = link.rng.getstate()
    assert link.plan(100, 1000) == (1000 + 5 * MS, 0, -1)
    assert link.rng.getstate() == state


@pytest.mark.parametrize(
    ("latency", "low", "high"),
    [
        (Uniform(0.001, 0.003), 1 * MS, 3 * MS),
        (Normal(0.010, 0.002, minimum=0.004), 4 * MS, 30 * MS),
        (ExponentialTail(0.002, 0.001, cap=0.050), 2 * MS, 50 * MS),
    ],
)
def test_random_latencies_stay_in_their_range(latency: object, low: int, high: int) -> None:
    link = make(LinkConfig(latency=latency))  # type: ignore[arg-type]
    delays = []
    for i in range(2000):
        now = i * 100 * MS  # far apart: FIFO never holds a packet back
        arrival, flags, _ = link.plan(100, now)
        assert flags == 0
        delays.append(arrival - now)
    assert min(delays) >= low
    assert max(delays) <= high
    assert len(set(delays)) > 1000


def test_distribution_means() -> None:
    rng = random.Random(3)
    normal = [Normal(0.010, 0.002).sample_ns(rng) for _ in range(5000)]
    assert statistics.mean(normal) == pytest.approx(10 * MS, rel=0.02)
    tail = [ExponentialTail(0.002, 0.003).sample_ns(rng) for _ in range(5000)]
    assert statistics.mean(tail) == pytest.approx(5 * MS, rel=0.05)
    assert Fixed(0.25).sample_ns(rng) == 250 * MS


def test_jitter_never_reorders() -> None:
    link = make(LinkConfig(latency=0.001, jitter=0.010))
    arrivals = [link.plan(100, i * 10_000)[0] for i in range(1000)]
    assert arrivals == sorted(arrivals)
    spread = [a - i * 10_000 - MS for i, a in enumerate(arrivals)]
    assert min(spread) >= 0
    assert max(spread) <= 12 * MS  # jitter plus waiting behind a slower packet


def test_reordered_packets_are_overtaken() -> None:
    link = make(LinkConfig(latency=0.001, reorder=0.2, reorder_delay=0.005))
    plans = [link.plan(100, i * 100_000) for i in range(500)]
    reordered = [i for i, (_, flags, _) in enumerate(plans) if flags & REORDERED]
    assert 60 < len(reordered) < 140
    assert link.stats.reordered == len(reordered)
    i = reordered[0]
    assert plans[i][0] > plans[i + 1][0]  # the next packet arrives first


def test_loss_rate_and_counters() -> None:
    link = make(LinkConfig(loss=0.1))
    outcomes = [link.plan(100, i * MS) for i in range(10_000)]
    lost = [o for o in outcomes if o[0] < 0]
    assert all(o[1] == DROP_LOSS for o in lost)
    assert 900 < len(lost) < 1100
    assert link.stats.lost == len(lost)
    assert link.stats.sent == 10_000


def test_fragments_each_risk_loss() -> None:
    single = make(LinkConfig(loss=0.1), seed=5)
    many = make(LinkConfig(loss=0.1), seed=5)
    lost_single = sum(single.plan(100, i * MS)[0] < 0 for i in range(5000))
    lost_many = sum(many.plan(100, i * MS, fragments=5)[0] < 0 for i in range(5000))
    # 1 - 0.9**5 = 41% of five-fragment datagrams are lost.
    assert lost_many / 5000 == pytest.approx(0.41, abs=0.03)
    assert lost_single / 5000 == pytest.approx(0.10, abs=0.02)


def test_duplicates_and_corruption() -> None:
    link = make(LinkConfig(duplicate=0.5, corrupt=0.25, jitter=0.001))
    plans = [link.plan(100, i * 10 * MS) for i in range(2000)]
    duplicated = [p for p in plans if p[1] & DUPLICATED]
    assert 850 < len(duplicated) < 1150
    assert all(dup >= arrival for arrival, _, dup in duplicated)
    assert all(p[2] == -1 for p in plans if not p[1] & DUPLICATED)
    corrupted = sum(1 for p in plans if p[1] & CORRUPTED)
    assert 400 < corrupted < 600


def test_bandwidth_serialises_back_to_back_packets() -> None:
    # 8 Mbit/s: 1000 bytes take exactly 1 ms to send.
    link = make(LinkConfig(latency=0.002, bandwidth=8_000_000, queue_limit=10_000))
    arrivals = [link.plan(1000, 0)[0] for _ in range(3)]
    assert arrivals == [3 * MS, 4 * MS, 5 * MS]
    # Later, when the line is idle again, no waiting.
    assert link.plan(1000, 100 * MS)[0] == 103 * MS


def test_queue_limit_drops_at_the_tail() -> None:
    link = make(LinkConfig(latency=0.0, bandwidth=8_000_000, queue_limit=3000))
    results = [link.plan(1000, 0) for _ in range(5)]
    assert [r[0] for r in results[:3]] == [1 * MS, 2 * MS, 3 * MS]
    assert results[3] == (-1, DROP_QUEUE, -1)
    assert results[4] == (-1, DROP_QUEUE, -1)
    assert link.stats.queue_dropped == 2
    # Once a packet has left, there is room for one more.
    assert link.plan(1000, 1 * MS)[0] == 4 * MS


def test_rule_effects_are_forced_and_delays_let_others_overtake() -> None:
    link = make(LinkConfig(latency=0.001))
    delayed = link.plan(100, 0, extra_ns=5 * MS)
    after = link.plan(100, 1000)
    assert delayed[0] == 6 * MS
    assert after[0] == MS + 1000
    forced = link.plan(100, 2000, force=DUPLICATED | CORRUPTED)
    assert forced[1] == DUPLICATED | CORRUPTED
    assert forced[2] == forced[0]


def test_same_stream_same_fate() -> None:
    config = LinkConfig(latency=Uniform(0.001, 0.01), loss=0.2, duplicate=0.1, reorder=0.1)
    first = make(config, seed=42)
    second = make(config, seed=42)
    assert [first.plan(100, i * MS) for i in range(500)] == [
        second.plan(100, i * MS) for i in range(500)
    ]


def test_link_streams_are_independent_of_other_streams() -> None:
    config = LinkConfig(latency=Uniform(0.001, 0.01), loss=0.2)
    alone = SeedTree(7)
    crowded = SeedTree(7)
    for name in ("link:c->d", "host:c", "link:b->a"):
        crowded.stream(name).random()  # other links and hosts draw first
    a = Link("a", "b", config, alone.stream("link:a->b"), RuleChain())
    b = Link("a", "b", config, crowded.stream("link:a->b"), RuleChain())
    assert [a.plan(100, i * MS) for i in range(200)] == [b.plan(100, i * MS) for i in range(200)]


def test_reconfiguring_takes_effect_for_the_next_packet() -> None:
    link = make(LinkConfig(latency=0.001))
    assert link.plan(100, 0)[0] == MS
    link.config = LinkConfig(latency=0.01)
    assert link.plan(100, 10 * MS)[0] == 20 * MS


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": 1.5},
        {"duplicate": -0.1},
        {"mtu": 20},
        {"bandwidth": 0},
        {"queue_limit": -1},
        {"jitter": -1.0},
        {"latency": -0.001},
        {"latency": float("nan")},
    ],
)
def test_bad_settings_are_usage_errors(settings: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        LinkConfig(**settings)  # type: ignore[arg-type]


def test_bad_distributions_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        Uniform(0.01, 0.001)
    with pytest.raises(UsageError):
        ExponentialTail(0.01, 0.001, cap=0.001)
    with pytest.raises(UsageError):
        Normal(0.01, -1.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"jitter": 0.001},
        {"loss": 0.01},
        {"duplicate": 0.01},
        {"reorder": 0.01},
        {"corrupt": 0.01},
        {"bandwidth": 1e6},
        {"latency": Uniform(0.001, 0.002)},
    ],
)
def test_only_a_link_that_draws_nothing_and_limits_nothing_is_clean(
    settings: dict[str, object],
) -> None:
    link = make(LinkConfig(latency=0.004, mtu=1400))
    assert link.clean_ns == 4 * MS
    assert link.mtu == 1400
    link.config = LinkConfig(**settings)  # type: ignore[arg-type]
    assert link.clean_ns == -1
    assert link.mtu == 1500
    link.config = LinkConfig(latency=0.002)
    assert link.clean_ns == 2 * MS


def test_a_clean_link_plans_in_order_after_the_fixed_delay() -> None:
    """What a sender may compute itself for a clean link: ``max(now + clean_ns, last)``."""
    link = make(LinkConfig(latency=0.003))
    for now in (0, MS, 2 * MS, 10 * MS):
        expected = max(now + link.clean_ns, link.last_arrival)
        assert link.plan(100, now) == (expected, 0, -1)
        assert link.last_arrival == expected
