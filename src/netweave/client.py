"""``netweave.connect``: open a channel to an endpoint URL."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .endpoints import parse_endpoint
from .errors import ConnectFailed, InvalidStackSpec
from .stack import Channel, DatagramChannel, Stack, StreamChannel

if TYPE_CHECKING:
    from .observe import Observer
    from .registry import Registry

__all__ = ["check_stack_fits", "connect", "resolve_stack"]


def resolve_stack(
    stack: Stack | str, *, registry: Registry | None = None, observer: Observer | None = None
) -> Stack:
    """A fresh stack from a spec string or a template stack."""
    if isinstance(stack, str):
        return Stack.parse(stack, registry=registry, observer=observer)
    return stack.fresh(observer=observer)


async def connect(
    url: str,
    stack: Stack | str,
    *,
    timeout: float | None = None,
    observer: Observer | None = None,
    registry: Registry | None = None,
) -> Channel[Any]:
    """Connect to ``url`` and return a channel speaking ``stack``.

    Stream schemes (``tcp``, ``unix``, ``mem``...) give a
    :class:`~netweave.stack.StreamChannel`; datagram schemes (``udp``) a
    :class:`~netweave.stack.DatagramChannel` connected to that address.
    ``stack`` is a spec such as ``"lp4,json"`` or a :class:`Stack` template
    (cloned, never shared). ``timeout`` bounds the whole connect (the URL's own
    ``connect_timeout`` option, where the scheme has one, applies too).

    Raises ``InvalidEndpoint`` / ``InvalidStackSpec`` for bad input (before any
    I/O), ``ConnectFailed`` when the peer cannot be reached.
    """
    endpoint, transport = parse_endpoint(url, registry=registry)
    fresh = resolve_stack(stack, registry=registry, observer=observer)
    try:
        async with asyncio.timeout(timeout):
            check_stack_fits(fresh, transport.kind, url)
            if transport.kind == "stream":
                connection = await transport.connect(endpoint, observer=observer)
                return StreamChannel(connection, fresh, observer=observer)
            datagrams = await transport.connect(endpoint, observer=observer)
            return DatagramChannel(datagrams, fresh, observer=observer)
    except TimeoutError:
        raise ConnectFailed(f"connecting to {url} timed out after {timeout} s") from None


def check_stack_fits(stack: Stack, transport_kind: str, url: str) -> None:
    """Raise ``InvalidStackSpec`` unless ``stack`` can run over ``url``'s kind of transport.

    Checked before any I/O, so a bad stack costs no connection.
    """
    if transport_kind == "stream" and stack.lower_kind != "stream":
        raise InvalidStackSpec(
            f"{url} is a byte stream, so stack {stack.spec!r} needs a framing layer first "
            f"(e.g. 'lp4,{stack.spec}')"
        )
    if transport_kind == "datagram" and stack.lower_kind != "frame":
        raise InvalidStackSpec(
            f"{url} carries whole datagrams, so stack {stack.spec!r} must not start with the "
            f"framing layer {stack.layers[0].name!r}; drop it"
        )
