"""The sending half's bookkeeping: unacknowledged bytes, and the retransmission timeout.

Rules of this file: :class:`SendBuffer` addresses bytes by sequence number
and releases them only when acknowledged (memory is the unacknowledged data
plus what the application wrote ahead, which its high-water mark bounds);
:class:`RtoEstimator` follows RFC 6298 in integer nanoseconds.
"""

from __future__ import annotations

from typing import final

__all__ = ["RtoEstimator", "SendBuffer"]

_G = 1_000_000  # clock granularity, 1 ms


@final
class SendBuffer:
    """Bytes written and not yet acknowledged: sequence numbers ``[start, end)``."""

    __slots__ = ("_buf", "_off", "end", "start")

    def __init__(self, start: int) -> None:
        self._buf = bytearray()
        self._off = 0
        self.start = start
        self.end = start

    @property
    def held(self) -> int:
        """Bytes held (written and not yet acknowledged)."""
        return self.end - self.start

    def write(self, data: bytes) -> None:
        """Append ``data`` after :attr:`end`."""
        buf = self._buf
        if self._off and self._off * 2 >= len(buf):
            del buf[: self._off]  # amortised: compact once half the buffer is released
            self._off = 0
        buf += data
        self.end += len(data)

    def slice(self, seq: int, n: int) -> bytes:
        """``n`` bytes starting at sequence number ``seq`` (``start <= seq``, within the buffer)."""
        first = self._off + (seq - self.start)
        return bytes(self._buf[first : first + n])

    def acknowledge(self, ack: int) -> int:
        """Release everything below ``ack`` (clipped to :attr:`end`); return the bytes released."""
        released = (ack if ack < self.end else self.end) - self.start
        if released <= 0:
            return 0
        self.start += released
        self._off += released
        if self._off >= len(self._buf):
            self._buf.clear()
            self._off = 0
        return released

    def clear(self) -> None:
        """Drop everything (the connection is over)."""
        self._buf = bytearray()
        self._off = 0
        self.start = self.end


@final
class RtoEstimator:
    """RFC 6298: smoothed round-trip time, its variation, the RTO and its backoff (ns)."""

    __slots__ = ("_max", "_min", "backoff", "rto", "rttvar", "srtt")

    def __init__(self, initial: int, minimum: int, maximum: int) -> None:
        self._min = minimum
        self._max = maximum
        #: Smoothed RTT, -1 until the first sample.
        self.srtt = -1
        self.rttvar = 0
        self.rto = initial
        #: Consecutive timeouts without progress.
        self.backoff = 0

    def sample(self, rtt: int) -> None:
        """A round trip of ``rtt`` ns was measured (never on a retransmission: Karn)."""
        if self.srtt < 0:
            self.srtt = rtt
            self.rttvar = rtt // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - rtt)) // 4
            self.srtt = (7 * self.srtt + rtt) // 8
        variation = 4 * self.rttvar
        rto = self.srtt + (variation if variation > _G else _G)
        if rto < self._min:  # noqa: PLR1730 (hot path: no call to max/min)
            rto = self._min
        self.rto = rto if rto < self._max else self._max

    def back_off(self) -> None:
        """A retransmission timeout fired: double the RTO (up to the maximum)."""
        self.backoff += 1
        self.rto = min(self.rto * 2, self._max)

    def backed_off(self) -> int:
        """The RTO multiplied by 2**backoff, capped (the zero-window probe interval)."""
        return min(self.rto << min(self.backoff, 30), self._max)
