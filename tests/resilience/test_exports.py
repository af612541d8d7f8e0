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


def test_every_error_class_is_exported_from_the_top_level_package() -> None:
    import netweave
    import netweave.errors

    error_classes = {
        name
        for name in netweave.errors.__all__
        if inspect.isclass(getattr(netweave.errors, name))
        and issubclass(getattr(netweave.errors, name), netweave.errors.NetweaveError)
    }
    # Among them, the ones that sessions and resilience raise.
    assert {
        "CallCancelled",
        "CircuitOpen",
        "MethodNotFound",
        "Overloaded",
        "PeerUnresponsive",
        "PoolExhausted",
        "RemoteDeadlineExceeded",
        "RemoteError",
        "SessionExpired",
        "TlsError",
    } <= error_classes
    missing = sorted(error_classes - set(netweave.__all__))
    assert missing == [], f"add {missing} to netweave/__init__.py's imports and __all__"
    for name in error_classes:
        assert getattr(netweave, name) is getattr(netweave.errors, name)
    assert sorted(netweave.__all__) == list(netweave.__all__)
    assert len(set(netweave.__all__)) == len(netweave.__all__)
