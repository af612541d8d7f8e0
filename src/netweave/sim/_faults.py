"""Fault rules: an ordered chain per link that looks at each packet and decides.

Rules of this file:

* A rule is any callable ``rule(packet, rng) -> Verdict | None``. ``None`` means
  "no opinion": the next rule looks. :data:`PASS` accepts the packet and skips
  the rest of the chain; :data:`DROP` loses it and stops; :func:`Verdict.delay`
  adds delay, :data:`DUPLICATE`, :data:`CORRUPT` and :data:`REORDER` mark it,
  and evaluation goes on. The link's own random faults apply afterwards to
  whatever the chain let through.
* Probabilistic rules draw exactly once from the link's random stream per
  packet they match, and never for packets they do not match.
* Rules are installed for a scope: ``with chain.install(rule): ...`` removes
  them on exit, whatever happens in the block; the returned handle's
  ``remove()`` does the same outside a ``with``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, final

from ..errors import UsageError
from ._link import CORRUPTED, DUPLICATED, REORDERED
from ._packet import ICMP, TCP, UDP, Packet

if TYPE_CHECKING:
    from random import Random

__all__ = [
    "CORRUPT",
    "DROP",
    "DUPLICATE",
    "PASS",
    "REORDER",
    "Match",
    "Rule",
    "RuleChain",
    "RuleFn",
    "RuleHandle",
    "Verdict",
]

_PASS: Final = 0
_DROP: Final = 1
_DELAY: Final = 2
_MARK: Final = 3


@final
@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule decided for one packet. Use the constants or :meth:`delay`."""

    action: int
    delay_ns: int = 0
    mark: int = 0

    @staticmethod
    def delay(seconds: float) -> Verdict:
        """Hold the packet back ``seconds`` longer (later packets may overtake it)."""
        if not seconds >= 0:
            raise UsageError(f"a delay must be >= 0 seconds, got {seconds!r}")
        return Verdict(_DELAY, round(seconds * 1_000_000_000))


#: Accept the packet; later rules in the chain are skipped.
PASS: Final = Verdict(_PASS)
#: Lose the packet.
DROP: Final = Verdict(_DROP)
#: Deliver the packet twice.
DUPLICATE: Final = Verdict(_MARK, mark=DUPLICATED)
#: Flip one bit of the packet (datagrams arrive damaged; TCP discards the segment).
CORRUPT: Final = Verdict(_MARK, mark=CORRUPTED)
#: Hold the packet back by the link's ``reorder_delay`` so later packets overtake it.
REORDER: Final = Verdict(_MARK, mark=REORDERED)

#: A rule: looks at a packet (and may draw once from the link's stream).
RuleFn = Callable[[Packet, "Random"], Verdict | None]

_PROTOS: Final = {"tcp": TCP, "udp": UDP, "icmp": ICMP}


@final
@dataclass(frozen=True, slots=True)
class Match:
    """Which packets a :class:`Rule` applies to; every given field must match.

    ``flags`` are TCP flag bits that must all be set (``SYN``, ``FIN | ACK``);
    ``contains`` must occur in the payload; ``where`` is any extra predicate.
    """

    proto: Literal["tcp", "udp", "icmp"] | None = None
    src_host: str | None = None
    dst_host: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    flags: int | None = None
    contains: bytes | None = None
    where: Callable[[Packet], bool] | None = None

    def __post_init__(self) -> None:
        if self.proto is not None and self.proto not in _PROTOS:
            raise UsageError(f"proto must be 'tcp', 'udp' or 'icmp', got {self.proto!r}")

    def __call__(self, packet: Packet) -> bool:
        """Whether ``packet`` matches."""
        if self.proto is not None and packet.proto != _PROTOS[self.proto]:
            return False
        if self.src_host is not None and packet.src_host != self.src_host:
            return False
        if self.dst_host is not None and packet.dst_host != self.dst_host:
            return False
        if self.src_port is not None and packet.src_port != self.src_port:
            return False
        if self.dst_port is not None and packet.dst_port != self.dst_port:
            return False
        if self.flags is not None and (
            packet.proto != TCP or packet.flags & self.flags != self.flags
        ):
            return False
        if self.contains is not None and self.contains not in packet.payload:
            return False
        return self.where is None or self.where(packet)


@final
class Rule:
    """A ready-made rule: for packets that ``match``, apply ``verdict`` with ``probability``.

    ``times`` limits how many packets the rule acts on (``None`` = no limit);
    :attr:`hits` counts them. Build rules with the class methods::

        Rule.drop(probability=0.1, match=Match(proto="udp"))
        Rule.drop(times=1, match=Match(flags=SYN))      # lose the first SYN only
        Rule.delay(0.05)
    """

    __slots__ = ("hits", "match", "probability", "times", "verdict")

    def __init__(
        self,
        verdict: Verdict,
        *,
        probability: float = 1.0,
        match: Match | None = None,
        times: int | None = None,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise UsageError(f"probability must be between 0 and 1, got {probability!r}")
        if times is not None and times < 0:
            raise UsageError(f"times must be >= 0 or None, got {times!r}")
        self.verdict = verdict
        self.probability = probability
        self.match = match
        self.times = times
        self.hits = 0

    @classmethod
    def accept(cls, *, match: Match | None = None, times: int | None = None) -> Rule:
        """Let matching packets through untouched by later rules."""
        return cls(PASS, match=match, times=times)

    @classmethod
    def drop(
        cls, probability: float = 1.0, *, match: Match | None = None, times: int | None = None
    ) -> Rule:
        """Lose matching packets."""
        return cls(DROP, probability=probability, match=match, times=times)

    @classmethod
    def delay(
        cls,
        seconds: float,
        probability: float = 1.0,
        *,
        match: Match | None = None,
        times: int | None = None,
    ) -> Rule:
        """Hold matching packets back ``seconds`` longer."""
        return cls(Verdict.delay(seconds), probability=probability, match=match, times=times)

    @classmethod
    def duplicate(
        cls, probability: float = 1.0, *, match: Match | None = None, times: int | None = None
    ) -> Rule:
        """Deliver matching packets twice."""
        return cls(DUPLICATE, probability=probability, match=match, times=times)

    @classmethod
    def corrupt(
        cls, probability: float = 1.0, *, match: Match | None = None, times: int | None = None
    ) -> Rule:
        """Flip one bit in matching packets."""
        return cls(CORRUPT, probability=probability, match=match, times=times)

    @classmethod
    def reorder(
        cls, probability: float = 1.0, *, match: Match | None = None, times: int | None = None
    ) -> Rule:
        """Hold matching packets back so that later ones overtake them."""
        return cls(REORDER, probability=probability, match=match, times=times)

    def __call__(self, packet: Packet, rng: Random) -> Verdict | None:
        if self.times is not None and self.hits >= self.times:
            return None
        if self.match is not None and not self.match(packet):
            return None
        if self.probability < 1.0 and rng.random() >= self.probability:
            return None
        self.hits += 1
        return self.verdict

    def __repr__(self) -> str:
        return (
            f"Rule({self.verdict!r}, probability={self.probability}, "
            f"match={self.match!r}, times={self.times}, hits={self.hits})"
        )


@final
class RuleHandle:
    """Rules installed in one or more chains; a context manager that removes them on exit."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[tuple[RuleChain, tuple[RuleFn, ...]]]) -> None:
        self._entries = entries

    def remove(self) -> None:
        """Take the rules out of their chains (idempotent)."""
        entries, self._entries = self._entries, []
        for chain, rules in entries:
            for rule in rules:
                chain.discard(rule)

    def __enter__(self) -> RuleHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


@final
class RuleChain:
    """An ordered list of rules applied to each packet of one link (or of all links)."""

    __slots__ = ("rules",)

    def __init__(self) -> None:
        self.rules: list[RuleFn] = []

    def install(self, *rules: RuleFn, first: bool = False) -> RuleHandle:
        """Append ``rules`` (or put them before the others with ``first=True``).

        Returns a handle: use it as a context manager, or call ``remove()``.
        """
        for rule in rules:
            if not callable(rule):
                raise UsageError(f"a rule must be callable as rule(packet, rng), got {rule!r}")
        if first:
            self.rules[:0] = rules
        else:
            self.rules.extend(rules)
        return RuleHandle([(self, rules)])

    def discard(self, rule: RuleFn) -> None:
        """Remove one installed ``rule`` if present."""
        for index, present in enumerate(self.rules):
            if present is rule:
                del self.rules[index]
                return

    def clear(self) -> None:
        """Remove every rule."""
        self.rules.clear()

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[RuleFn]:
        return iter(list(self.rules))

    def evaluate(self, packet: Packet, rng: Random) -> tuple[int, int]:
        """Run the chain: ``(-1, 0)`` if dropped, else ``(extra_delay_ns, mark_bits)``."""
        extra = 0
        marks = 0
        for rule in self.rules:
            verdict = rule(packet, rng)
            if verdict is None:
                continue
            action = verdict.action
            if action == _DROP:
                return -1, 0
            if action == _PASS:
                break
            if action == _DELAY:
                extra += verdict.delay_ns
            else:
                marks |= verdict.mark
        return extra, marks
