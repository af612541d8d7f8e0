"""The layer conformance suite: every rule of :mod:`netweave.layers.base`, one test each.

Subclass :class:`LayerConformance` in a test module under a name pytest
collects (``class TestMyCodec(LayerConformance)``), implement
:meth:`~LayerConformance.make_layer` and :meth:`~LayerConformance.samples`, and
give the optional hooks that apply to your layer::

    from netweave.layers import Varint
    from netweave.testing import LayerConformance

    class TestVarint(LayerConformance):
        def make_layer(self):
            return Varint(max_frame=64)

        def samples(self):
            return [b"", b"x", b"\\n" * 64]

        def oversize(self):
            return b"\\x41" + b"x" * 65, 1  # header announces 65 bytes: known after 1 byte

The suite needs ``pytest`` and ``hypothesis`` (``pip install 'netweave[test]'``).
Randomness is seeded (``seed``) and hypothesis runs derandomized, so a run is
reproducible.
"""

from __future__ import annotations

import itertools
import random  # determinism: ok (seeded random.Random instances only, never the global functions)
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import FrameTooLarge, ProtocolError, TruncatedInput, UsageError
from ..layers.base import Framing, Layer

__all__ = ["LayerConformance"]

_KINDS = ("stream", "frame", "object")
#: Byte values at the edges of common encodings (lengths, varint bits, delimiters, utf-8).
_EDGE_BYTES = (0x00, 0x01, 0x0A, 0x0D, 0x7F, 0x80, 0x81, 0xC0, 0xC3, 0xED, 0xFE, 0xFF)


@st.composite
def _mutations(draw: st.DrawFn, encoded: Sequence[bytes]) -> bytes:
    """A valid encoding with one byte changed, truncated, or with bytes appended."""
    data = bytearray(draw(st.sampled_from(encoded)))
    how = draw(st.sampled_from(("flip", "truncate", "append")))
    if how == "flip" and data:
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= draw(st.integers(1, 255))
    elif how == "truncate" and data:
        del data[draw(st.integers(0, len(data) - 1)) :]
    else:
        data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class LayerConformance(ABC):
    """Checks one layer implementation against the layer contract.

    Required: :meth:`make_layer` (a new layer each call, always configured the
    same way) and :meth:`samples` (upper units that must round trip; include
    edge cases such as empty and maximum-size units). Optional hooks:
    :meth:`garbage` (lower inputs that must be rejected), :meth:`oversize` (an
    input whose unit is over the layer's limit), :meth:`unencodable` (units
    ``encode`` must refuse), :meth:`buffer_bound` (the most bytes the layer may
    hold) and :meth:`assert_units_equal`. Tests whose hook returns nothing are
    skipped with a reason.

    Stream-level layers (``lower_kind == "stream"``) are fed every input whole,
    one byte at a time and in seeded random splits; frame-level layers get one
    whole frame per ``decode``.

    The suite assumes a symmetric layer: what one layer encodes, a fresh layer of
    the same configuration decodes. Layers that need a conversation between two
    peers first (a TLS handshake) are checked in pairs by their own tests.
    """

    #: Seed of the random splits.
    seed: ClassVar[int] = 0
    #: How many random splittings of the samples are tried.
    split_rounds: ClassVar[int] = 20
    #: How many generated inputs the garbage test feeds (hypothesis ``max_examples``).
    garbage_examples: ClassVar[int] = 200
    #: The largest generated garbage input, in bytes.
    garbage_max_size: ClassVar[int] = 512
    #: The most prefixes of each sample that the truncation test tries.
    truncation_cuts: ClassVar[int] = 64

    # -- hooks ---------------------------------------------------------------

    @abstractmethod
    def make_layer(self) -> Layer[Any, Any]:
        """A new layer with fresh state (same configuration on every call)."""

    @abstractmethod
    def samples(self) -> Sequence[Any]:
        """Upper units that must survive ``encode`` then ``decode`` unchanged (at least one)."""

    def garbage(self) -> Sequence[Any]:
        """Lower inputs (each a whole input for a fresh layer) that must raise this
        layer's ``ProtocolError`` from ``decode`` or ``end_of_input``."""
        return ()

    def oversize(self) -> tuple[Any, int] | None:
        """``(input, known_at)``: lower input carrying a unit over the layer's limit, and
        the number of bytes after which the layer knows it (``FrameTooLarge`` must be
        raised by then when fed one byte at a time). ``None`` if the layer has no limit."""
        return None

    def unencodable(self) -> Sequence[Any]:
        """Upper units that ``encode`` must refuse with ``UsageError``. For a framing,
        by default one frame one byte over ``max_frame`` (when that is at most 16 MiB)."""
        layer = self.make_layer()
        if isinstance(layer, Framing) and layer.max_frame < 1 << 24:
            return (b"\x00" * (layer.max_frame + 1),)
        return ()

    def buffer_bound(self, layer: Layer[Any, Any]) -> int:
        """The most bytes ``layer.buffered`` may report at any time. Defaults to
        ``max_frame + 64`` for a framing and 0 (holds nothing) for any other layer."""
        if isinstance(layer, Framing):
            return layer.max_frame + 64
        return 0

    def assert_units_equal(self, got: Sequence[Any], expected: Sequence[Any]) -> None:
        """Assert that decoded units equal the expected ones (override for types
        without a useful ``==``)."""
        assert list(got) == list(expected), f"decoded {got!r}, expected {expected!r}"

    # -- helpers -------------------------------------------------------------

    def _encoded(self) -> list[Any]:
        encoder = self.make_layer()
        return [encoder.encode(sample) for sample in self.samples()]

    def _is_stream(self, layer: Layer[Any, Any]) -> bool:
        return layer.lower_kind == "stream"

    def _check_bound(self, layer: Layer[Any, Any]) -> None:
        bound = self.buffer_bound(layer)
        assert layer.buffered <= bound, (
            f"{layer!r} holds {layer.buffered} bytes, over its bound of {bound}"
        )

    def _feed(self, layer: Layer[Any, Any], pieces: Sequence[Any]) -> list[Any]:
        units: list[Any] = []
        for piece in pieces:
            units.extend(layer.decode(piece))
            self._check_bound(layer)
        units.extend(layer.end_of_input())
        assert layer.buffered == 0, f"{layer!r} still holds {layer.buffered} bytes at the end"
        return units

    def _drive(
        self,
        layer: Layer[Any, Any],
        pieces: Sequence[Any],
        *,
        finish: bool,
        fed: list[int] | None = None,
    ) -> None:
        """Feed ``pieces`` (checking the bound after each), then end the input if ``finish``.
        ``fed`` gets one entry per piece handed to ``decode``."""
        for piece in pieces:
            if fed is not None:
                fed.append(len(piece))
            layer.decode(piece)
            self._check_bound(layer)
        if finish:
            layer.end_of_input()

    def _check_protocol_error(self, layer: Layer[Any, Any], exc: ProtocolError) -> None:
        assert exc.layer == layer.name, (
            f"{layer!r} raised a ProtocolError naming layer {exc.layer!r}, not {layer.name!r}"
        )

    # -- the rules -----------------------------------------------------------

    def test_declares_itself(self) -> None:
        """A layer has a name and declares which unit kinds it takes and gives."""
        layer = self.make_layer()
        assert isinstance(layer, Layer)
        assert isinstance(layer.name, str)
        assert layer.name
        assert layer.lower_kind in _KINDS
        assert layer.upper_kind in _KINDS
        assert layer.lower_kind != "object", "a layer cannot consume application objects"
        assert self.samples(), "give at least one sample unit"
        assert layer.buffered == 0

    def test_round_trip(self) -> None:
        """Each sample, encoded then decoded by a fresh layer, comes back unchanged."""
        for sample in self.samples():
            layer = self.make_layer()
            self.assert_units_equal(self._feed(layer, [layer.encode(sample)]), [sample])

    def test_feed_whole(self) -> None:
        """All samples in one input (stream) or one frame per decode (frame) come back in order."""
        layer = self.make_layer()
        encoded = self._encoded()
        pieces = [b"".join(encoded)] if self._is_stream(layer) else encoded
        self.assert_units_equal(self._feed(layer, pieces), self.samples())

    def test_feed_one_byte_at_a_time(self) -> None:
        """Fed one byte per decode, a stream layer gives the same units as fed whole."""
        layer = self.make_layer()
        encoded = self._encoded()
        if self._is_stream(layer):
            data = b"".join(encoded)
            pieces: list[Any] = [data[i : i + 1] for i in range(len(data))]
            assert layer.decode(b"") == [], "an empty input must give no units"
        else:
            pieces = encoded
        self.assert_units_equal(self._feed(layer, pieces), self.samples())

    def test_feed_random_splits(self) -> None:
        """Cut at seeded random places, a stream gives the same units as fed whole."""
        rng = random.Random(self.seed)
        encoded = self._encoded()
        for _ in range(self.split_rounds):
            layer = self.make_layer()
            if not self._is_stream(layer):
                self.assert_units_equal(self._feed(layer, encoded), self.samples())
                continue
            data = b"".join(encoded)
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12))))
            bounds = [0, *cuts, len(data)]
            pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
            self.assert_units_equal(self._feed(layer, pieces), self.samples())

    def test_garbage_is_rejected(self) -> None:
        """Each known-bad input raises this layer's ``ProtocolError``, whole and byte by byte."""
        garbage = self.garbage()
        if not garbage:
            pytest.skip("no garbage() samples given for this layer")
        for bad in garbage:
            layer = self.make_layer()
            splits: list[list[Any]] = [[bad]]
            if self._is_stream(layer):
                splits.append(list(_chunks(bad, 1)))
            for pieces in splits:
                layer = self.make_layer()
                try:
                    self._drive(layer, pieces, finish=True)
                except ProtocolError as exc:
                    self._check_protocol_error(layer, exc)
                else:
                    shown = repr(bad) if len(bad) <= 80 else f"{bad[:80]!r}... ({len(bad)} bytes)"
                    pytest.fail(
                        f"{layer!r} accepted garbage {shown} in {len(pieces)} piece(s) "
                        f"without a ProtocolError"
                    )
                self._check_bound(layer)

    def _survives(self, data: bytes, chunk: int) -> None:
        layer = self.make_layer()
        pieces = list(_chunks(data, chunk)) if self._is_stream(layer) else [data]
        try:
            self._drive(layer, pieces, finish=True)
        except ProtocolError as exc:
            self._check_protocol_error(layer, exc)
        self._check_bound(layer)

    def test_fuzz_only_protocol_errors(self) -> None:
        """Any input (every one-byte start, random bytes, mutated encodings), in any
        chunking, gives units or this layer's ``ProtocolError``, never another exception,
        within the buffer bound."""
        encoded = [bytes(item) for item in self._encoded()]
        tail = max(encoded, key=len)
        for first in range(256):  # every first byte, alone and followed by more input
            self._survives(bytes((first,)), 1)
            self._survives(bytes((first,)) + tail, 7)
        edges = st.lists(
            st.sampled_from(_EDGE_BYTES) | st.integers(0, 255), max_size=self.garbage_max_size
        ).map(bytes)
        inputs = st.binary(max_size=self.garbage_max_size) | edges | _mutations(encoded)

        @settings(
            max_examples=self.garbage_examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=inputs, chunk=st.integers(1, 64))
        def check(data: bytes, chunk: int) -> None:
            self._survives(data, chunk)

        check()

    def test_oversize_rejected_early(self) -> None:
        """A unit over the limit raises ``FrameTooLarge`` as soon as its size is known,
        holding no more than the buffer bound."""
        case = self.oversize()
        if case is None:
            pytest.skip("this layer has no size limit (oversize() is None)")
        data, known_at = case
        layer = self.make_layer()
        with pytest.raises(FrameTooLarge) as info:
            layer.decode(data)
        self._check_protocol_error(layer, info.value)
        assert info.value.size > info.value.limit
        self._check_bound(layer)
        layer = self.make_layer()
        if not self._is_stream(layer):
            return
        fed: list[int] = []
        with pytest.raises(FrameTooLarge):
            self._drive(layer, list(_chunks(data, 1)), finish=False, fed=fed)
        assert len(fed) <= known_at, (
            f"rejected after {len(fed)} bytes, but the size was known after {known_at}"
        )
        self._check_bound(layer)

    def test_encode_refuses_what_it_cannot_carry(self) -> None:
        """``encode`` raises ``UsageError`` (our fault, not the peer's) for what it cannot carry."""
        units = self.unencodable()
        if not units:
            pytest.skip("no unencodable() units given for this layer")
        for unit in units:
            with pytest.raises(UsageError):
                self.make_layer().encode(unit)

    def test_end_of_input(self) -> None:
        """A stream ending inside a unit raises ``TruncatedInput``; after whole units,
        ``end_of_input`` returns nothing more and nothing stays buffered."""
        layer = self.make_layer()
        encoded = self._encoded()
        self._feed(layer, [b"".join(encoded)] if self._is_stream(layer) else encoded)
        if not self._is_stream(layer):
            return
        for data in encoded:
            if len(data) < 2:
                continue
            step = max(1, (len(data) - 1) // self.truncation_cuts)
            for cut in range(1, len(data), step):
                layer = self.make_layer()
                assert layer.decode(data[:cut]) == [], "a partial unit must not be delivered"
                with pytest.raises(TruncatedInput) as info:
                    layer.end_of_input()
                self._check_protocol_error(layer, info.value)
                assert info.value.pending > 0

    def test_clone_has_fresh_state(self) -> None:
        """``clone()`` gives an independent layer with the same configuration and no state."""
        layer = self.make_layer()
        encoded = self._encoded()
        longest = max(encoded, key=len)
        partial = longest[: len(longest) // 2] if self._is_stream(layer) else b""
        if partial:
            assert layer.decode(partial) == []
        twin = layer.clone()
        assert twin is not layer
        assert type(twin) is type(layer)
        assert twin.name == layer.name
        assert twin.buffered == 0
        pieces = [b"".join(encoded)] if self._is_stream(twin) else encoded
        self.assert_units_equal(self._feed(twin, pieces), self.samples())
        if partial:
            rest = longest[len(partial) :]
            index = encoded.index(longest)
            self.assert_units_equal(self._feed(layer, [rest]), [self.samples()[index]])
