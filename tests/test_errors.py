"""Errors: who is at fault, one translation of ``OSError``, and clear messages for bad input."""

from __future__ import annotations

import contextlib
import errno
import socket

import pytest

import netweave
from netweave.errors import (
    ClosedResourceError,
    ConnectFailed,
    ConnectionBroken,
    DeadlineExceeded,
    InvalidEndpoint,
    InvalidStackSpec,
    ListenFailed,
    MissingDependency,
    NetweaveError,
    TransportError,
    UsageError,
    map_os_errors,
    translate_os_error,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_hierarchy_says_who_is_at_fault() -> None:
    assert issubclass(InvalidEndpoint, UsageError)
    assert issubclass(UsageError, ValueError)
    for kind in (ConnectFailed, ListenFailed, ConnectionBroken):
        assert issubclass(kind, TransportError)
        assert issubclass(kind, ConnectionError)
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(MissingDependency, ImportError)
    assert not issubclass(ClosedResourceError, TransportError)  # our fault, not the peer's
    for kind in (UsageError, ClosedResourceError, TransportError, DeadlineExceeded):
        assert issubclass(kind, NetweaveError)


def test_missing_dependency_names_the_extra() -> None:
    error = MissingDependency("the msgpack codec", "msgpack", "msgpack")
    assert "pip install 'netweave[msgpack]'" in str(error)
    assert (error.feature, error.module, error.extra) == ("the msgpack codec", "msgpack", "msgpack")


def test_translate_connect_errors() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    error = translate_os_error(refused, during="connect", target="tcp://127.0.0.1:1")
    assert isinstance(error, ConnectFailed)
    assert error.errno == errno.ECONNREFUSED
    assert "cannot connect to tcp://127.0.0.1:1: Connection refused" in str(error)
    timed_out = translate_os_error(TimeoutError(), during="connect", target="x")
    assert isinstance(timed_out, ConnectFailed)
    assert timed_out.errno == errno.ETIMEDOUT
    assert "timed out" in str(timed_out)


def test_translate_listen_errors_name_the_fix_for_an_address_in_use() -> None:
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    error = translate_os_error(in_use, during="listen", target="127.0.0.1:80")
    assert isinstance(error, ListenFailed)
    assert str(error) == (
        "cannot listen on 127.0.0.1:80: Address already in use "
        "(another process is listening there; pick another port or stop it)"
    )
    denied = translate_os_error(
        PermissionError(errno.EACCES, "Permission denied"), during="listen", target="x"
    )
    assert "Permission denied" in str(denied)
    assert "pick another port" not in str(denied)


def test_translate_io_errors_are_broken_connections() -> None:
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    error = translate_os_error(reset, during="io", target="tcp a->b")
    assert isinstance(error, ConnectionBroken)
    assert str(error) == "connection tcp a->b broken: Connection reset by peer"


def test_netweave_errors_pass_through_unchanged() -> None:
    original = ClosedResourceError("closed")
    assert translate_os_error(original, during="io", target="x") is original


def test_map_os_errors_translates_once_and_keeps_the_cause() -> None:
    cause = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    with pytest.raises(ConnectFailed) as caught, map_os_errors(during="connect", target="t"):
        raise cause
    assert caught.value.__cause__ is cause
    already = ListenFailed("already translated")
    with pytest.raises(ListenFailed) as again, map_os_errors(during="connect", target="t"):
        raise already
    assert again.value is already
    with pytest.raises(KeyError), map_os_errors(during="io", target="t"):
        raise KeyError("not an OSError: untouched")


# -- bad input through the public API ----------------------------------------


async def test_connect_with_an_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(InvalidEndpoint) as caught:
        await netweave.connect("htp://127.0.0.1:80", "lp4,raw")
    message = str(caught.value)
    assert "unknown scheme 'htp'" in message
    for scheme in ("mem", "tcp", "udp", "unix"):
        assert scheme in message


async def test_connect_refused_is_clear() -> None:
    port = _free_port()
    with pytest.raises(ConnectFailed) as caught:
        await netweave.connect(f"tcp://127.0.0.1:{port}", "lp4,raw")
    assert str(caught.value).startswith(f"cannot connect to tcp://127.0.0.1:{port}: ")
    assert "refused" in str(caught.value).lower()


async def test_connect_to_a_missing_socket_file_is_clear() -> None:
    with pytest.raises(
        ConnectFailed, match=r"cannot connect to unix:///nonexistent/netweave\.sock"
    ):
        await netweave.connect("unix:///nonexistent/netweave.sock", "lp4,raw")


async def test_serve_on_a_port_in_use_names_the_fix() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenFailed) as caught:
            await netweave.serve(f"tcp://127.0.0.1:{port}", "lp4,raw", _unused_handler)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "pick another port or stop it" in str(caught.value)
    assert caught.value.errno == errno.EADDRINUSE


async def test_a_bad_stack_fails_before_any_io() -> None:
    with pytest.raises(InvalidStackSpec, match="unknown layer 'nosuch'"):
        await netweave.connect("tcp://127.0.0.1:1", "lp4,nosuch")


async def _unused_handler(channel: netweave.Channel[bytes]) -> None:
    raise AssertionError("never called: the server cannot start")


async def test_connect_timeout_argument_bounds_the_whole_connect() -> None:
    # A listening socket that never accepts, its queue full: the next SYN is ignored.
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        port = stuck.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            with pytest.raises(ConnectFailed, match=r"timed out after 0\.2 s"):
                await netweave.connect(f"tcp://127.0.0.1:{port}", "lp4,raw", timeout=0.2)
        finally:
            for filler in fillers:
                filler.close()
