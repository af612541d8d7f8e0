"""``unix://``: the stream suite, socket file housekeeping and errors."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from pathlib import Path

import pytest
from transport_pairs import open_stream_pair

from netweave.endpoints import parse_endpoint
from netweave.errors import ConnectFailed, ListenFailed
from netweave.observe import ConnectionOpened, RecordingObserver
from netweave.testing import StreamConformance
from netweave.transports import Listener, StreamConnection, StreamTransport

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no Unix sockets")


class TestUnixConformance(StreamConformance):
    has_reset = False  # an aborted Unix socket gives its peer an ordinary end of stream

    @pytest.fixture(autouse=True)
    def _path(self, sock_dir: Path) -> None:
        self.url = f"unix://{sock_dir}/suite.sock"

    async def open_pair(self) -> tuple[StreamConnection, StreamConnection]:
        return await open_stream_pair(self.url)


class TestUnixUvloop(TestUnixConformance):
    event_loops = ("uvloop",)


def _unix() -> StreamTransport:
    _, transport = parse_endpoint("unix:///x")
    assert isinstance(transport, StreamTransport)
    return transport


async def _listen(url: str) -> Listener:
    endpoint, _ = parse_endpoint(url)
    return await _unix().listen(endpoint)


async def _connect(url: str) -> StreamConnection:
    endpoint, _ = parse_endpoint(url)
    return await _unix().connect(endpoint)


async def test_listener_removes_its_socket_file_on_close(sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    listener = await _listen(f"unix://{path}")
    assert listener.url == f"unix://{path}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    client = await _connect(listener.url)
    server = await listener.accept()
    await listener.close()
    assert not path.exists()
    await client.send(b"accepted connections stay open")
    assert await server.receive() == b"accepted connections stay open"
    await client.close()
    await server.close()


async def test_a_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening, then closed: a stale file
    assert stat.S_ISSOCK(path.stat().st_mode)
    listener = await _listen(f"unix://{path}")
    client = await _connect(listener.url)
    server = await listener.accept()
    await client.close()
    await server.close()
    await listener.close()


async def test_a_live_socket_is_not_stolen(sock_dir: Path) -> None:
    path = sock_dir / "live.sock"
    first = await _listen(f"unix://{path}")
    with pytest.raises(ListenFailed, match="another process is listening there"):
        await _listen(f"unix://{path}")
    client = await _connect(first.url)  # the first listener still owns the path
    server = await first.accept()
    await client.close()
    await server.close()
    await first.close()


async def test_a_regular_file_is_never_removed(sock_dir: Path) -> None:
    path = sock_dir / "data.txt"
    path.write_text("precious")
    with pytest.raises(ListenFailed, match="exists and is not a socket"):
        await _listen(f"unix://{path}")
    assert path.read_text() == "precious"


async def test_close_leaves_a_file_that_replaced_ours(sock_dir: Path) -> None:
    path = sock_dir / "moved.sock"
    listener = await _listen(f"unix://{path}")
    os.unlink(path)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        await listener.close()
        assert path.exists(), "closed listener removed a socket file it did not create"


async def test_connect_to_a_missing_path_fails(sock_dir: Path) -> None:
    path = sock_dir / "missing.sock"
    with pytest.raises(ConnectFailed, match=rf"cannot connect to unix://{path}: No such file"):
        await _connect(f"unix://{path}")


async def test_connect_to_a_stale_file_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))
    with pytest.raises(ConnectFailed, match="refused"):
        await _connect(f"unix://{path}")


async def test_listen_in_a_missing_directory_fails(sock_dir: Path) -> None:
    with pytest.raises(ListenFailed, match="cannot listen on unix://"):
        await _listen(f"unix://{sock_dir}/no/such/dir.sock")


async def test_paths_with_spaces_round_trip_through_the_url(sock_dir: Path) -> None:
    path = sock_dir / "with space.sock"
    listener = await _listen(f"unix://{path}")
    assert "%20" in listener.url
    client = await _connect(listener.url)
    server = await listener.accept()
    assert server.local_address == str(path)
    await client.close()
    await server.close()
    await listener.close()


async def test_backlog_bounds_the_accept_queue(sock_dir: Path) -> None:
    listener = await _listen(f"unix://{sock_dir}/b.sock?backlog=1")
    first = await _connect(listener.url)
    second = await _connect(listener.url)
    # the second was aborted by the listener; Unix sockets show that as an end of stream
    assert await asyncio.wait_for(second.receive(), timeout=5) == b""
    assert listener.refused == 1
    accepted = await listener.accept()
    await first.send(b"x")
    assert await accepted.receive() == b"x"
    for conn in (first, second, accepted):
        await conn.close()
    await listener.close()


async def test_unnamed_client_end_is_reported_as_such(sock_dir: Path) -> None:
    events = RecordingObserver()
    endpoint, _ = parse_endpoint(f"unix://{sock_dir}/n.sock")
    listener = await _unix().listen(endpoint)
    client = await _unix().connect(endpoint, observer=events)
    server = await listener.accept()
    assert client.local_address == server.remote_address == "<unnamed>"
    assert client.remote_address == server.local_address == f"{sock_dir}/n.sock"
    assert events.of_type(ConnectionOpened)[0].transport == "unix"
    for conn in (client, server):
        await conn.close()
    await listener.close()
