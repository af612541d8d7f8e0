"""Heartbeats and idle timeouts as a sans-IO timer: when to ping, when to give up.

Rules of this file: every method takes ``now``. Only *complete* frames count
as hearing from the peer, so a peer that trickles a frame byte by byte, or
never sends its handshake, is as silent as a dead one:

* until :meth:`Keepalive.handshake_done`, the peer is cut ``handshake_timeout``
  seconds after the start;
* afterwards it is cut ``timeout`` seconds after the last frame heard;
* a ping is due when nothing was heard for ``interval`` seconds, and again
  every ``interval`` while the silence lasts.

A dead peer is therefore detected at most ``timeout`` seconds after the last
frame it delivered, however the link fails.
"""

from __future__ import annotations

from enum import Enum
from typing import final

from ..errors import UsageError

__all__ = ["Keepalive", "KeepaliveAction"]


class KeepaliveAction(Enum):
    """What :meth:`Keepalive.handle_timer` asks the adapter to do."""

    NOTHING = "nothing"
    PING = "ping"
    CUT = "cut"


@final
class Keepalive:
    """Tracks silence on one connection."""

    __slots__ = (
        "_handshake_at",
        "_heard",
        "_pinged",
        "handshake_timeout",
        "interval",
        "silence",
        "timeout",
    )

    def __init__(
        self,
        now: float,
        *,
        interval: float | None,
        timeout: float | None,
        handshake_timeout: float | None = None,
    ) -> None:
        for name, value in (
            ("interval", interval),
            ("timeout", timeout),
            ("handshake_timeout", handshake_timeout),
        ):
            if value is not None and not value > 0:
                raise UsageError(f"keepalive {name} must be positive or None, not {value}")
        if interval is not None and timeout is not None and interval >= timeout:
            raise UsageError(
                f"the ping interval ({interval} s) must be shorter than the idle timeout "
                f"({timeout} s), or a healthy idle peer would be cut"
            )
        self.interval = interval
        self.timeout = timeout
        self.handshake_timeout = handshake_timeout
        self._handshake_at: float | None = None if handshake_timeout is None else now
        self._heard = now
        self._pinged = now
        self.silence = 0.0

    @property
    def in_handshake(self) -> bool:
        """True until :meth:`handshake_done`."""
        return self._handshake_at is not None

    def handshake_done(self, now: float) -> None:
        """The peer completed its handshake."""
        self._handshake_at = None
        self._heard = now

    def heard(self, now: float) -> None:
        """A complete frame arrived from the peer."""
        self._heard = now

    def pinged(self, now: float) -> None:
        """We sent a ping (or anything that asks for an answer)."""
        self._pinged = now

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next, or ``None``."""
        times: list[float] = []
        if self._handshake_at is not None and self.handshake_timeout is not None:
            times.append(self._handshake_at + self.handshake_timeout)
        if self.timeout is not None:
            times.append(self._heard + self.timeout)
        if self.interval is not None and self._handshake_at is None:
            times.append(max(self._heard, self._pinged) + self.interval)
        return min(times) if times else None

    def handle_timer(self, now: float) -> KeepaliveAction:
        """Decide at ``now``: cut the connection, send a ping, or nothing.

        Due times are compared exactly as :meth:`get_timer` computes them, so a
        timer armed at ``get_timer()`` always finds its work due.
        """
        if (
            self._handshake_at is not None
            and self.handshake_timeout is not None
            and now >= self._handshake_at + self.handshake_timeout
        ):
            self.silence = now - self._handshake_at
            return KeepaliveAction.CUT
        if self.timeout is not None and now >= self._heard + self.timeout:
            self.silence = now - self._heard
            return KeepaliveAction.CUT
        if (
            self.interval is not None
            and self._handshake_at is None
            and now >= max(self._heard, self._pinged) + self.interval
        ):
            self._pinged = now
            return KeepaliveAction.PING
        return KeepaliveAction.NOTHING
