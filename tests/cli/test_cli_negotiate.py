"""``--negotiate`` and TLS from the command line: ``serve echo`` and ``send`` as processes,
usage errors through CliRunner, and the tools underneath in process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result
from netweave_procs import WAIT, StartServer, read_err_line, run_netweave

from netweave.cli import cli
from netweave.errors import NegotiationFailed, UsageError
from netweave.observe import BytesSent, RecordingObserver
from netweave.tools import (
    exchange_negotiated,
    prepare_negotiation,
    serve_negotiated_until,
)

SERVER_STACK = "lp4,zstd|lz4|none,msgpack|json"


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1, as PEM files in ``tmp_path``."""
    ca = trustme.CA()
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "other_ca": tmp_path / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    issued.private_key_pem.write_to_path(str(files["key"]))
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    return {name: str(path) for name, path in files.items()}


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("netweave: error: "), lines[0]
    return lines[0].removeprefix("netweave: error: ")


def stop_cleanly(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0


# ---------------------------------------------------------------------------
# serve echo --negotiate and send --negotiate, as processes
# ---------------------------------------------------------------------------


def test_negotiated_compressed_exchange_and_what_was_agreed(start_server: StartServer) -> None:
    proc, url = start_server(
        ["echo", "tcp://127.0.0.1:0", "--negotiate", "chat", "--stack", SERVER_STACK, "-v"]
    )
    result = run_netweave(
        "send",
        url,
        "--negotiate",
        "chat",
        "--stack",
        "lp4,lz4|zstd,json",
        "--verbose",
        '{"text": "hello"}',
        json.dumps({"big": "compressible " * 200}),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '{"text":"hello"}',
        json.dumps({"big": "compressible " * 200}, separators=(",", ":")),
    ]
    # The server's preference (zstd before lz4; msgpack is not offered by the client) wins.
    agreed = "agreed chat v1 over lp4/zstd/json, max frame 1048576 B"
    (client_line,) = result.stderr.splitlines()
    assert client_line.startswith(f"netweave: {url.removeprefix('tcp://')}: {agreed}")
    assert "no TLS" in client_line
    server_line = read_err_line(proc)
    assert agreed in server_line
    stop_cleanly(proc)


def test_send_prints_nothing_on_stderr_unless_verbose(start_server: StartServer) -> None:
    proc, url = start_server(
        ["echo", "tcp://127.0.0.1:0", "--negotiate", "chat", "--stack", SERVER_STACK]
    )
    result = run_netweave("send", url, "--negotiate", "chat", "--stack", "lp4,none,msgpack", "7")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"
    assert result.stderr == ""
    stop_cleanly(proc)


def test_mismatch_is_reported_with_the_same_reason_on_both_sides(
    start_server: StartServer,
) -> None:
    proc, url = start_server(
        ["echo", "tcp://127.0.0.1:0", "--negotiate", "chat", "--stack", "lp4,zstd|none,json"]
    )
    reason = "no common compression: the client offers lz4; the server accepts zstd, none"
    result = run_netweave("send", url, "--negotiate", "chat", "--stack", "lp4,lz4,json", "1")
    assert result.returncode == 1
    assert result.stdout == ""
    assert one_error_line(result.stderr) == reason
    server_line = read_err_line(proc)
    assert server_line.startswith("netweave: 127.0.0.1:")
    assert server_line.endswith(f": negotiation failed: {reason}")

    # A protocol mismatch, and the server keeps serving clients that do agree.
    other = run_netweave("send", url, "--negotiate", "kv", "--stack", "lp4,zstd,json", "1")
    assert other.returncode == 1
    reason = "protocol mismatch: the client speaks 'kv', the server speaks 'chat'"
    assert one_error_line(other.stderr) == reason
    assert read_err_line(proc).endswith(f": negotiation failed: {reason}")
    fine = run_netweave("send", url, "--negotiate", "chat", "--stack", "lp4,zstd,json", "[1]")
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout == "[1]\n"
    stop_cleanly(proc)


def test_negotiated_tls_upgrade_with_certificate_options(
    start_server: StartServer, certs: dict[str, str]
) -> None:
    proc, url = start_server(
        [
            "echo",
            "tcp://127.0.0.1:0",
            "--negotiate",
            "chat",
            "--stack",
            SERVER_STACK,
            "--tls-cert",
            certs["cert"],
            "--tls-key",
            certs["key"],
        ]
    )
    args = ("--negotiate", "chat", "--stack", "lp4,zstd,msgpack")
    result = run_netweave("send", url, *args, "--tls-ca", certs["ca"], "-v", '{"secret": 1}')
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"secret":1}\n'
    assert "lp4/zstd/msgpack" in result.stderr
    assert ", TLS, hello v2 (TLSv1" in result.stderr

    # Not trusting the server's CA: the client says why, the server sees the alert.
    untrusted = run_netweave("send", url, *args, "--tls-ca", certs["other_ca"], "1")
    assert untrusted.returncode == 1
    assert "certificate verification failed" in one_error_line(untrusted.stderr)
    assert "UNKNOWN_CA" in read_err_line(proc)

    # The server requires the upgrade: a client without TLS is refused, on both sides.
    plain = run_netweave("send", url, *args, "1")
    reason = "the server requires TLS, but the client does not offer it"
    assert plain.returncode == 1
    assert one_error_line(plain.stderr) == reason
    assert read_err_line(proc).endswith(f": negotiation failed: {reason}")
    stop_cleanly(proc)


def test_tls_url_serve_and_send(start_server: StartServer, certs: dict[str, str]) -> None:
    proc, url = start_server(
        [
            "echo",
            f"tls://127.0.0.1:0?cert={certs['cert']}&key={certs['key']}",
            "--stack",
            "lp4,json",
            "--verbose",
        ]
    )
    assert url.startswith("tls://127.0.0.1:")
    result = run_netweave("send", f"{url}?ca={certs['ca']}", "--stack", "lp4,json", "-v", '"hi"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == '"hi"\n'
    assert "stack lp4,json (TLSv1" in result.stderr
    assert "stack lp4,json (TLSv1" in read_err_line(proc)
    untrusted = run_netweave("send", f"{url}?ca={certs['other_ca']}", "--stack", "lp4,json", "1")
    assert untrusted.returncode == 1
    assert "certificate verification failed" in one_error_line(untrusted.stderr)
    stop_cleanly(proc)


def test_negotiation_over_a_tls_url(start_server: StartServer, certs: dict[str, str]) -> None:
    proc, url = start_server(
        [
            "echo",
            f"tls://127.0.0.1:0?cert={certs['cert']}&key={certs['key']}",
            "--negotiate",
            "chat",
            "--stack",
            SERVER_STACK,
        ]
    )
    result = run_netweave(
        "send", f"{url}?ca={certs['ca']}", "--negotiate", "chat", "--stack", "lp4,lz4,cbor|msgpack",
        "-v", '{"x": [1, 2]}',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"x":[1,2]}\n'
    # Negotiated inside the tls:// connection, which is encrypted already: no upgrade.
    assert "agreed chat v1 over lp4/lz4/msgpack" in result.stderr
    assert ", no TLS, hello v2 (TLSv1" in result.stderr
    stop_cleanly(proc)


def test_quic_url_serve_and_send(start_server: StartServer, certs: dict[str, str]) -> None:
    pytest.importorskip("aioquic", reason="the quic extra is not installed")
    proc, url = start_server(
        [
            "echo",
            f"quic://127.0.0.1:0?cert={certs['cert']}&key={certs['key']}",
            "--negotiate",
            "chat",
            "--stack",
            SERVER_STACK,
        ]
    )
    assert url.startswith("quic://127.0.0.1:")
    result = run_netweave(
        "send", f"{url}?ca={certs['ca']}", "--negotiate", "chat", "--stack", "lp4,zstd,json",
        '{"over": "quic"}', "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"over":"quic"}', "2"]
    untrusted = run_netweave("send", f"{url}?ca={certs['other_ca']}", "--stack", "lp4,json", "1")
    assert untrusted.returncode == 1
    assert "certificate" in one_error_line(untrusted.stderr)  # aioquic's own log line is kept quiet
    stop_cleanly(proc)


def test_a_silent_server_times_out_while_negotiating() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connects succeed; nobody ever answers the hello
        port = silent.getsockname()[1]
        result = run_netweave(
            "send", f"tcp://127.0.0.1:{port}", "--negotiate", "chat", "--stack", "lp4,json",
            "--timeout", "0.5", "1",
        )  # fmt: skip
    assert result.returncode == 1
    assert one_error_line(result.stderr).startswith(
        f"timed out after 0.5 s connecting to and negotiating with tcp://127.0.0.1:{port}"
    )


# ---------------------------------------------------------------------------
# Usage errors: checked before anything touches the network
# ---------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("send", "tcp://127.0.0.1:9", "--stack", "lp4,json", "--tls-ca", "ca.pem", "1"),
            "set up the TLS upgrade after --negotiate; without negotiating, use a tls:// URL",
        ),
        (
            ("serve", "echo", "tcp://127.0.0.1:0", "--stack", "lp4,json", "--tls"),
            "after --negotiate",
        ),
        (
            ("send", "udp://127.0.0.1:9", "--negotiate", "chat", "--stack", "json", "1"),
            "--negotiate needs a byte stream",
        ),
        (
            ("serve", "echo", "tcp://127.0.0.1:0", "--negotiate", "chat", "--stack", "lp4,json",
             "--tls"),
            "add --tls-cert server.pem --tls-key server.key",
        ),
        (
            ("send", "tls://127.0.0.1:9", "--negotiate", "chat", "--stack", "lp4,json", "--tls",
             "1"),
            "tls:// is encrypted already",
        ),
        (
            ("send", "tcp://127.0.0.1:9", "--negotiate", "chat", "--stack", "lp4,raw|json", "1"),
            "the offered codecs read messages differently: raw (bytes), json (json)",
        ),
        (
            ("send", "tcp://127.0.0.1:9", "--negotiate", "chat", "--stack", "lp4,zstd|nope,json",
             "1"),
            "unknown layer 'nope'",
        ),
        (
            ("send", "tcp://127.0.0.1:9", "--negotiate", "chat", "--stack", "lp4,json|cbor",
             "{bad"),
            "message 1 ('{bad') is not valid JSON",
        ),
        (
            ("send", "tcp://127.0.0.1:9", "--negotiate", "chat", "--stack", "lp4,json", "--tls",
             "--tls-ca", "/no/such/ca.pem", "1"),
            "cannot load the TLS CA file '/no/such/ca.pem'",
        ),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(args: tuple[str, ...], fragment: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert fragment in one_error_line(result.stderr)
    assert result.stdout == ""


def test_help_shows_the_negotiation_options() -> None:
    for command in (("send",), ("serve", "echo")):
        text = invoke(*command, "--help").stdout
        for option in ("--negotiate", "--tls-cert", "--tls-key", "--tls-ca", "--verbose"):
            assert option in text


# ---------------------------------------------------------------------------
# The tools underneath, in process
# ---------------------------------------------------------------------------


async def test_negotiated_exchange_compresses_on_the_wire() -> None:
    """What was agreed is what runs: a compressible message crosses the wire compressed."""
    server_side = prepare_negotiation("chat", SERVER_STACK, "tcp://127.0.0.1:0", side="server")
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    serving = asyncio.create_task(
        serve_negotiated_until(
            "tcp://127.0.0.1:0", server_side, stop, on_listening=listening.set_result
        )
    )
    try:
        url = await listening
        message = {"text": "compress me " * 500}
        for spec, compressed in (("lp4,zstd,json", True), ("lp4,none,json", False)):
            recorder = RecordingObserver()
            replies: list[object] = []

            def keep(position: int, reply: object, into: list[object] = replies) -> None:
                into.append(reply)

            client_side = prepare_negotiation("chat", spec, url, side="client")
            await exchange_negotiated(
                url, client_side, [message], timeout=WAIT, on_reply=keep, observer=recorder
            )
            assert replies == [message]
            sent = sum(event.count for event in recorder.of_type(BytesSent))
            size = len(json.dumps(message, separators=(",", ":")))
            assert (sent < size // 10) if compressed else (sent > size), (spec, sent, size)
    finally:
        stop.set()
        await serving


async def test_negotiation_failure_reaches_the_server_callback() -> None:
    server_side = prepare_negotiation("chat", "lp4,zstd,json", "tcp://127.0.0.1:0", side="server")
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    failures: list[tuple[str, Exception]] = []
    stop = asyncio.Event()

    def failed(remote: str, error: Exception) -> None:
        failures.append((remote, error))
        stop.set()

    serving = asyncio.create_task(
        serve_negotiated_until(
            "tcp://127.0.0.1:0",
            server_side,
            stop,
            on_listening=listening.set_result,
            on_failed=failed,
        )
    )
    try:
        url = await listening
        client_side = prepare_negotiation("chat", "lp4,zstd,cbor", url, side="client")
        with pytest.raises(NegotiationFailed) as info:
            await exchange_negotiated(
                url, client_side, [1], timeout=WAIT, on_reply=lambda _, __: None
            )
        assert info.value.side == "remote"
        assert info.value.what == "codec"
    finally:
        await asyncio.wait_for(serving, WAIT)
    ((remote, error),) = failures
    assert remote.startswith("127.0.0.1:")
    assert isinstance(error, NegotiationFailed)
    assert error.side == "local"
    assert error.reason == info.value.reason


def test_messages_must_fit_every_offered_codec() -> None:
    negotiation = prepare_negotiation(
        "chat", "lp4,json|msgpack", "tcp://127.0.0.1:9", side="client"
    )
    assert negotiation.parse_messages(['{"a": 1}', "[true]"]) == [{"a": 1}, [True]]
    with pytest.raises(UsageError, match="message 1"):
        negotiation.parse_messages(["NaN"])  # msgpack could carry it; json cannot
