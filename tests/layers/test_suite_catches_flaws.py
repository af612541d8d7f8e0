"""The layer conformance suite can fail: a toy framing with one deliberate flaw at a
time must fail the test for the rule it breaks, and pass all of them when flawless."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self

import pytest

from netweave import FrameTooLarge, ProtocolError, TruncatedInput, UsageError
from netweave.layers import Framing
from netweave.testing import LayerConformance


class ToyFraming(Framing):
    """A one-byte length prefix that can be told to break one rule of the contract."""

    def __init__(self, flaw: str | None = None, shared: bytearray | None = None) -> None:
        self.name = "toy"
        self.max_frame = 16
        self.flaw = flaw
        self._buffer = shared if shared is not None else bytearray()

    def clone(self) -> Self:
        shared = self._buffer if self.flaw == "shares-state-with-clones" else None
        return type(self)(self.flaw, shared)

    def encode(self, unit: bytes) -> bytes:
        if len(unit) > self.max_frame:
            raise UsageError("too long")
        return bytes([len(unit)]) + unit

    def decode(self, data: bytes) -> list[bytes]:
        if self.flaw == "forgets-partial-units":
            self._buffer = bytearray()
        self._buffer += data
        frames: list[bytes] = []
        while self._buffer:
            length = self._buffer[0]
            if length == 0xFF and self.flaw == "leaks-value-error":
                raise ValueError("a bug: not a ProtocolError")
            if length == 0xFE and self.flaw == "names-another-layer":
                raise ProtocolError("bad header", layer="somebody-else")
            if length > self.max_frame and self.flaw != "ignores-its-maximum":
                self._buffer = bytearray()
                raise FrameTooLarge(layer=self.name, size=length, limit=self.max_frame)
            if len(self._buffer) < 1 + length:
                break
            frames.append(bytes(self._buffer[1 : 1 + length]))
            del self._buffer[: 1 + length]
        return frames

    def end_of_input(self) -> list[bytes]:
        if self._buffer and self.flaw != "hides-truncation":
            raise TruncatedInput(layer=self.name, pending=len(self._buffer))
        return []

    @property
    def buffered(self) -> int:
        return len(self._buffer)


class ToySuite(LayerConformance):
    flaw: ClassVar[str | None] = None

    def make_layer(self) -> ToyFraming:
        return ToyFraming(self.flaw)

    def samples(self) -> Sequence[bytes]:
        return [b"", b"ab", b"x" * 16]

    def garbage(self) -> Sequence[bytes]:
        return [b"\x11" + b"y" * 17, b"\x05ab"]

    def oversize(self) -> tuple[bytes, int]:
        return b"\x20" + b"z" * 40, 1

    def buffer_bound(self, layer: Any) -> int:
        return 16


RULES = [
    name
    for name in dir(LayerConformance)
    if name.startswith("test_") and callable(getattr(LayerConformance, name))
]


@pytest.mark.parametrize("rule", RULES)
def test_flawless_layer_passes_every_rule(rule: str) -> None:
    getattr(ToySuite(), rule)()


def outcome(test: Callable[[], None]) -> BaseException:
    try:
        test()
    except pytest.skip.Exception:
        pytest.fail("the rule was skipped instead of failing")
    except Exception as exc:
        return exc
    except pytest.fail.Exception as exc:
        return exc
    except BaseExceptionGroup as exc:
        return exc
    pytest.fail("the suite passed a layer that breaks this rule")


@pytest.mark.parametrize(
    ("flaw", "rule"),
    [
        ("leaks-value-error", "test_fuzz_only_protocol_errors"),
        ("names-another-layer", "test_fuzz_only_protocol_errors"),
        ("ignores-its-maximum", "test_oversize_rejected_early"),
        ("ignores-its-maximum", "test_garbage_is_rejected"),
        ("shares-state-with-clones", "test_clone_has_fresh_state"),
        ("forgets-partial-units", "test_feed_one_byte_at_a_time"),
        ("forgets-partial-units", "test_feed_random_splits"),
        ("hides-truncation", "test_end_of_input"),
        ("hides-truncation", "test_garbage_is_rejected"),
    ],
)
def test_flawed_layer_fails_the_rule_it_breaks(flaw: str, rule: str) -> None:
    suite = type("FlawedSuite", (ToySuite,), {"flaw": flaw})()
    error = outcome(getattr(suite, rule))
    assert not isinstance(error, pytest.skip.Exception)
