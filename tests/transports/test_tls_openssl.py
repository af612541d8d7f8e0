"""TLS interoperability with the ``openssl`` command line: ``s_server`` and ``s_client``.

Marked ``external``; skipped where ``openssl`` is not installed. Every wait is
bounded and each subprocess is killed in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from netweave.endpoints import parse_endpoint
from netweave.testing._streams import receive_exactly, receive_until_eof
from netweave.transports import StreamConnection, StreamTransport

OPENSSL = shutil.which("openssl")
HOST = "example.test"

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed"),
]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server = ca.issue_cert(HOST, "127.0.0.1")
    client = ca.issue_cert("bob@example.test", common_name="bob")
    files = {
        "ca": (ca.cert_pem, "ca.pem"),
        "cert": (server.cert_chain_pems[0], "server.pem"),
        "key": (server.private_key_pem, "server.key"),
        "client_cert": (client.cert_chain_pems[0], "client.pem"),
        "client_key": (client.private_key_pem, "client.key"),
    }
    paths = {}
    for name, (blob, filename) in files.items():
        blob.write_to_path(str(tmp_path / filename))
        paths[name] = str(tmp_path / filename)
    return paths


@contextlib.asynccontextmanager
async def running(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    assert OPENSSL is not None
    process = await asyncio.create_subprocess_exec(
        OPENSSL,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(10):
            await process.communicate()


async def test_our_client_against_openssl_s_server(pki: dict[str, str]) -> None:
    args = ["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev"]
    args += ["-cert", pki["cert"], "-key", pki["key"], "-alpn", "rev/1"]
    async with running(*args) as server:
        assert server.stdout is not None
        async with asyncio.timeout(10):
            while not (line := await server.stdout.readline()).startswith(b"ACCEPT"):
                assert line, "s_server exited before listening"
        port = int(line.split(b":")[-1])
        url = f"tls://127.0.0.1:{port}?ca={pki['ca']}&server_hostname={HOST}&alpn=rev/1"
        endpoint, transport = parse_endpoint(url)
        assert isinstance(transport, StreamTransport)
        async with asyncio.timeout(10):
            conn = await transport.connect(endpoint)
            async with conn:
                assert conn.extra("alpn_protocol") == "rev/1"
                assert ("DNS", HOST) in conn.extra("peercert")["subjectAltName"]
                await conn.send(b"hello netweave\n")
                assert await receive_exactly(conn, 15) == b"evaewten olleh\n"


async def accept_once(url: str) -> tuple[str, asyncio.Task[StreamConnection]]:
    """Listen on ``url``; return the real URL and a task accepting one connection."""
    endpoint, transport = parse_endpoint(url)
    assert isinstance(transport, StreamTransport)
    listener = await transport.listen(endpoint)

    async def accept() -> StreamConnection:
        try:
            return await listener.accept()
        finally:
            await listener.close()

    return listener.url, asyncio.create_task(accept())


@pytest.mark.parametrize("mutual", [False, True])
async def test_openssl_s_client_against_our_listener(pki: dict[str, str], mutual: bool) -> None:
    url = f"tls://127.0.0.1:0?cert={pki['cert']}&key={pki['key']}&alpn=echo/1"
    if mutual:
        url += f"&ca={pki['ca']}"
    listen_url, accepted = await accept_once(url)
    port = listen_url.rsplit(":", 1)[1]
    args = ["s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", pki["ca"]]
    args += ["-servername", HOST, "-verify_return_error", "-alpn", "echo/1", "-quiet"]
    if mutual:
        args += ["-cert", pki["client_cert"], "-key", pki["client_key"]]
    async with running(*args) as client:
        assert client.stdin is not None
        assert client.stdout is not None
        async with asyncio.timeout(10):
            conn = await accepted
            async with conn:
                assert conn.extra("server_hostname") == HOST  # the SNI s_client sent
                assert conn.extra("alpn_protocol") == "echo/1"
                peer = conn.extra("peercert")
                if mutual:
                    assert (("commonName", "bob"),) in peer["subject"]
                else:
                    assert peer is None
                client.stdin.write(b"ping from openssl\n")
                await client.stdin.drain()
                assert await receive_exactly(conn, 18) == b"ping from openssl\n"
                await conn.send(b"pong from netweave\n")
                assert await client.stdout.readline() == b"pong from netweave\n"
                client.stdin.close()
                await conn.send_eof()  # our close_notify ends s_client's session
                assert await receive_until_eof(conn, 1000) == b""
            assert await client.wait() == 0
