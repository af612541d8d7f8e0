"""RPC over mem:// on a virtual-time loop: calls, errors, deadlines, cancellation, streams,
admission control."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import netweave
from netweave.errors import (
    CallCancelled,
    ClosedResourceError,
    ConnectionBroken,
    DeadlineExceeded,
    MethodNotFound,
    Overloaded,
    RemoteError,
    UsageError,
)
from netweave.observe import RecordingObserver
from netweave.resilience import Deadline, remaining_time
from netweave.session import CallContext, CallFinished, InFlightChanged, RpcClient, RpcServer
from netweave.session._rpc_wire import (
    ErrorFrame,
    Hello,
    Request,
    Response,
    decode_frame,
    encode_frame,
)

from .rpc_helpers import client_of, served


def echo_server(**options: Any) -> RpcServer:
    rpc = RpcServer(**options)

    @rpc.method()
    async def echo(request: bytes) -> bytes:
        return request

    @rpc.method("sleep")
    async def sleep(request: bytes, ctx: CallContext) -> bytes:
        await asyncio.sleep(float(request))
        return b"slept"

    return rpc


async def test_unary_calls_and_many_concurrent_callers_get_their_own_answers() -> None:
    rng = random.Random(4)
    rpc = RpcServer()

    @rpc.method()
    async def double(request: bytes) -> bytes:
        await asyncio.sleep(rng.uniform(0, 0.5))
        return str(int(request) * 2).encode()

    async with served(rpc) as server, client_of(server) as client:
        assert await client.call("double", b"21") == b"42"
        results = await asyncio.gather(*(client.call("double", b"%d" % i) for i in range(500)))
        assert results == [b"%d" % (2 * i) for i in range(500)]
        assert client.in_flight == 0
        assert client.server_max_in_flight == 64


async def test_json_codec_carries_objects() -> None:
    rpc = RpcServer(codec="json")

    @rpc.method()
    async def add(request: dict[str, int]) -> dict[str, int]:
        return {"sum": request["a"] + request["b"]}

    async with served(rpc) as server, client_of(server, codec="json") as client:
        assert await client.call("add", {"a": 2, "b": 3}) == {"sum": 5}


async def test_unknown_method_and_handler_errors_are_typed() -> None:
    rpc = echo_server()

    @rpc.method()
    async def boom(request: bytes) -> bytes:
        raise ValueError("bad value: " + request.decode())

    @rpc.method()
    async def teapot(request: bytes) -> bytes:
        raise RemoteError("I am a teapot", code=1418, remote_type="Teapot")

    async with served(rpc) as server, client_of(server) as client:
        with pytest.raises(MethodNotFound, match="echo") as missing:
            await client.call("nope")
        assert missing.value.code == 2
        with pytest.raises(RemoteError) as info:
            await client.call("boom", b"x")
        assert (info.value.code, info.value.remote_type, info.value.detail) == (
            1,
            "ValueError",
            "bad value: x",
        )
        assert info.value.method == "boom"
        with pytest.raises(RemoteError) as custom:
            await client.call("teapot")
        assert (custom.value.code, custom.value.remote_type) == (1418, "Teapot")
        assert await client.call("echo", b"still fine") == b"still fine"


async def test_errors_can_be_hidden() -> None:
    rpc = RpcServer(expose_errors=False)

    @rpc.method()
    async def leak(request: bytes) -> bytes:
        raise RuntimeError("password=hunter2")

    async with served(rpc) as server, client_of(server) as client:
        with pytest.raises(RemoteError, match="internal error") as info:
            await client.call("leak")
        assert "hunter2" not in str(info.value)


async def test_deadline_travels_and_cuts_both_sides() -> None:
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {}
    rpc = RpcServer()

    @rpc.method()
    async def slow(request: bytes, ctx: CallContext) -> bytes:
        seen["remaining"] = ctx.remaining()
        seen["contextvar"] = remaining_time()
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            seen["cancelled_at"] = loop.time()
            raise
        return b"too late"

    async with served(rpc) as server, client_of(server) as client:
        start = loop.time()
        with pytest.raises(DeadlineExceeded):
            await client.call("slow", timeout=1.5)
        assert loop.time() - start == pytest.approx(1.5)
        await asyncio.sleep(0.1)
        assert seen["remaining"] == pytest.approx(1.5, abs=0.01)
        assert seen["contextvar"] == pytest.approx(1.5, abs=0.01)
        assert seen["cancelled_at"] - start <= 1.5 + 1e-6  # the handler never outlives it


async def test_server_reports_its_own_deadline_expiry() -> None:
    rpc = RpcServer()

    @rpc.method()
    async def stubborn(request: bytes) -> bytes:
        await asyncio.sleep(10.0)
        return b""

    async with served(rpc) as server, client_of(server) as client:
        # The client waits a little longer than the deadline it sends, so the
        # server's cut arrives first: handlers are cancelled by their deadline.
        call = asyncio.create_task(client.call("stubborn", timeout=1.0))
        with pytest.raises(DeadlineExceeded) as info:
            await call
        assert isinstance(info.value, DeadlineExceeded)


async def test_current_deadline_flows_into_calls_and_nested_calls() -> None:
    loop = asyncio.get_running_loop()
    inner_seen: list[float | None] = []
    backend = RpcServer()

    @backend.method()
    async def leaf(request: bytes, ctx: CallContext) -> bytes:
        inner_seen.append(ctx.remaining())
        return b"leaf"

    async with served(backend) as backend_server, client_of(backend_server) as to_backend:
        front = RpcServer()

        @front.method()
        async def relay(request: bytes) -> bytes:
            await asyncio.sleep(0.5)
            return await to_backend.call("leaf")  # no timeout given: the deadline flows

        async with served(front) as front_server, client_of(front_server) as client:
            start = loop.time()
            async with Deadline.after(3.0):
                assert await client.call("relay") == b"leaf"
            assert loop.time() - start == pytest.approx(0.5)
    assert inner_seen == [pytest.approx(2.5, abs=0.01)]


async def test_expired_deadline_sends_nothing() -> None:
    rpc = echo_server()
    async with served(rpc) as server, client_of(server) as client, Deadline.after(1.0):
        await asyncio.sleep(0.999)
        with pytest.raises(DeadlineExceeded, match="not sent"):
            await client.call("echo", b"x", timeout=0.0)


async def test_caller_cancellation_cancels_the_handler() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    rpc = RpcServer()

    @rpc.method()
    async def wait(request: bytes) -> bytes:
        started.set()
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    async with served(rpc) as server, client_of(server) as client:
        call = asyncio.create_task(client.call("wait"))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(1.0):
            await cancelled.wait()
        assert rpc.in_flight == 0


async def test_server_cancellation_reaches_the_caller() -> None:
    started = asyncio.Event()
    rpc = RpcServer()

    @rpc.method()
    async def forever(request: bytes) -> bytes:
        started.set()
        await asyncio.sleep(1000)
        return b""

    async with served(rpc) as server:
        client = await RpcClient.connect(server.url)
        call = asyncio.create_task(client.call("forever"))
        await started.wait()
        await server.close()
        with pytest.raises((CallCancelled, ConnectionBroken)):
            await call
        await client.close()


async def test_streaming_response_with_flow_control() -> None:
    produced: list[int] = []
    finished = asyncio.Event()
    rpc = RpcServer()

    @rpc.method()
    async def count(request: bytes) -> Any:
        try:
            for i in range(int(request)):
                produced.append(i)
                yield b"%d" % i
        finally:
            finished.set()

    async with served(rpc) as server, client_of(server, stream_window=4) as client:
        got = [item async for item in client.stream("count", b"50")]
        assert got == [b"%d" % i for i in range(50)]
        # Early exit: the server stops producing (credit) and is cancelled.
        finished.clear()
        produced.clear()
        async with client.stream("count", b"1000") as items:
            async for item in items:
                if item == b"2":
                    break
            await asyncio.sleep(0.5)
            assert len(produced) <= 3 + 4  # never more than the window ahead
        async with asyncio.timeout(1.0):
            await finished.wait()
        assert client.in_flight == 0
        with pytest.raises(RemoteError, match="stream"):
            await client.call("count", b"3")  # a streaming method needs stream()


async def test_stream_error_after_items_and_stream_deadline() -> None:
    rpc = RpcServer()

    @rpc.method()
    async def flaky(request: bytes) -> Any:
        yield b"one"
        yield b"two"
        raise KeyError("three")

    @rpc.method()
    async def slow_stream(request: bytes) -> Any:
        yield b"first"
        await asyncio.sleep(10)
        yield b"never"

    async with served(rpc) as server, client_of(server) as client:
        got: list[bytes] = []

        async def collect(method: str, timeout: float | None = None) -> None:
            async for item in client.stream(method, timeout=timeout):
                got.append(item)

        with pytest.raises(RemoteError, match="three") as info:
            await collect("flaky")
        assert got == [b"one", b"two"]
        assert info.value.remote_type == "KeyError"
        got.clear()
        with pytest.raises(DeadlineExceeded):
            await collect("slow_stream", timeout=1.0)
        assert got == [b"first"]


async def test_admission_control_refuses_clearly_when_overloaded() -> None:
    """A peer that ignores the advertised limit gets a clear OVERLOADED refusal."""
    gate = asyncio.Event()
    rpc = RpcServer(max_in_flight=4)

    @rpc.method()
    async def hold(request: bytes) -> bytes:
        await gate.wait()
        return b"done"

    async with served(rpc) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        await channel.send(encode_frame(Hello(1, 0, 0)))
        hello = decode_frame(await channel.receive())
        assert hello == Hello(1, 4, 30_000)
        for call_id in range(1, 6):
            await channel.send(encode_frame(Request(call_id, "hold", b"")))
        refusal = decode_frame(await channel.receive())
        assert isinstance(refusal, ErrorFrame)
        assert (refusal.call_id, refusal.code, refusal.remote_type) == (5, 3, "TooManyInFlight")
        assert "limit 4" in refusal.message
        assert rpc.refused == 1
        gate.set()
        answers = [decode_frame(await channel.receive()) for _ in range(4)]
        assert sorted(a.call_id for a in answers if isinstance(a, Response)) == [1, 2, 3, 4]
        await channel.close()


async def test_draining_server_refuses_new_calls_as_retryable_overloaded() -> None:
    rpc = echo_server()
    async with served(rpc) as server, client_of(server) as client:
        running = asyncio.create_task(client.call("sleep", b"2"))
        await asyncio.sleep(0.5)
        rpc.start_draining()
        # Refused by the server (REQUEST crossed the GOAWAY) or by the client
        # (GOAWAY read first): Overloaded either way, and safe to retry elsewhere.
        with pytest.raises(Overloaded) as info:
            await client.call("echo", b"x")
        assert info.value.retryable
        assert await running == b"slept"  # the call in flight finishes
        await rpc.wait_drained()


async def test_client_keeps_within_the_servers_limit() -> None:
    gate = asyncio.Event()
    running = 0
    peak = 0
    rpc = RpcServer(max_in_flight=4)

    @rpc.method()
    async def hold(request: bytes) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return request

    async with served(rpc) as server, client_of(server) as client:
        calls = [asyncio.create_task(client.call("hold", b"%d" % i)) for i in range(10)]
        await asyncio.sleep(1.0)
        assert running == 4  # the other six wait on the client, not refused
        gate.set()
        assert await asyncio.gather(*calls) == [b"%d" % i for i in range(10)]
        assert peak == 4
        assert rpc.refused == 0
        # Waiting for a slot is bounded by the call's deadline.
        gate.clear()
        held = [asyncio.create_task(client.call("hold")) for _ in range(4)]
        await asyncio.sleep(0.1)
        with pytest.raises(DeadlineExceeded):
            await client.call("hold", timeout=1.0)
        gate.set()
        await asyncio.gather(*held)


async def test_closed_client_and_bad_registration() -> None:
    rpc = echo_server()
    async with served(rpc) as server:
        client = await RpcClient.connect(server.url)
        await client.close()
        with pytest.raises(ClosedResourceError):
            await client.call("echo")
    with pytest.raises(UsageError):
        rpc.add("sync", lambda request: request)  # type: ignore[arg-type,return-value]

    async def three(a: bytes, b: CallContext, c: int) -> bytes:
        return a

    with pytest.raises(UsageError):
        rpc.add("three", three)
    with pytest.raises(UsageError):
        RpcServer(max_in_flight=0)


async def test_events_are_emitted() -> None:
    observer = RecordingObserver()
    rpc = echo_server(observer=observer)
    async with served(rpc) as server, client_of(server, observer=observer) as client:
        await client.call("echo", b"x")
        with pytest.raises(DeadlineExceeded):
            await client.call("sleep", b"5", timeout=0.5)
    finished = observer.of_type(CallFinished)
    assert {(e.role, e.method, e.outcome) for e in finished} >= {
        ("client", "echo", "ok"),
        ("server", "echo", "ok"),
        ("client", "sleep", "DeadlineExceeded"),
    }
    assert any(e.count == 1 for e in observer.of_type(InFlightChanged))
