"""The echo server behind ``netweave serve echo``.

:func:`echo_message` is the whole handler: every message that arrives goes
straight back on the same connection. It is a per-message handler
(:func:`netweave.per_message`), kept this lean on purpose, because it is the
netweave side of the echo benchmarks against Twisted and plain asyncio.
:func:`echo` is the same service written as a connection handler.

:func:`serve_until` runs it on a URL until an event is set, so the command line
(which sets the event from its signal handlers) and tests share one code path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..messages import Responder, per_message
from ..server import serve

if TYPE_CHECKING:
    from ..observe import Observer
    from ..stack import Channel, Stack

__all__ = ["echo", "echo_message", "serve_until"]


async def echo(channel: Channel[Any]) -> None:
    """Send every message received on ``channel`` back on it, until the peer ends."""
    async for message in channel:
        await channel.send(message)


def echo_message(message: Any, responder: Responder) -> None:
    """Send ``message`` straight back (a :data:`~netweave.MessageHandler`)."""
    responder.send(message)


_ECHO = per_message(echo_message)


async def serve_until(
    url: str,
    stack: Stack | str,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[str], None] | None = None,
    on_connected: Callable[[Channel[Any]], None] | None = None,
    observer: Observer | None = None,
) -> None:
    """Serve :func:`echo_message` on ``url`` with ``stack`` until ``stop`` is set, then close.

    ``on_listening`` is called once with the server's real URL (the real port
    when 0 was asked) as soon as it listens; ``on_connected(channel)`` for each
    new channel. Closing the server aborts every open connection and cancels its
    handler. Raises what :func:`netweave.serve` raises: ``InvalidEndpoint`` /
    ``InvalidStackSpec`` for bad input, ``ListenFailed`` when the address cannot
    be bound.
    """
    handler = _ECHO
    if on_connected is not None:
        report = on_connected

        async def handler(channel: Channel[Any]) -> None:
            report(channel)
            await _ECHO(channel)

    async with serve(url, stack, handler, observer=observer) as server:
        if on_listening is not None:
            on_listening(server.url)
        await stop.wait()
