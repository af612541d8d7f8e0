"""The conformance suites fail transports that break the contract (so they can fail at all)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from transport_pairs import open_datagram_pair

from netweave.testing import DatagramConformance, StreamConformance, memory_stream_pair
from netweave.transports import Address, DatagramEndpoint, StreamConnection


class Delegating(StreamConnection):
    """A stream connection that forwards everything to ``inner``; subclasses break one rule."""

    def __init__(self, inner: StreamConnection) -> None:
        self.inner = inner

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send(data)

    async def receive(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def close(self) -> None:
        await self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    @property
    def local_address(self) -> str:
        return self.inner.local_address

    @property
    def remote_address(self) -> str:
        return self.inner.remote_address

    @property
    def is_closing(self) -> bool:
        return self.inner.is_closing

    def extra(self, name: str, default: Any = None) -> Any:
        return self.inner.extra(name, default)


class ReceiveAfterCloseReturnsEmpty(Delegating):
    async def receive(self, max_bytes: int | None = None) -> bytes:
        if self.inner.is_closing:
            return b""
        return await self.inner.receive(max_bytes)


class SecondCloseRaises(Delegating):
    closes = 0

    async def close(self) -> None:
        self.closes += 1
        if self.closes > 1:
            raise RuntimeError("closed twice")
        await self.inner.close()


class DropsEveryThirdChunk(Delegating):
    sent = 0

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += 1
        if self.sent % 3:
            await self.inner.send(data)


class GracefulAbort(Delegating):
    """``abort`` closes gracefully, so the peer sees an end of stream, not a reset."""

    closing: asyncio.Task[None] | None = None

    def abort(self) -> None:
        if self.closing is None:
            self.closing = asyncio.get_running_loop().create_task(self.inner.close())


class MirrorsNothing(Delegating):
    @property
    def local_address(self) -> str:
        return "somewhere"


def _suite(make_pair: Any, **attributes: Any) -> StreamConformance:
    class Suite(StreamConformance):
        async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
            return make_pair()  # type: ignore[no-any-return]

    for name, value in attributes.items():
        setattr(Suite, name, value)
    return Suite()


def _client_is(kind: type[Delegating]) -> Any:
    def make() -> tuple[StreamConnection, StreamConnection]:
        a, b = memory_stream_pair()
        return kind(a), b

    return make


async def test_a_correct_pair_passes_the_checked_tests() -> None:
    suite = _suite(_client_is(Delegating))
    await suite.test_use_after_close_raises_closed()
    await suite.test_close_is_idempotent_and_concurrent()
    await suite.test_order_is_kept()
    await suite.test_addresses()


async def test_receive_after_close_must_raise() -> None:
    suite = _suite(_client_is(ReceiveAfterCloseReturnsEmpty))
    with pytest.raises(AssertionError, match="receive after close should raise"):
        await suite.test_use_after_close_raises_closed()


async def test_close_must_be_idempotent() -> None:
    suite = _suite(_client_is(SecondCloseRaises))
    with pytest.raises(Exception, match="closed twice"):
        await suite.test_close_is_idempotent_and_concurrent()


async def test_lost_data_is_caught() -> None:
    suite = _suite(_client_is(DropsEveryThirdChunk), timeout=0.2)
    with pytest.raises((AssertionError, TimeoutError)):
        await suite.test_order_is_kept()


async def test_unmirrored_addresses_are_caught() -> None:
    suite = _suite(_client_is(MirrorsNothing))
    with pytest.raises(AssertionError):
        await suite.test_addresses()


async def test_a_missing_reset_is_caught() -> None:
    def make() -> tuple[StreamConnection, StreamConnection]:
        a, b = memory_stream_pair()
        return GracefulAbort(a), b

    suite = _suite(make)
    with pytest.raises(AssertionError, match="should raise ConnectionBroken"):
        await suite.test_abort_resets_the_peer()
    await _suite(make, has_reset=False).test_abort_resets_the_peer()  # declared: passes


async def test_a_sender_that_never_waits_is_caught() -> None:
    def make() -> tuple[StreamConnection, StreamConnection]:
        return memory_stream_pair(capacity=1 << 30)  # in effect unbounded

    suite = _suite(make, backpressure_limit=8 * 1024 * 1024)
    with pytest.raises(AssertionError, match="send never waited"):
        await suite.test_backpressure_blocks_a_sender_until_the_peer_reads()


class AcceptsOversize(DatagramEndpoint):
    """Claims a maximum it does not enforce."""

    def __init__(self, inner: DatagramEndpoint) -> None:
        self.inner = inner

    async def send_to(self, data: bytes, address: Address | None = None) -> None:
        if len(data) > self.max_datagram_size:
            return  # silently dropped instead of UsageError
        await self.inner.send_to(data, address)

    async def receive_from(self) -> tuple[bytes, Address]:
        return await self.inner.receive_from()

    async def close(self) -> None:
        await self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    @property
    def max_datagram_size(self) -> int:
        return 100

    @property
    def local_address(self) -> Address:
        return self.inner.local_address

    @property
    def remote(self) -> Address | None:
        return self.inner.remote

    @property
    def url(self) -> str:
        return self.inner.url


async def test_an_unenforced_datagram_maximum_is_caught() -> None:
    class Suite(DatagramConformance):
        async def open_pair(self) -> tuple[DatagramEndpoint, DatagramEndpoint]:
            client, server = await open_datagram_pair("udp://127.0.0.1:0")
            return AcceptsOversize(client), server

    with pytest.raises(AssertionError, match="oversize send_to should raise UsageError"):
        await Suite().test_oversize_is_usage_error_and_sends_nothing()
