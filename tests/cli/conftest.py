"""Fixtures for the command-line tests: servers started as subprocesses, free ports."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Sequence

import pytest
from netweave_procs import StartServer, netweave_command, read_line, stop, subprocess_env


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start ``netweave serve ARGS...``; returns the process and the URL it printed.

    Every process started is killed (if still running) when the test ends.
    """
    started: list[subprocess.Popen[str]] = []

    def start(args: Sequence[str]) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            netweave_command("serve", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        started.append(proc)
        return proc, read_line(proc)

    try:
        yield start
    finally:
        for proc in started:
            stop(proc)


@pytest.fixture
def bound_port() -> Iterator[tuple[socket.socket, int]]:
    """A loopback TCP socket bound to a free port but not listening (connects are refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()
