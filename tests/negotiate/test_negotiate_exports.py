"""``netweave.negotiate.__all__`` is exactly its public surface."""

from __future__ import annotations

import inspect

import netweave.negotiate as negotiate


def test_all_matches_the_public_names() -> None:
    exported = set(negotiate.__all__)
    assert len(exported) == len(negotiate.__all__), "duplicates in __all__"
    assert sorted(negotiate.__all__) == list(negotiate.__all__)
    public = {
        name
        for name, value in vars(negotiate).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and (
            getattr(value, "__module__", "netweave.negotiate").startswith("netweave.negotiate")
            or type(value).__module__ in ("types", "typing", "collections.abc")
        )
    }
    assert public == exported
