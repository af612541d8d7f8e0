"""Running ``netweave`` as a subprocess from tests: bounded waits, always killed."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

#: What the ``start_server`` fixture returns: ``start(args) -> (process, printed URL)``.
StartServer = Callable[[Sequence[str]], tuple[subprocess.Popen[str], str]]

SRC = str(Path(__file__).resolve().parents[2] / "src")
#: Upper bound on any single wait for a subprocess in these tests.
WAIT = 15.0


def netweave_command(*args: str | bytes) -> list[str | bytes]:
    """The argv that runs the command line in a fresh interpreter."""
    return [sys.executable, "-m", "netweave.cli", *args]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_netweave(*args: str | bytes, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """Run ``netweave ARGS`` to completion (killed after ``timeout``)."""
    return subprocess.run(
        netweave_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        check=False,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = WAIT) -> str:
    """The next stdout line of ``proc``; fails the test if none comes within ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"no output from {proc.args!r} within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr is not None else ""
        pytest.fail(f"{proc.args!r} exited ({proc.poll()}) without output: {err}")
    return line.strip()


def read_err_line(proc: subprocess.Popen[str], timeout: float = WAIT) -> str:
    """The next stderr line of ``proc``; fails the test if none comes within ``timeout``."""
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    if not ready:
        pytest.fail(f"nothing on stderr from {proc.args!r} within {timeout} s")
    line = proc.stderr.readline()
    if not line:
        pytest.fail(f"{proc.args!r} exited ({proc.poll()}) without a line on stderr")
    return line.strip()


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=WAIT)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
