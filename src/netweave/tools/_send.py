"""The client behind ``netweave send``: send messages, collect one reply each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..client import connect
from ..errors import DeadlineExceeded, EndOfStream, UsageError

if TYPE_CHECKING:
    from ..observe import Observer
    from ..stack import Channel, Stack

__all__ = ["exchange", "exchange_with"]


async def exchange(
    url: str,
    stack: Stack | str,
    messages: Sequence[Any],
    *,
    timeout: float,
    on_reply: Callable[[int, Any], None],
    on_connected: Callable[[Channel[Any]], None] | None = None,
    observer: Observer | None = None,
) -> None:
    """Connect to ``url``, then for each message send it and wait for one reply.

    ``on_connected(channel)`` is called once connected; ``on_reply(position,
    reply)`` for each reply as it arrives (positions count from 1). ``timeout``
    bounds the whole exchange: connecting, sending and every reply. The channel
    is closed before returning.

    Raises ``UsageError`` for a non-positive ``timeout`` or bad URL/stack (before
    any I/O), ``ConnectFailed`` when the server cannot be reached,
    ``DeadlineExceeded`` naming the step that did not finish in time,
    ``EndOfStream`` when the server ended the stream before every reply came,
    and any ``ProtocolError`` / ``ConnectionBroken`` the channel raises.
    """

    async def open_channel() -> Channel[Any]:
        return await connect(url, stack, observer=observer)

    await exchange_with(
        url,
        open_channel,
        messages,
        timeout=timeout,
        on_reply=on_reply,
        on_connected=on_connected,
        step=f"connecting to {url}",
    )


async def exchange_with(
    url: str,
    open_channel: Callable[[], Awaitable[Channel[Any]]],
    messages: Sequence[Any],
    *,
    timeout: float,
    on_reply: Callable[[int, Any], None],
    on_connected: Callable[[Channel[Any]], None] | None = None,
    step: str,
) -> None:
    """:func:`exchange` over the channel ``open_channel()`` gives (``step`` names that
    step in a timeout message); raises as ``exchange`` does."""
    if not timeout > 0:
        raise UsageError(f"the timeout must be a positive number of seconds, not {timeout}")
    total = len(messages)
    try:
        async with asyncio.timeout(timeout):
            channel = await open_channel()
            try:
                if on_connected is not None:
                    on_connected(channel)
                for position, message in enumerate(messages, start=1):
                    step = f"sending message {position} of {total}"
                    await channel.send(message)
                    step = f"waiting for reply {position} of {total}"
                    try:
                        reply = await channel.receive()
                    except EndOfStream:
                        raise EndOfStream(
                            f"{url} ended the connection after {position - 1} of {total} "
                            f"replies (one reply per message was expected)"
                        ) from None
                    on_reply(position, reply)
            except BaseException:
                channel.abort()
                raise
            step = f"closing the connection to {url}"
            await channel.close()
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise DeadlineExceeded(
            f"timed out after {timeout:g} s {step} (is the server answering? "
            f"raise --timeout if it is slow)"
        ) from None
