"""``--loop auto|asyncio|uvloop``: which event loop a command runs on."""

from __future__ import annotations

import asyncio
import sys

import pytest
from click.testing import CliRunner

from netweave import MissingDependency, UsageError
from netweave.cli import cli
from netweave.tools import LOOP_CHOICES, loop_factory


def test_choices() -> None:
    assert LOOP_CHOICES == ("auto", "asyncio", "uvloop")


def test_asyncio_is_the_standard_loop() -> None:
    assert loop_factory("asyncio") is asyncio.new_event_loop


def test_auto_and_uvloop_use_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop


def test_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(MissingDependency, match=r"netweave\[uvloop\]"):
        loop_factory("uvloop")


def test_unknown_loop_name() -> None:
    with pytest.raises(UsageError, match="auto, asyncio, uvloop"):
        loop_factory("trio")


def test_serve_with_missing_uvloop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    result = CliRunner().invoke(
        cli, ["serve", "echo", "tcp://127.0.0.1:0", "--stack", "lp4,raw", "--loop", "uvloop"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("netweave: error: the uvloop event loop needs")
    assert "pip install 'netweave[uvloop]'" in result.stderr
    assert result.stdout == ""
