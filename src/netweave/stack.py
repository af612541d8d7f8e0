"""Stacks of layers, and channels that join a stack to a connection.

A :class:`Stack` composes sans-IO layers bottom first: ``Stack.parse("lp4,json")``
is length-prefix framing under a JSON codec. ``encode(obj) -> bytes`` sends one
message down through every layer; ``decode(chunk) -> list`` feeds received
bytes up and returns every complete message.

A stack passed to :func:`netweave.connect` or :func:`netweave.serve` is a
*template*: each channel gets :meth:`Stack.fresh` layers, so state never leaks
between connections.

A :class:`Channel` is a connection plus a stack: ``send(obj)``, ``receive()``,
``async for``, ``close()``. :class:`StreamChannel` runs over a byte stream;
:class:`DatagramChannel` over datagrams, where each datagram is one message.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, final

from .errors import EndOfStream, InvalidStackSpec, ProtocolError, UsageError
from .layers.base import Layer, UnitKind
from .observe import ConnectionClosed, MessageReceived, MessageSent, ProtocolViolation

if TYPE_CHECKING:
    from .observe import Observer
    from .registry import Registry
    from .transports.base import Address, DatagramEndpoint, StreamConnection

__all__ = ["Channel", "DatagramChannel", "Stack", "StreamChannel"]

T = TypeVar("T")

_KIND_TEXT = {"stream": "a byte stream", "frame": "whole frames", "object": "application objects"}


def _misfit_hint(lower: Layer[Any, Any], upper: Layer[Any, Any]) -> str:
    """How to fix ``upper`` sitting on ``lower`` when their unit kinds differ."""
    if lower.upper_kind == "object":
        return f"nothing can sit above the codec {lower.name!r}: put it last"
    if upper.lower_kind == "stream":
        return f"a framing layer such as {upper.name!r} goes first, right on the byte stream"
    if lower.upper_kind == "stream":
        return "put a framing layer such as lp4, varint or line between them"
    return "check the order of the layers (bottom first: framing, transforms, codec)"


@final
class Stack:
    """Layers composed bottom first, with bulk decode and one-call encode."""

    __slots__ = ("_active", "_down", "_layers", "_lone", "_observer", "_spec", "_talkers", "_up")

    def __init__(
        self,
        layers: Sequence[Layer[Any, Any]],
        *,
        spec: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        if not layers:
            raise UsageError("a stack needs at least one layer (for bytes as they are: 'raw')")
        for lower, upper in itertools.pairwise(layers):
            if upper.lower_kind != lower.upper_kind:
                raise InvalidStackSpec(
                    f"layer {upper.name!r} takes {_KIND_TEXT[upper.lower_kind]}, but "
                    f"{lower.name!r} below it gives {_KIND_TEXT[lower.upper_kind]}; "
                    f"{_misfit_hint(lower, upper)}"
                )
        if layers[0].lower_kind == "object":
            raise InvalidStackSpec(f"layer {layers[0].name!r} cannot be the bottom of a stack")
        self._layers: tuple[Layer[Any, Any], ...] = tuple(layers)
        self._spec = spec if spec is not None else ",".join(layer.name for layer in layers)
        self._observer = observer
        self._active = tuple(layer for layer in self._layers if not layer.identity)
        self._up = self._active
        self._down = tuple(reversed(self._active))
        # The only layer that does anything (``lp4,raw``: raw is an identity), if so.
        self._lone = self._active[0] if len(self._active) == 1 else None
        self._talkers = tuple(
            i
            for i, layer in enumerate(self._active)
            if type(layer).data_to_send is not Layer.data_to_send
        )

    @classmethod
    def parse(
        cls, spec: str, *, registry: Registry | None = None, observer: Observer | None = None
    ) -> Stack:
        """Build a stack from a spec such as ``"lp4:max=64k,json"`` (bottom layer first).

        Raises ``InvalidStackSpec`` for unknown names or bad parameters, and
        ``MissingDependency`` naming the extra to install for an optional codec.
        """
        from .registry import default_registry

        reg = registry if registry is not None else default_registry()
        return cls(reg.build_layers(spec), spec=spec.strip(), observer=observer)

    def fresh(self, *, observer: Observer | None = None) -> Stack:
        """The same layers, cloned with empty state (the template itself is untouched)."""
        return Stack(
            [layer.clone() for layer in self._layers],
            spec=self._spec,
            observer=observer if observer is not None else self._observer,
        )

    @property
    def layers(self) -> tuple[Layer[Any, Any], ...]:
        """The layers, bottom first."""
        return self._layers

    @property
    def spec(self) -> str:
        """The spec text this stack was built from (or the layer names)."""
        return self._spec

    @property
    def lower_kind(self) -> UnitKind:
        """What the bottom layer consumes: ``"stream"`` or ``"frame"``."""
        return self._layers[0].lower_kind

    def encode(self, message: Any) -> bytes:
        """Turn one message into the bytes (or datagram) to send.

        Raises ``UsageError`` for a message the stack cannot carry (wrong type,
        over a layer's maximum, not serialisable).
        """
        unit = message
        try:
            for layer in self._down:
                unit = layer.encode(unit)
        except TypeError as exc:
            raise UsageError(
                f"stack {self._spec!r} cannot send a {type(message).__name__}: {exc}"
            ) from exc
        return unit  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> list[Any]:
        """Feed received bytes (or one datagram); return every message now complete."""
        try:
            lone = self._lone
            if lone is not None:
                return lone.decode(data)
            units: list[Any] = [data]
            for layer in self._up:
                if len(units) == 1:
                    units = layer.decode(units[0])
                else:
                    out: list[Any] = []
                    for unit in units:
                        out.extend(layer.decode(unit))
                    units = out
            return units
        except ProtocolError as exc:
            self._report(exc)
            raise

    def end_of_input(self) -> list[Any]:
        """The input ended: return messages still held, or raise ``TruncatedInput``."""
        try:
            units: list[Any] = []
            for layer in self._up:
                decoded: list[Any] = []
                for unit in units:
                    decoded.extend(layer.decode(unit))
                decoded.extend(layer.end_of_input())
                units = decoded
            return units
        except ProtocolError as exc:
            self._report(exc)
            raise

    @property
    def speaks(self) -> bool:
        """True if any layer may produce output on its own (see :meth:`data_to_send`)."""
        return bool(self._talkers)

    def data_to_send(self) -> list[bytes]:
        """Output that layers produced on their own, encoded down to the bottom."""
        out: list[bytes] = []
        for index in self._talkers:
            for unit in self._active[index].data_to_send():
                lowered = unit
                for below in reversed(self._active[:index]):
                    lowered = below.encode(lowered)
                out.append(lowered)
        return out

    def _report(self, exc: ProtocolError) -> None:
        if self._observer is not None:
            self._observer(ProtocolViolation(self._spec, exc.layer, exc.detail))

    def __repr__(self) -> str:
        return f"Stack({self._spec!r})"


class Channel(ABC, Generic[T]):
    """Messages over a connection: ``send``, ``receive``, ``async for``, ``close``.

    ``receive`` raises :class:`~netweave.errors.EndOfStream` when the peer ended
    the stream cleanly (``async for`` then stops), a ``ProtocolError`` when the
    peer sent something a layer rejects (the connection is then aborted), and
    ``ConnectionBroken`` / ``ClosedResourceError`` as the transport does.
    """

    @abstractmethod
    async def send(self, message: T) -> None:
        """Encode and send one message (awaits under backpressure)."""

    @abstractmethod
    async def receive(self) -> T:
        """The next message."""

    @abstractmethod
    async def close(self) -> None:
        """Close gracefully (flushing what was sent). Idempotent."""

    @abstractmethod
    def abort(self) -> None:
        """Close at once, discarding unsent data. Idempotent."""

    @property
    @abstractmethod
    def stack(self) -> Stack:
        """This channel's own stack (fresh layers, not the template)."""

    @property
    @abstractmethod
    def remote_address(self) -> str:
        """The peer's address as text."""

    @property
    def observer(self) -> Observer | None:
        """The observer this channel reports its messages to, if any."""
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@final
class StreamChannel(Channel[T]):
    """A channel over a :class:`~netweave.transports.StreamConnection`."""

    __slots__ = ("_conn", "_eof", "_failure", "_inbox", "_observer", "_speaks", "_stack")

    def __init__(
        self, connection: StreamConnection, stack: Stack, *, observer: Observer | None = None
    ) -> None:
        if stack.lower_kind != "stream":
            raise UsageError(
                f"stack {stack.spec!r} does not start with a framing layer, so it cannot run "
                f"over a byte stream; put lp4, varint or line first (e.g. 'lp4,{stack.spec}')"
            )
        self._conn = connection
        self._stack = stack
        self._speaks = stack.speaks  # fixed with the stack's layers
        self._observer = observer
        self._inbox: deque[T] = deque()
        self._eof = False
        self._failure: ProtocolError | None = None

    @property
    def connection(self) -> StreamConnection:
        """The underlying connection."""
        return self._conn

    @property
    def stack(self) -> Stack:
        return self._stack

    @property
    def remote_address(self) -> str:
        return self._conn.remote_address

    @property
    def observer(self) -> Observer | None:
        return self._observer

    async def send(self, message: T) -> None:
        data = self._stack.encode(message)
        if self._observer is not None:
            self._observer(MessageSent(self._conn.remote_address, len(data)))
        # While decoded messages wait in the inbox, replies are likely to follow:
        # let the transport coalesce them into one write.
        if not self._conn.send_nowait(data, more=bool(self._inbox)):
            await self._conn.send(data)

    async def send_many(self, messages: Sequence[T]) -> None:
        """Encode several messages and send them in one write."""
        encode = self._stack.encode
        data = b"".join([encode(message) for message in messages])
        if self._observer is not None:
            for _ in messages:
                self._observer(MessageSent(self._conn.remote_address, len(data) // len(messages)))
        await self._conn.send(data)

    async def receive(self) -> T:
        inbox = self._inbox
        while not inbox:
            await self._fill()
        return inbox.popleft()

    async def __anext__(self) -> T:
        # receive() inlined: one coroutine per message on the hot path, not two.
        inbox = self._inbox
        while not inbox:
            try:
                await self._fill()
            except EndOfStream:
                raise StopAsyncIteration from None
        return inbox.popleft()

    async def _fill(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._eof:
            raise EndOfStream(f"{self._conn.remote_address} ended the stream")
        chunk = await self._conn.receive()
        try:
            if chunk:
                messages = self._stack.decode(chunk)
            else:
                self._eof = True
                messages = self._stack.end_of_input()
        except ProtocolError as exc:
            self._failure = exc
            self._conn.abort()
            if self._observer is not None:
                self._observer(
                    ConnectionClosed(self._conn.remote_address, "protocol-error", str(exc))
                )
            raise
        if self._speaks:
            for data in self._stack.data_to_send():
                await self._conn.send(data)
        if messages:
            if self._observer is not None:
                self._observer(MessageReceived(self._conn.remote_address, len(messages)))
            self._inbox.extend(messages)

    async def send_eof(self) -> None:
        """End our sending side; the peer's ``receive`` sees ``EndOfStream``."""
        await self._conn.send_eof()

    async def close(self) -> None:
        await self._conn.close()

    def abort(self) -> None:
        self._conn.abort()


@final
class DatagramChannel(Channel[T]):
    """A channel over a :class:`~netweave.transports.DatagramEndpoint`: one datagram, one message.

    A datagram that a layer rejects raises its ``ProtocolError`` from
    ``receive``; unlike a stream, the channel stays usable for the next one.
    """

    __slots__ = ("_endpoint", "_observer", "_pending", "_stack")

    def __init__(
        self, endpoint: DatagramEndpoint, stack: Stack, *, observer: Observer | None = None
    ) -> None:
        if stack.lower_kind != "frame":
            raise UsageError(
                f"stack {stack.spec!r} starts with a framing layer, but each datagram is "
                f"already one message; drop {stack.layers[0].name!r} (e.g. use 'json')"
            )
        self._endpoint = endpoint
        self._stack = stack
        self._observer = observer
        self._pending: deque[tuple[T, Address]] = deque()

    @property
    def endpoint(self) -> DatagramEndpoint:
        """The underlying datagram endpoint."""
        return self._endpoint

    @property
    def stack(self) -> Stack:
        return self._stack

    @property
    def remote_address(self) -> str:
        remote = self._endpoint.remote
        return "" if remote is None else _format_address(remote)

    @property
    def observer(self) -> Observer | None:
        return self._observer

    async def send(self, message: T) -> None:
        await self.send_to(message, None)

    async def send_to(self, message: T, address: Address | None) -> None:
        """Send one message as one datagram to ``address`` (the connected peer if ``None``)."""
        data = self.encode(message)
        if self._observer is not None:
            self._observer(MessageSent(self.remote_address, len(data)))
        await self._endpoint.send_to(data, address)

    def encode(self, message: T) -> bytes:
        """The datagram that carries ``message`` (``UsageError`` if the stack cannot)."""
        data = self._stack.encode(message)
        if not isinstance(data, bytes | bytearray | memoryview):
            # Only identity layers (raw) let a non-bytes message get this far.
            raise UsageError(
                f"stack {self._stack.spec!r} cannot send a {type(message).__name__}; "
                f"it carries bytes (use a codec such as json for objects)"
            )
        return data

    async def receive(self) -> T:
        message, _ = await self.receive_from()
        return message

    async def receive_from(self) -> tuple[T, Address]:
        """The next message and the address it came from."""
        while not self._pending:
            datagram, address = await self._endpoint.receive_from()
            try:
                messages = self._stack.decode(datagram)
            except ProtocolError:
                self._stack = self._stack.fresh()
                raise
            if self._observer is not None and messages:
                self._observer(MessageReceived(_format_address(address), len(messages)))
            self._pending.extend((message, address) for message in messages)
        return self._pending.popleft()

    async def close(self) -> None:
        await self._endpoint.close()

    def abort(self) -> None:
        self._endpoint.abort()


def _format_address(address: Address) -> str:
    if isinstance(address, str):
        return address
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
