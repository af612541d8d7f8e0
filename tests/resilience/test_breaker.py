from __future__ import annotations

import asyncio

import pytest

from netweave.errors import CircuitOpen, ConnectionBroken, RemoteError, UsageError
from netweave.observe import RecordingObserver
from netweave.resilience import BreakerState, BreakerStateChanged, CircuitBreaker


def transitions(observer: RecordingObserver) -> list[tuple[str, str]]:
    return [(e.previous, e.state) for e in observer.of_type(BreakerStateChanged)]


def test_table_closed_open_half_open_closed() -> None:
    observer = RecordingObserver()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10.0, observer=observer)
    for t in (0.0, 1.0):
        assert breaker.try_acquire(t)
        breaker.record_failure(t)
    assert breaker.state(1.0) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2
    breaker.record_success(1.5)  # a success resets the count
    assert breaker.consecutive_failures == 0
    for t in (2.0, 3.0, 4.0):
        assert breaker.try_acquire(t)
        breaker.record_failure(t)
    assert breaker.state(4.0) is BreakerState.OPEN
    assert not breaker.try_acquire(5.0)
    assert breaker.retry_after(5.0) == pytest.approx(9.0)
    # After reset_timeout: half-open, exactly one probe.
    assert breaker.try_acquire(14.0)
    assert breaker.state(14.0) is BreakerState.HALF_OPEN
    assert not breaker.try_acquire(14.1)
    breaker.record_success(14.2)
    assert breaker.state(14.2) is BreakerState.CLOSED
    assert transitions(observer) == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


def test_failed_probe_reopens_and_restarts_the_timer() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5.0)
    assert breaker.try_acquire(0.0)
    breaker.record_failure(0.0)
    assert breaker.try_acquire(5.0)  # the probe
    breaker.record_failure(6.0)
    assert breaker.state(6.0) is BreakerState.OPEN
    assert not breaker.try_acquire(10.9)
    assert breaker.try_acquire(11.0)


def test_abandoned_probe_frees_the_slot() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5.0)
    breaker.try_acquire(0.0)
    breaker.record_failure(0.0)
    assert breaker.try_acquire(5.0)
    assert not breaker.try_acquire(5.0)
    breaker.record_abandoned()
    assert breaker.try_acquire(5.1)


def test_bad_configuration() -> None:
    with pytest.raises(UsageError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(UsageError):
        CircuitBreaker(reset_timeout=0)


async def test_call_wrapper_counts_only_the_peers_faults() -> None:
    loop = asyncio.get_running_loop()
    observer = RecordingObserver()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=3.0, observer=observer)

    async def broken() -> None:
        raise ConnectionBroken("reset")

    async def app_error() -> None:
        raise RemoteError("not found", code=1001)

    async def fine() -> str:
        return "ok"

    with pytest.raises(RemoteError):
        await breaker.call(app_error)
    assert breaker.consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(ConnectionBroken):
            await breaker.call(broken)
    with pytest.raises(CircuitOpen) as info:
        await breaker.call(fine)
    assert info.value.retry_after == pytest.approx(3.0)
    await asyncio.sleep(3.0)
    # The probe runs; a concurrent call fails fast while it is out.
    gate = asyncio.Event()

    async def slow_fine() -> str:
        await gate.wait()
        return "probe ok"

    probe = asyncio.create_task(breaker.call(slow_fine))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen):
        await breaker.call(fine)
    gate.set()
    assert await probe == "probe ok"
    assert breaker.state(loop.time()) is BreakerState.CLOSED
    assert await breaker.call(fine) == "ok"
    assert transitions(observer) == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


async def test_cancelled_probe_does_not_wedge_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1.0)

    async def broken() -> None:
        raise ConnectionBroken("reset")

    async def hang() -> None:
        await asyncio.sleep(100)

    async def fine() -> str:
        return "ok"

    with pytest.raises(ConnectionBroken):
        await breaker.call(broken)
    await asyncio.sleep(1.0)
    probe = asyncio.create_task(breaker.call(hang))
    await asyncio.sleep(0.1)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(fine) == "ok"
