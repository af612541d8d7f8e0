"""One direction of a link between two simulated hosts: its settings and its state.

Rules of this file:

* :class:`LinkConfig` is a frozen value; :class:`Link` holds the mutable state
  (transmitter busy time, the FIFO watermark, counters) and the link's own
  random stream. It is sans-IO: :meth:`Link.plan` takes ``now`` and returns when
  the packet arrives (or why it does not), nothing else.
* Packets arrive in the order they were sent: a later packet never overtakes
  an earlier one because of jitter. Reordering happens only through the
  ``reorder`` probability or a rule: a reordered packet is held back by
  ``reorder_delay`` (a rule's delay likewise) without holding back the packets
  behind it.
* Randomness: exactly one draw per fault decision whose probability is above
  zero, one per latency sample of a random distribution, one per jitter sample.
  A setting at zero draws nothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from ..errors import UsageError

if TYPE_CHECKING:
    from random import Random

    from ._faults import RuleChain

__all__ = [
    "CORRUPTED",
    "DUPLICATED",
    "DROP_LOSS",
    "DROP_QUEUE",
    "REORDERED",
    "ExponentialTail",
    "Fixed",
    "Latency",
    "Link",
    "LinkConfig",
    "LinkStats",
    "Normal",
    "Uniform",
    "as_latency",
]

#: Bits of the ``flags`` that :meth:`Link.plan` returns for a delivered packet.
DUPLICATED: Final = 1
REORDERED: Final = 2
CORRUPTED: Final = 4
#: Drop reasons :meth:`Link.plan` returns (as ``flags``) with an arrival time of -1.
DROP_LOSS: Final = 1
DROP_QUEUE: Final = 2

_NS: Final = 1_000_000_000


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


def _check_seconds(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise UsageError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


class Latency(ABC):
    """A one-way delay distribution. ``sample_ns`` draws at most once from ``rng``."""

    __slots__ = ()

    @abstractmethod
    def sample_ns(self, rng: Random) -> int:
        """One delay in integer nanoseconds (never negative)."""


@final
@dataclass(frozen=True, slots=True)
class Fixed(Latency):
    """Always ``seconds``; draws nothing."""

    seconds: float
    ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_seconds("Fixed latency", self.seconds)
        object.__setattr__(self, "ns", _ns(self.seconds))

    def sample_ns(self, rng: Random) -> int:
        return self.ns


@final
@dataclass(frozen=True, slots=True)
class Uniform(Latency):
    """Uniform between ``low`` and ``high`` seconds."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_seconds("Uniform low", self.low)
        _check_seconds("Uniform high", self.high)
        if self.high < self.low:
            raise UsageError(f"Uniform latency needs low <= high, got {self.low} > {self.high}")

    def sample_ns(self, rng: Random) -> int:
        return _ns(self.low + (self.high - self.low) * rng.random())


@final
@dataclass(frozen=True, slots=True)
class Normal(Latency):
    """Normal with ``mean`` and ``stddev`` seconds, cut off below at ``minimum``."""

    mean: float
    stddev: float
    minimum: float = 0.0

    def __post_init__(self) -> None:
        _check_seconds("Normal mean", self.mean)
        _check_seconds("Normal stddev", self.stddev)
        _check_seconds("Normal minimum", self.minimum)

    def sample_ns(self, rng: Random) -> int:
        return _ns(max(self.minimum, rng.gauss(self.mean, self.stddev)))


@final
@dataclass(frozen=True, slots=True)
class ExponentialTail(Latency):
    """``base`` plus an exponential tail of mean ``tail`` seconds, capped at ``cap`` if given.

    Models a path that is usually fast with occasional long delays.
    """

    base: float
    tail: float
    cap: float | None = None

    def __post_init__(self) -> None:
        _check_seconds("ExponentialTail base", self.base)
        _check_seconds("ExponentialTail tail", self.tail)
        if self.cap is not None:
            _check_seconds("ExponentialTail cap", self.cap)
            if self.cap < self.base:
                raise UsageError("ExponentialTail cap must be at least base")

    def sample_ns(self, rng: Random) -> int:
        extra = rng.expovariate(1.0 / self.tail) if self.tail > 0 else 0.0
        delay = self.base + extra
        if self.cap is not None and delay > self.cap:
            delay = self.cap
        return _ns(delay)


def as_latency(value: Latency | float) -> Latency:
    """``value`` itself, or :class:`Fixed` for a number of seconds."""
    if isinstance(value, Latency):
        return value
    return Fixed(value)


def _check_probability(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise UsageError(f"{name} must be a probability between 0 and 1, got {value!r}")


@final
@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Settings of one direction of a link.

    * ``latency``: seconds or a :class:`Latency` distribution (fixed, uniform,
      normal, exponential tail); ``jitter``: up to this many seconds added
      uniformly at random to each packet.
    * ``loss``, ``duplicate``, ``reorder``, ``corrupt``: per-packet probabilities.
      A reordered packet is held back ``reorder_delay`` seconds, letting later
      packets overtake it. Corruption flips one bit: datagrams arrive damaged,
      TCP segments are discarded by the receiver's checksum (and retransmitted).
    * ``mtu``: the largest IPv4 packet in bytes; TCP segments are sized to fit,
      larger UDP datagrams are fragmented (losing one fragment loses the datagram).
    * ``bandwidth``: bits per second (``None`` = unlimited). Each packet then
      takes ``size * 8 / bandwidth`` seconds to send, one after another; at
      most ``queue_limit`` bytes may be waiting or still being sent, a packet
      that does not fit is dropped (tail drop).
    """

    latency: Latency | float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.002
    corrupt: float = 0.0
    mtu: int = 1500
    bandwidth: float | None = None
    queue_limit: int = 1_000_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency", as_latency(self.latency))
        _check_seconds("jitter", self.jitter)
        _check_seconds("reorder_delay", self.reorder_delay)
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            _check_probability(name, getattr(self, name))
        if not (isinstance(self.mtu, int) and 68 <= self.mtu <= 65535):
            raise UsageError(f"mtu must be an int from 68 to 65535 bytes, got {self.mtu!r}")
        if self.bandwidth is not None and not (
            isinstance(self.bandwidth, int | float)
            and math.isfinite(self.bandwidth)
            and self.bandwidth > 0
        ):
            raise UsageError(
                f"bandwidth must be bits per second > 0 or None, got {self.bandwidth!r}"
            )
        if not (isinstance(self.queue_limit, int) and self.queue_limit >= 0):
            raise UsageError(f"queue_limit must be a byte count >= 0, got {self.queue_limit!r}")


@final
class LinkStats:
    """Counters of one link direction (packets, not bytes)."""

    __slots__ = (
        "corrupted",
        "delivered",
        "duplicated",
        "lost",
        "partitioned",
        "queue_dropped",
        "reordered",
        "rule_dropped",
        "sent",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.delivered = 0
        self.lost = 0
        self.queue_dropped = 0
        self.partitioned = 0
        self.rule_dropped = 0
        self.duplicated = 0
        self.reordered = 0
        self.corrupted = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}


@final
class Link:
    """The state of one direction ``src -> dst``.

    ``blocked`` is true while a partition cuts this direction (its packets are
    dropped); ``rules`` is the link's fault rule chain;
    ``explicit`` is true once the link was configured on its own (it then no
    longer follows the network's default). ``mtu`` is the largest IPv4 packet
    this direction carries. ``clean_ns`` is the fixed delay in nanoseconds when
    the settings draw nothing and limit no bandwidth (no jitter, loss,
    duplication, reordering or corruption), else -1: :meth:`plan` then only
    keeps packets in order, so a sender may plan such a packet itself, as
    ``max(now + clean_ns, last_arrival)`` (updating ``last_arrival`` and
    ``stats.sent``) for a packet that fits the MTU and meets no rule.
    """

    __slots__ = (
        "_bw",
        "_config",
        "_fixed_ns",
        "_jitter_ns",
        "_latency",
        "_reorder_ns",
        "blocked",
        "busy_until",
        "clean_ns",
        "dst",
        "explicit",
        "label",
        "last_arrival",
        "mtu",
        "rng",
        "rules",
        "src",
        "stats",
    )

    def __init__(
        self, src: str, dst: str, config: LinkConfig, rng: Random, rules: RuleChain
    ) -> None:
        self.src = src
        self.dst = dst
        self.label = f"link {src}->{dst}"
        self.rng = rng
        self.rules = rules
        self.stats = LinkStats()
        self.blocked = False
        self.explicit = False
        self.busy_until = 0
        self.last_arrival = 0
        self._config = config
        self._apply(config)

    @property
    def config(self) -> LinkConfig:
        """The current settings; assigning new ones takes effect for the next packet."""
        return self._config

    @config.setter
    def config(self, config: LinkConfig) -> None:
        self._config = config
        self._apply(config)

    def _apply(self, config: LinkConfig) -> None:
        latency = as_latency(config.latency)
        self._latency = latency
        self._fixed_ns = latency.ns if isinstance(latency, Fixed) else -1
        self._jitter_ns = _ns(config.jitter)
        self._reorder_ns = _ns(config.reorder_delay)
        self._bw = config.bandwidth
        self.mtu = config.mtu
        clean = (
            self._fixed_ns >= 0
            and self._jitter_ns == 0
            and config.bandwidth is None
            and config.loss == 0.0
            and config.duplicate == 0.0
            and config.reorder == 0.0
            and config.corrupt == 0.0
        )
        self.clean_ns = self._fixed_ns if clean else -1

    def plan(
        self, wire_size: int, now: int, *, fragments: int = 1, extra_ns: int = 0, force: int = 0
    ) -> tuple[int, int, int]:
        """Decide the fate of a packet of ``wire_size`` bytes sent at ``now`` (ns).

        ``fragments`` is the number of IP fragments it travels as (each may be
        lost); ``extra_ns`` is delay added by fault rules; ``force`` holds
        :data:`DUPLICATED`/:data:`CORRUPTED`/:data:`REORDERED` bits that rules
        imposed. Returns ``(arrival_ns, flags, duplicate_arrival_ns)``: on a drop
        ``arrival_ns`` is -1 and ``flags`` is :data:`DROP_LOSS` or
        :data:`DROP_QUEUE`; otherwise ``flags`` holds the outcome bits and
        ``duplicate_arrival_ns`` is -1 unless a copy arrives too.
        """
        config = self._config
        stats = self.stats
        stats.sent += 1
        rng = self.rng
        depart = now
        bw = self._bw
        if bw is not None:
            busy = self.busy_until
            if busy > now:
                queued = int((busy - now) * bw) // (8 * _NS)
                if queued + wire_size > config.queue_limit:
                    stats.queue_dropped += 1
                    return -1, DROP_QUEUE, -1
                depart = busy
            depart += math.ceil(wire_size * 8 * _NS / bw)
            self.busy_until = depart
        loss = config.loss
        if loss > 0.0:
            for _ in range(fragments):
                if rng.random() < loss:
                    stats.lost += 1
                    return -1, DROP_LOSS, -1
        delay = self._fixed_ns
        if delay < 0:
            delay = self._latency.sample_ns(rng)
        jitter = self._jitter_ns
        if jitter:
            delay += int(jitter * rng.random())
        arrival = depart + delay
        if arrival < self.last_arrival:  # noqa: PLR1730 (hot path: no call to max/min)
            arrival = self.last_arrival
        flags = force
        if config.reorder > 0.0 and rng.random() < config.reorder:
            flags |= REORDERED
        if flags & REORDERED:
            stats.reordered += 1
            arrival += self._reorder_ns
        else:
            self.last_arrival = arrival
        arrival += extra_ns
        if config.corrupt > 0.0 and rng.random() < config.corrupt:
            flags |= CORRUPTED
        if flags & CORRUPTED:
            stats.corrupted += 1
        dup_arrival = -1
        if config.duplicate > 0.0 and rng.random() < config.duplicate:
            flags |= DUPLICATED
        if flags & DUPLICATED:
            stats.duplicated += 1
            dup_arrival = arrival + (int(jitter * rng.random()) if jitter else 0)
        return arrival, flags, dup_arrival
