"""Round-trip time estimation and the retransmission timeout, as RFC 6298 says.

Rules of this file (numbers are RFC 6298's sections):

* (2.1) Before the first sample, RTO is ``initial_rto`` (RFC: 1 s).
* (2.2) First sample R: ``SRTT = R``, ``RTTVAR = R / 2``.
* (2.3) Later samples R': ``RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'|`` (updated
  first, with the old SRTT), then ``SRTT = 7/8 SRTT + 1/8 R'``.
* ``RTO = SRTT + max(G, 4 RTTVAR)``, then (2.4) raised to ``min_rto`` and
  (2.5) capped at ``max_rto``. RFC 6298 recommends a 1 s minimum; like most
  stacks we default to 200 ms and let the caller choose.
* (5.5) Each expiry of the timer doubles RTO ("back off the timer"), capped
  at ``max_rto``; the backed-off value holds until the next valid sample.
* Karn's rule is the caller's duty: never pass a sample measured on a
  retransmitted segment (its ACK may be for either transmission).
"""

from __future__ import annotations

from typing import Final, final

from ..errors import UsageError

__all__ = ["RttEstimator"]

ALPHA: Final = 1 / 8
BETA: Final = 1 / 4
K: Final = 4


@final
class RttEstimator:
    """SRTT, RTTVAR and RTO from RTT samples (seconds)."""

    __slots__ = (
        "granularity",
        "initial_rto",
        "latest",
        "max_rto",
        "min_rto",
        "rto",
        "rttvar",
        "samples",
        "srtt",
    )

    def __init__(
        self,
        *,
        initial_rto: float = 1.0,
        min_rto: float = 0.2,
        max_rto: float = 60.0,
        granularity: float = 0.001,
    ) -> None:
        if not 0 < min_rto <= initial_rto <= max_rto or not granularity > 0:
            raise UsageError(
                "RTO bounds need 0 < min_rto <= initial_rto <= max_rto and granularity > 0"
            )
        self.initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.latest = 0.0
        self.rto = initial_rto
        self.samples = 0

    def on_sample(self, rtt: float) -> None:
        """Fold in one RTT measurement (from a segment sent exactly once)."""
        rtt = max(rtt, 0.0)
        self.latest = rtt
        self.samples += 1
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self.rto = min(
            self.max_rto, max(self.min_rto, self.srtt + max(self.granularity, K * self.rttvar))
        )

    def backoff(self) -> None:
        """The retransmission timer expired: double RTO (capped)."""
        self.rto = min(self.max_rto, self.rto * 2)

    def smoothed(self) -> float:
        """SRTT, or the initial RTO before any sample."""
        return self.initial_rto if self.srtt is None else self.srtt

    def __repr__(self) -> str:
        return f"RttEstimator(srtt={self.srtt}, rttvar={self.rttvar}, rto={self.rto})"
