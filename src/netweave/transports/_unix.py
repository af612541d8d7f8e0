"""``unix:///path/to.sock`` — Unix domain stream sockets.

Options: ``connect_timeout`` (seconds, default 10), ``backlog`` (default 128),
``write_high_water`` and ``read_high_water`` (bytes, default 256k each).

Listening on a path where a socket file already exists removes it first, but
only if it is a socket and nothing answers on it (a stale file left by a
process that died); a live socket gives ``ListenFailed``, and so does any
other kind of file. The listener removes its own socket file when it closes
(and leaves alone a file that another listener has put there since).

Unix sockets have no reset: after ``abort`` the peer sees an ordinary end of
stream, unless it had unread data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from typing import Any, ClassVar, Final, final
from urllib.parse import quote

from ..endpoints import Endpoint, Option
from ..errors import ListenFailed
from ._asyncio_stream import AsyncioStreamConnection
from ._listener import STREAM_OPTIONS, AsyncioStreamTransport, ConnectionFactory

__all__ = ["UNIX_OPTIONS", "UnixTransport"]

UNIX_OPTIONS: Final[dict[str, Option[Any]]] = {**STREAM_OPTIONS}
#: Seconds to wait for an existing socket file to answer before calling it live.
_PROBE_TIMEOUT: Final = 1.0


@final
class UnixTransport(AsyncioStreamTransport):
    """Unix domain stream sockets, addressed by file system path."""

    scheme: ClassVar[str] = "unix"
    options = UNIX_OPTIONS
    uses_host_port: ClassVar[bool] = False

    async def _open(
        self, factory: ConnectionFactory, endpoint: Endpoint
    ) -> tuple[asyncio.BaseTransport, AsyncioStreamConnection]:
        return await asyncio.get_running_loop().create_unix_connection(factory, endpoint.path)

    async def _serve(
        self, factory: ConnectionFactory, endpoint: Endpoint
    ) -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_unix_server(
            factory, endpoint.path, backlog=endpoint.option("backlog")
        )

    def _url_of(self, server: asyncio.AbstractServer, endpoint: Endpoint) -> str:
        return f"unix://{quote(endpoint.path, safe='/')}"

    async def _prepare_listen(self, endpoint: Endpoint) -> None:
        path = endpoint.path
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ListenFailed(
                f"cannot listen on unix://{path}: {exc.strerror or exc}", errno=exc.errno
            ) from exc
        if not stat.S_ISSOCK(mode):
            raise ListenFailed(
                f"cannot listen on unix://{path}: the path exists and is not a socket "
                f"(refusing to remove it; pick another path)"
            )
        if await _answers(path):
            raise ListenFailed(
                f"cannot listen on unix://{path}: another process is listening there "
                f"(pick another path or stop it)"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _cleanup_for(
        self, server: asyncio.AbstractServer, endpoint: Endpoint
    ) -> Callable[[], None] | None:
        path = endpoint.path
        try:
            info = os.stat(path)
        except OSError:
            return None  # not a file system socket (or already gone): nothing to remove
        identity = (info.st_dev, info.st_ino)

        def remove_our_socket_file() -> None:
            try:
                now = os.stat(path)
                if (now.st_dev, now.st_ino) == identity:
                    os.unlink(path)
            except OSError:
                pass  # already removed (Python 3.13 does it too) or not ours to remove

        return remove_our_socket_file


async def _answers(path: str) -> bool:
    """Whether a process accepts connections on the socket file at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            await asyncio.get_running_loop().sock_connect(probe, path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except PermissionError as exc:
        raise ListenFailed(
            f"cannot listen on unix://{path}: {exc.strerror or exc}", errno=exc.errno
        ) from exc
    except OSError:
        return True  # its backlog is full, or it is slow to answer: someone is there
    finally:
        probe.close()
    return True
