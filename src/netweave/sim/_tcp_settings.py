"""Tunables of simulated TCP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from ..errors import UsageError

__all__ = ["TcpSettings"]


@final
@dataclass(frozen=True, slots=True)
class TcpSettings:
    """Tunables of simulated TCP (seconds and bytes).

    ``rcvbuf`` is the receive window; ``sndbuf`` the bytes a connection holds
    for sending before the transport's own write buffer starts to count (and
    ``pause_writing`` can trigger). ``user_timeout``: unacknowledged data, an
    unanswered SYN or unanswered window probes for this long fail the connection
    with ``TimeoutError`` (ETIMEDOUT) — this is how a lasting partition or a
    silent peer ends a connection. ``fin_timeout`` bounds how long a closed
    socket waits for the peer's FIN. ``ack_delay`` is the delayed-ACK timer.
    """

    rcvbuf: int = 65536
    sndbuf: int = 65536
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    user_timeout: float = 30.0
    fin_timeout: float = 60.0
    ack_delay: float = 0.04
    initial_window: int = 10

    def __post_init__(self) -> None:
        for name in ("rcvbuf", "sndbuf", "initial_window"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise UsageError(f"TcpSettings.{name} must be an int >= 1, got {value!r}")
        for name in ("initial_rto", "min_rto", "max_rto", "user_timeout", "fin_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise UsageError(f"TcpSettings.{name} must be > 0 seconds, got {value!r}")
        if not self.ack_delay >= 0:
            raise UsageError(f"TcpSettings.ack_delay must be >= 0, got {self.ack_delay!r}")
        if self.min_rto > self.max_rto:
            raise UsageError("TcpSettings.min_rto must not exceed max_rto")
