"""Each package's ``__all__`` is exactly its public surface."""

from __future__ import annotations

import importlib
import inspect

import pytest


@pytest.mark.parametrize("package", ["netweave.resilience", "netweave.session"])
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
            or type(value).__module__ in ("types", "typing")  # type aliases such as Handler
        )
    }
    assert public == exported
    assert sorted(module.__all__) == list(module.__all__)
