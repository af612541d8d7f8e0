"""``netweave.layers`` re-exports the public names of its modules, and only real ones."""

from __future__ import annotations

import netweave.layers
import netweave.testing
from netweave.layers import _codecs, _framing, base


def test_every_public_name_of_framing_codecs_and_base_is_exported() -> None:
    for module in (_framing, _codecs, base):
        for name in module.__all__:
            assert name in netweave.layers.__all__, f"{module.__name__}.{name} is not exported"
            assert getattr(netweave.layers, name) is getattr(module, name)


def test_all_names_exist() -> None:
    for package in (netweave.layers, netweave.testing):
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.__all__ lists missing {name}"
    assert "LayerConformance" in netweave.testing.__all__
