"""``netweave.sim`` and ``netweave.testing`` export exactly their public surface."""

from __future__ import annotations

import importlib
import inspect

import pytest


@pytest.mark.parametrize("package", ["netweave.sim", "netweave.testing"])
def test_all_matches_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    assert all(hasattr(module, name) for name in exported)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and (
            getattr(value, "__module__", package).startswith(package)
            or type(value).__module__ in ("types", "typing", "collections.abc")
        )
    }
    assert public == exported
    assert sorted(module.__all__) == list(module.__all__)


def test_the_sim_command_group_is_imported_lazily() -> None:
    sim = importlib.import_module("netweave.sim")
    assert "cli" not in vars(sim)
    assert sim.cli.name == "sim"
    with pytest.raises(AttributeError):
        _ = sim.no_such_name
