"""Congestion control for the ARQ sender: NewReno-like AIMD on a byte window.

Rules of this file (RFC 5681 and RFC 9002 section 7, on segments):

* Slow start below ``ssthresh`` (the window grows by every byte acknowledged),
  congestion avoidance above it (one segment per window of bytes).
* A loss starts a *recovery episode*: ``ssthresh`` and the window drop to half
  the window. Losses of segments sent before the episode began (packet numbers
  below ``recovery_start``) do not reduce again, and bytes they acknowledge do
  not grow the window; bytes of any transmission sent since (a retransmission
  too) grow it, as RFC 5681 and RFC 9002 section 7.3.2 do. So a burst of
  losses costs one reduction per round trip.
* A retransmission timeout drops the window to its minimum, two segments.
* Undo (as Linux does on proven-spurious recoveries): if every loss declared
  in the current episode turns out spurious (the original transmission was
  acknowledged: reordering, not loss), the window and threshold before the
  episode come back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ._events import CongestionChanged

if TYPE_CHECKING:
    from ..observe import Observer

__all__ = ["NewReno"]


@final
class NewReno:
    """The congestion window of one sender, in bytes."""

    __slots__ = (
        "_declared",
        "_max",
        "_min",
        "_name",
        "_observer",
        "_prior",
        "_spurious",
        "cwnd",
        "episode",
        "mss",
        "recovery_start",
        "ssthresh",
    )

    def __init__(
        self,
        *,
        mss: int,
        initial_window: int,
        max_window: int,
        observer: Observer | None = None,
        name: str = "arq",
    ) -> None:
        self.mss = mss
        self._min = 2 * mss
        self._max = max(max_window, self._min)
        self.cwnd = min(max(initial_window * mss, self._min), self._max)
        self.ssthresh = 1 << 62
        self.recovery_start = 0
        self.episode = 0
        self._prior: tuple[int, int] | None = None
        self._declared = 0
        self._spurious = 0
        self._observer = observer
        self._name = name

    def can_send(self, bytes_in_flight: int) -> bool:
        """Whether one more full segment fits in the window (always, with nothing in flight)."""
        return bytes_in_flight == 0 or bytes_in_flight + self.mss <= self.cwnd

    def on_acked(self, acked: int) -> None:
        """``acked`` bytes of segments sent during the current episode were acknowledged."""
        if not acked:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += acked
        else:
            self.cwnd += max(1, self.mss * acked // self.cwnd)
        self.cwnd = min(self.cwnd, self._max)

    def on_lost(self, count: int, newest_packet: int, next_packet: int) -> int:
        """``count`` segments were deemed lost, the newest sent in ``newest_packet``;
        ``next_packet`` is the number the next datagram will carry. Returns the
        episode the losses belong to."""
        if newest_packet >= self.recovery_start:
            self._start_episode(next_packet)
            self._set(max(self.cwnd // 2, self._min), "loss")
        self._declared += count
        return self.episode

    def on_timeout(self, bytes_in_flight: int, next_packet: int) -> None:
        """The retransmission timer expired with the window full of nothing acknowledged."""
        self._start_episode(next_packet)
        self._prior = None  # a timeout is never undone
        self.ssthresh = max(bytes_in_flight // 2, self._min)
        self.cwnd = self._min
        self._emit("rto")

    def on_spurious(self, episode: int) -> None:
        """A segment deemed lost in ``episode`` was in fact delivered the first time."""
        if episode != self.episode or self._prior is None:
            return
        self._spurious += 1
        if self._spurious >= self._declared:
            cwnd, ssthresh = self._prior
            self._prior = None
            self.ssthresh = ssthresh
            self.cwnd = max(self.cwnd, cwnd)
            self.recovery_start = 0  # growth resumes at once
            self._emit("undo")

    def _start_episode(self, next_packet: int) -> None:
        self.episode += 1
        self._prior = (self.cwnd, self.ssthresh)
        self._declared = 0
        self._spurious = 0
        self.recovery_start = next_packet

    def _set(self, window: int, cause: str) -> None:
        self.ssthresh = window
        self.cwnd = window
        self._emit(cause)

    def _emit(self, cause: str) -> None:
        if self._observer is not None:
            self._observer(CongestionChanged(self._name, self.cwnd, self.ssthresh, cause))
