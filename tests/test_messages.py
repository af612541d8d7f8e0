"""``netweave.per_message``: message handlers, pushed (TCP, Unix) and pulled (the rest)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

import netweave
from netweave import (
    Channel,
    ClosedResourceError,
    ConnectionBroken,
    EndOfStream,
    Handler,
    Responder,
    Server,
    Stack,
    UsageError,
    per_message,
)
from netweave.layers import LengthPrefix, Raw
from netweave.layers.base import FrameTransform
from netweave.observe import BytesSent, ConnectionClosed, MessageReceived, RecordingObserver

PUSHED = ("tcp", "unix")


def _url(kind: str, sock_dir: Path) -> str:
    return {
        "tcp": "tcp://127.0.0.1:0",
        "unix": f"unix://{sock_dir}/server.sock",
        "mem": "mem://messages",
        "udp": "udp://127.0.0.1:0",
    }[kind]


def _stack(kind: str) -> str:
    return "json" if kind == "udp" else "lp4,json"


@pytest.fixture(params=["tcp", "unix", "mem", "udp"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["tcp", "mem"])
def stream_kind(request: pytest.FixtureRequest) -> str:
    """One transport with push delivery, one without."""
    return str(request.param)


@contextlib.asynccontextmanager
async def _served(
    url: str, stack: Stack | str, handler: Handler, client_stack: str | None = None
) -> AsyncIterator[tuple[Server, Channel[Any]]]:
    """A server and one client channel to it (speaking ``client_stack`` or ``stack``)."""
    async with netweave.serve(url, stack, handler) as server:
        default = stack if isinstance(stack, str) else stack.spec
        spec = client_stack if client_stack is not None else default
        async with await netweave.connect(server.url, spec) as channel:
            yield server, channel


async def _until(condition: Any, what: str) -> None:
    async with asyncio.timeout(5):
        for _ in range(100_000):
            if condition():
                return
            await asyncio.sleep(0.001)
    raise AssertionError(f"gave up waiting until {what}")


async def test_replies_come_back_in_order_over_every_transport(kind: str, sock_dir: Path) -> None:
    in_task: list[bool] = []

    def double(message: Any, responder: Responder) -> None:
        in_task.append(asyncio.current_task() is not None)
        responder.send({"n": message["n"] * 2})

    stack = _stack(kind)
    async with _served(_url(kind, sock_dir), stack, per_message(double)) as (_, channel):
        for n in range(200):
            await channel.send({"n": n})
        assert [await channel.receive() for _ in range(200)] == [{"n": 2 * n} for n in range(200)]
    # Pushed transports run the handler in the transport's callback, not in a task.
    assert set(in_task) == ({False} if kind in PUSHED else {True})


async def test_replies_to_one_read_leave_in_one_write() -> None:
    events = RecordingObserver()
    async with netweave.serve(
        "tcp://127.0.0.1:0", "lp4,raw", per_message(_echo), observer=events
    ) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        assert isinstance(channel, netweave.StreamChannel)
        async with channel:
            await channel.send_many([b"m%d" % i for i in range(100)])
            assert [await channel.receive() for _ in range(100)] == [b"m%d" % i for i in range(100)]
            reads = len([e for e in events.events if isinstance(e, MessageReceived)])
            writes = len([e for e in events.events if isinstance(e, BytesSent)])
    # 100 requests arrived in a few reads; each read's replies went out together.
    assert 1 <= reads < 100
    assert writes == reads


def _echo(message: Any, responder: Responder) -> None:
    responder.send(message)


async def test_a_handler_that_raises_ends_its_connection_not_the_server(
    stream_kind: str, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def picky(message: Any, responder: Responder) -> None:
        if message == b"boom":
            raise RuntimeError("handler bug")
        responder.send(message)

    with caplog.at_level(logging.ERROR, logger="netweave.server"):
        url = _url(stream_kind, sock_dir)
        async with netweave.serve(url, "lp4,raw", per_message(picky)) as server:
            bad = await netweave.connect(server.url, "lp4,raw")
            await bad.send(b"boom")
            with pytest.raises((EndOfStream, ConnectionBroken)):
                await asyncio.wait_for(bad.receive(), timeout=5)
            async with await netweave.connect(server.url, "lp4,raw") as good:
                await good.send(b"fine")
                assert await good.receive() == b"fine"
            await _until(lambda: server.handler_errors == 1, "the failure is counted")
            bad.abort()
    assert any("handler bug" in (record.exc_text or "") for record in caplog.records)


async def test_a_protocol_error_ends_the_connection_and_is_reported(stream_kind: str) -> None:
    events = RecordingObserver()
    url = "tcp://127.0.0.1:0" if stream_kind == "tcp" else "mem://protocol-error"
    async with netweave.serve(url, "lp4,json", per_message(_echo), observer=events) as server:
        raw = await netweave.connect(server.url, "lp4,raw")
        await raw.send(b"{not json")
        with pytest.raises((EndOfStream, ConnectionBroken)):
            await asyncio.wait_for(raw.receive(), timeout=5)
        raw.abort()
        async with await netweave.connect(server.url, "lp4,json") as good:
            await good.send([1, 2])
            assert await good.receive() == [1, 2]
    closed = [e for e in events.events if isinstance(e, ConnectionClosed)]
    assert any(e.reason == "protocol-error" and "json" in str(e.error) for e in closed)
    assert server.handler_errors == 0


async def test_a_slow_reader_stops_the_server_reading_and_loses_nothing(
    stream_kind: str,
) -> None:
    """The client sends far more than all buffers hold without reading a reply: the
    server stops reading (memory stays bounded), then every reply arrives in order."""
    handled = 0

    def count(message: Any, responder: Responder) -> None:
        nonlocal handled
        handled += 1
        responder.send(message)

    total, size = 1500, 32 * 1024  # ~48 MiB each way: more than loopback buffers hold
    url = "tcp://127.0.0.1:0" if stream_kind == "tcp" else "mem://slow-reader"
    async with _served(url, "lp4,raw", per_message(count)) as (_, channel):
        payloads = [i.to_bytes(4, "big") * (size // 4) for i in range(total)]

        async def send_all() -> None:
            for payload in payloads:
                await channel.send(payload)

        sending = asyncio.create_task(send_all())
        # Until the server has stopped taking requests for a while.
        async with asyncio.timeout(10):
            while True:
                before = handled
                await asyncio.sleep(0.2)
                if handled == before and handled > 0:
                    break
        assert 0 < handled < total
        assert not sending.done(), "the client's sending must be held up too"
        for i in range(total):
            reply = await asyncio.wait_for(channel.receive(), timeout=10)
            assert reply[:4] == i.to_bytes(4, "big")
            assert len(reply) == size
        await sending
    assert handled == total


async def test_replies_from_a_later_task_keep_order_and_end_with_the_connection(
    stream_kind: str,
) -> None:
    later: list[asyncio.Task[None]] = []
    kept: list[Responder] = []

    def slow_and_fast(message: Any, responder: Responder) -> None:
        if message == b"slow":

            async def answer() -> None:
                await asyncio.sleep(0.05)
                responder.send(b"slow done")

            later.append(asyncio.create_task(answer()))
        else:
            responder.send(message)
        kept.append(responder)

    url = "tcp://127.0.0.1:0" if stream_kind == "tcp" else "mem://later"
    async with netweave.serve(url, "lp4,raw", per_message(slow_and_fast)) as server:
        async with await netweave.connect(server.url, "lp4,raw") as channel:
            await channel.send(b"slow")
            await channel.send(b"fast")
            assert await channel.receive() == b"fast"
            assert await asyncio.wait_for(channel.receive(), timeout=5) == b"slow done"
        await _until(lambda: server.connections == 0, "the server ends the connection")
        with pytest.raises(ClosedResourceError, match="has ended"):
            kept[0].send(b"too late")
    await asyncio.gather(*later)


async def test_a_message_the_stack_cannot_carry_raises_to_the_handler(
    stream_kind: str,
) -> None:
    errors: list[Exception] = []

    def answer(message: Any, responder: Responder) -> None:
        try:
            responder.send(object())
        except UsageError as exc:
            errors.append(exc)
            responder.send({"error": "cannot encode"})

    url = "tcp://127.0.0.1:0" if stream_kind == "tcp" else "mem://encode"
    async with _served(url, "lp4,json", per_message(answer)) as (_, channel):
        await channel.send("hi")
        assert await channel.receive() == {"error": "cannot encode"}
    assert len(errors) == 1
    assert "json" in str(errors[0])


async def test_responder_close_ends_the_connection(stream_kind: str) -> None:
    def hang_up(message: Any, responder: Responder) -> None:
        assert responder.remote_address
        responder.close()

    url = "tcp://127.0.0.1:0" if stream_kind == "tcp" else "mem://hang-up"
    async with netweave.serve(url, "lp4,raw", per_message(hang_up)) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        await channel.send(b"bye")
        with pytest.raises((EndOfStream, ConnectionBroken)):
            await asyncio.wait_for(channel.receive(), timeout=5)
        channel.abort()
        await _until(lambda: server.connections == 0, "the server forgets the connection")
    assert server.handler_errors == 0


async def test_the_end_of_stream_still_gets_every_reply() -> None:
    """A client that sends and half-closes at once still reads every answer."""
    async with netweave.serve("tcp://127.0.0.1:0", "line,text", per_message(_echo)) as server:
        channel = await netweave.connect(server.url, "line,text")
        assert isinstance(channel, netweave.StreamChannel)
        async with channel:
            await channel.send_many([f"line {i}" for i in range(50)])
            await channel.send_eof()
            assert [message async for message in channel] == [f"line {i}" for i in range(50)]


async def test_a_bad_datagram_is_skipped_and_the_next_one_handled() -> None:
    async with netweave.serve("udp://127.0.0.1:0", "json", per_message(_echo)) as server:
        raw = await netweave.connect(server.url, "raw")
        async with raw:
            await raw.send(b"{not json")
            await raw.send(b'{"ok": 1}')
            assert await asyncio.wait_for(raw.receive(), timeout=5) == b'{"ok":1}'
    assert server.handler_errors == 0


class _Greeter(FrameTransform):
    """A layer that speaks first: its first decode queues a greeting frame."""

    name = "greeter"
    identity: ClassVar[bool] = False

    def __init__(self) -> None:
        self._greeted = False
        self._out: list[bytes] = []

    def clone(self) -> Self:
        return type(self)()

    def encode(self, unit: bytes) -> bytes:
        return unit

    def decode(self, data: bytes) -> list[bytes]:
        if not self._greeted:
            self._greeted = True
            self._out.append(b"hello from the layer")
        return [data]

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out


async def test_a_stack_that_speaks_on_its_own_is_served_by_the_pull_form() -> None:
    in_task: list[bool] = []

    def note(message: Any, responder: Responder) -> None:
        in_task.append(asyncio.current_task() is not None)
        responder.send(message)

    stack = Stack([LengthPrefix(4, max_frame=1024), _Greeter(), Raw()])
    async with _served("tcp://127.0.0.1:0", stack, per_message(note), "lp4,raw") as (_, channel):
        await channel.send(b"ping")
        assert await channel.receive() == b"hello from the layer"
        assert await channel.receive() == b"ping"
    assert in_task == [True]


async def test_closing_the_server_ends_its_message_handlers_cleanly(stream_kind: str) -> None:
    """Open connections, one with a reply still queued by a later task: the server
    closes them all, nothing is left running, and no warning is raised."""
    later: list[asyncio.Task[None]] = []

    def answer_later(message: Any, responder: Responder) -> None:
        async def answer() -> None:
            await asyncio.sleep(0.5)
            with contextlib.suppress(ClosedResourceError):
                responder.send(message)

        later.append(asyncio.create_task(answer()))

    url = "tcp://127.0.0.1:0" if stream_kind == "tcp" else "mem://closing"
    server = await netweave.serve(url, "lp4,raw", per_message(answer_later))
    channels = [await netweave.connect(server.url, "lp4,raw") for _ in range(3)]
    for channel in channels:
        await channel.send(b"question")
    await _until(lambda: len(later) == 3, "every question reached the handler")
    await server.close()
    assert server.connections == 0
    for channel in channels:
        with pytest.raises((EndOfStream, ConnectionBroken)):
            await asyncio.wait_for(channel.receive(), timeout=5)
        channel.abort()
    await asyncio.gather(*later)


async def test_a_datagram_reply_that_is_not_bytes_raises_to_the_handler() -> None:
    errors: list[Exception] = []

    def answer(message: Any, responder: Responder) -> None:
        try:
            responder.send("text, not bytes")
        except UsageError as exc:
            errors.append(exc)
            responder.send(b"bytes")

    async with _served("udp://127.0.0.1:0", "raw", per_message(answer)) as (_, channel):
        await channel.send(b"hi")
        assert await asyncio.wait_for(channel.receive(), timeout=5) == b"bytes"
    assert len(errors) == 1
    assert "carries bytes" in str(errors[0])
