"""DeterminismPatch: clocks and randomness served by the simulation, then restored."""

from __future__ import annotations

import asyncio
import contextvars
import os
import random  # determinism: ok (the functions under test)
import secrets
import time  # determinism: ok (the functions under test)
import uuid
from typing import Any

import pytest

from netweave.errors import UsageError
from netweave.sim import DeterminismPatch, SeedTree, SimLoop, current_host

REAL = {
    "random": random.random,
    "choice": random.choice,
    "seed": random.seed,
    "urandom": os.urandom,
    "time": time.time,
    "monotonic": time.monotonic,
    "perf_counter": time.perf_counter,
    "sleep": time.sleep,
}


def assert_restored() -> None:
    assert random.random is REAL["random"]
    assert random.choice is REAL["choice"]
    assert random.seed is REAL["seed"]
    assert os.urandom is REAL["urandom"]
    assert time.time is REAL["time"]
    assert time.monotonic is REAL["monotonic"]
    assert time.perf_counter is REAL["perf_counter"]
    assert time.sleep is REAL["sleep"]


def draws() -> dict[str, Any]:
    """One of everything the patch serves."""
    return {
        "random": random.random(),
        "randint": random.randint(0, 10**9),
        "choice": random.choice("abcdefghij"),
        "shuffle": random.sample(range(20), 20),
        "urandom": os.urandom(8),
        "token": secrets.token_hex(8),
        "below": secrets.randbelow(10**9),
        "system": random.SystemRandom().random(),
        "uuid": uuid.uuid4(),
    }


def patch_for(seed: int, loop: SimLoop | None = None, **kwargs: Any) -> DeterminismPatch:
    return DeterminismPatch(loop=loop or SimLoop(), seeds=SeedTree(seed), **kwargs)


def test_the_same_seed_gives_the_same_values() -> None:
    with patch_for(1):
        first = draws()
    with patch_for(1):
        second = draws()
    with patch_for(2):
        other = draws()
    assert first == second
    for key in first:
        assert first[key] != other[key], key
    assert_restored()


def test_random_seed_is_harmless() -> None:
    with patch_for(3):
        random.seed()  # would reseed from the OS: ignored
        a = random.random()
    with patch_for(3):
        b = random.random()
        random.seed(42)
        c = random.random()
    assert a == b
    assert c == random.Random(42).random()
    assert_restored()


def test_each_host_draws_from_its_own_stream() -> None:
    def in_host(name: str | None) -> list[float]:
        ctx = contextvars.copy_context()
        ctx.run(current_host.set, name)
        return ctx.run(lambda: [random.random() for _ in range(3)])

    with patch_for(4):
        a_alone = in_host("a")
    with patch_for(4):
        b_first = in_host("b")  # another host drawing first changes nothing for "a"
        a_after = in_host("a")
        driver = in_host(None)
    assert a_alone == a_after
    assert len({tuple(a_alone), tuple(b_first), tuple(driver)}) == 3


def test_clocks_follow_virtual_time_and_the_host_clock() -> None:
    loop = SimLoop()
    skews = {"fast": 5_000_000_000}

    def wall_clock(host: str | None, now_ns: int) -> int:
        return now_ns + skews.get(host or "", 0)

    async def main() -> dict[str, float]:
        await asyncio.sleep(90)
        ctx = contextvars.copy_context()
        ctx.run(current_host.set, "fast")
        return {
            "time": time.time(),
            "time_ns": time.time_ns(),
            "monotonic": time.monotonic(),
            "perf": time.perf_counter(),
            "mono_ns": time.monotonic_ns(),
            "fast": ctx.run(time.time),
        }

    with patch_for(0, loop, wall_clock=wall_clock, epoch=1_000_000):
        got = loop.run_until_complete(main())
    assert got == {
        "time": 1_000_090.0,
        "time_ns": 1_000_090_000_000_000,
        "monotonic": 90.0,
        "perf": 90.0,
        "mono_ns": 90_000_000_000,
        "fast": 1_000_095.0,
    }
    loop.close()
    assert_restored()


def test_time_sleep_is_refused_inside_the_running_simulation() -> None:
    loop = SimLoop()

    async def main() -> None:
        time.sleep(0.5)  # noqa: ASYNC251  (the mistake under test)

    with patch_for(0, loop), pytest.raises(UsageError, match=r"await asyncio\.sleep\(0\.5\)"):
        loop.run_until_complete(main())
    assert_restored()
    loop.close()


def test_everything_is_restored_after_an_error() -> None:
    def fail_inside() -> None:
        with patch_for(0):
            assert random.random is not REAL["random"]
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fail_inside()
    assert_restored()


def test_patches_nest_and_the_innermost_serves() -> None:
    outer, inner = patch_for(10), patch_for(11)
    with patch_for(11):
        expected_inner = random.random()
    with patch_for(10):
        expected_outer = [random.random(), random.random()]
    with outer:
        first = random.random()
        with inner:
            assert inner.active
            assert random.random() == expected_inner
        assert not inner.active
        assert random.random is not REAL["random"]
        assert [first, random.random()] == expected_outer
    assert not outer.active
    assert_restored()


def test_seed_tree_streams_are_independent_and_stable() -> None:
    tree = SeedTree(7)
    alone = [tree.stream("link:a->b").random() for _ in range(5)]

    crowded = SeedTree(7)
    crowded.stream("host:c").random()  # other streams drawn first, and created after
    first = crowded.stream("link:a->b").random()
    crowded.stream("link:b->a").random()
    rest = [crowded.stream("link:a->b").random() for _ in range(4)]
    assert [first, *rest] == alone

    assert SeedTree(8).stream("link:a->b").random() != alone[0]
    assert tree.stream("link:a->b") is tree.stream("link:a->b")
    assert tree.child("h").derive("x") == SeedTree(7).child("h").derive("x")
    assert tree.child("h").derive("x") != tree.derive("x")
    # A golden value: blake2b-derived, so identical on every platform and process.
    assert SeedTree(0).derive("link:a->b") == 14114918488856204910
    with pytest.raises(TypeError):
        SeedTree(True)
