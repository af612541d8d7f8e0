"""Shared test configuration: every test has a timeout (pyproject), warnings are errors."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis runs deterministically (same examples on every run, nothing stored
# between runs) with a bounded number of examples; tests may lower it further.
settings.register_profile(
    "netweave", derandomize=True, database=None, deadline=None, max_examples=100
)
settings.load_profile("netweave")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short, fresh directory for Unix socket files (paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="nw-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
