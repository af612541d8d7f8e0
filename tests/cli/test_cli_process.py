"""``netweave serve`` and ``netweave send`` as real processes on loopback sockets."""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from netweave_procs import WAIT, StartServer, netweave_command, run_netweave, subprocess_env


def send_args(url: str, spec: str, *messages: str | bytes) -> list[str | bytes]:
    return netweave_command("send", url, "--stack", spec, *messages)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"connection ended after {len(data)} of {count} bytes"
        data += chunk
    return data


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("netweave: error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_serve_prints_the_real_port(start_server: StartServer) -> None:
    _, url = start_server(["echo", "tcp://127.0.0.1:0", "--stack", "lp4,json"])
    host, port = host_port(url)
    assert url.startswith("tcp://")
    assert host == "127.0.0.1"
    assert port != 0


def test_send_json_to_serve_echo_from_another_process(start_server: StartServer) -> None:
    _, url = start_server(["echo", "tcp://127.0.0.1:0", "--stack", "lp4,json"])
    result = run_netweave(
        "send", url, "--stack", "lp4,json", '{"a": [1, 2]}', '"text"', "3", "null"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"a":[1,2]}', '"text"', "3", "null"]
    assert result.stderr == ""


def test_send_raw_to_serve_echo_escapes_non_utf8(start_server: StartServer) -> None:
    _, url = start_server(["echo", "tcp://127.0.0.1:0", "--stack", "lp4,raw"])
    proc = subprocess.run(
        send_args(url, "lp4,raw", b"hello", "héllo".encode(), b"bad\xffbyte"),
        capture_output=True,
        timeout=WAIT,
        env=subprocess_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == ["hello", "héllo", "bad\\xffbyte"]


def test_udp_serve_echo_and_send(start_server: StartServer) -> None:
    proc, url = start_server(["echo", "udp://127.0.0.1:0", "--stack", "json"])
    assert url.startswith("udp://127.0.0.1:")
    assert host_port(url)[1] != 0
    result = run_netweave("send", url, "--stack", "json", '{"n": 1}', "[true, null]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"n":1}', "[true,null]"]
    # A plain UDP socket gets its datagram back unchanged: one datagram, one JSON value.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(WAIT)
        sock.sendto(b'{"plain":"udp"}', host_port(url))
        assert sock.recv(2048) == b'{"plain":"udp"}'
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0


def test_udp_send_to_a_closed_port_exits_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_netweave(
        "send", f"udp://127.0.0.1:{port}", "--stack", "json", "--timeout", "5", "1"
    )
    assert result.returncode == 1
    assert "refused" in one_error_line(result.stderr).lower()


def test_plain_socket_client_speaks_4_byte_big_endian_length_prefixes(
    start_server: StartServer,
) -> None:
    """The wire format of lp4,json is exactly: 4-byte big-endian length, then compact JSON."""
    _, url = start_server(["echo", "tcp://127.0.0.1:0", "--stack", "lp4,json"])
    payloads = [b'{"k":[1,2,3]}', b'"h\xc3\xa9"', b"[]"]
    with socket.create_connection(host_port(url), timeout=WAIT) as sock:
        # Two frames in one write, the third split inside its header.
        wire = b"".join(struct.pack(">I", len(p)) + p for p in payloads)
        split = len(wire) - len(payloads[-1]) - 2
        sock.sendall(wire[:split])
        sock.sendall(wire[split:])
        for payload in payloads:
            (length,) = struct.unpack(">I", recv_exactly(sock, 4))
            assert length == len(payload)
            assert recv_exactly(sock, length) == payload
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # the server ends the stream after ours


def test_port_in_use_exits_1_naming_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_netweave("serve", "echo", f"tcp://127.0.0.1:{port}", "--stack", "lp4,json")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"127.0.0.1:{port}" in line
    assert "pick another port" in line
    assert result.stdout == ""


def test_connection_refused_exits_1(bound_port: tuple[socket.socket, int]) -> None:
    _, port = bound_port  # bound, not listening: connecting is refused
    result = run_netweave("send", f"tcp://127.0.0.1:{port}", "--stack", "lp4,json", "1")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "refused" in line.lower()
    assert f"127.0.0.1:{port}" in line


def test_send_times_out_against_a_server_that_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = run_netweave(
            "send", f"tcp://127.0.0.1:{port}", "--stack", "lp4,json", "--timeout", "0.5", "1"
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "timed out after 0.5 s waiting for reply 1 of 1" in line
    assert "--timeout" in line
    assert elapsed < WAIT / 3  # 0.5 s plus interpreter start-up, far below the bound


def test_fewer_replies_than_messages_exits_1() -> None:
    """A server that answers once and then ends the stream: a reply count mismatch."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            send_args(f"tcp://127.0.0.1:{port}", "lp4,raw", "one", "two"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
            text=True,
        )
        try:
            listener.settimeout(WAIT)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(WAIT)
                assert recv_exactly(conn, 7) == b"\x00\x00\x00\x03one"
                conn.sendall(b"\x00\x00\x00\x03one")
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT)
    assert proc.returncode == 1
    assert out.splitlines() == ["one"]
    assert "after 1 of 2 replies" in one_error_line(err)


def test_protocol_error_from_the_server_exits_1() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            send_args(f"tcp://127.0.0.1:{port}", "lp4,json", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
            text=True,
        )
        try:
            listener.settimeout(WAIT)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(WAIT)
                recv_exactly(conn, 5)
                conn.sendall(b"\x00\x00\x00\x03{{{")
                out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT)
    assert proc.returncode == 1
    assert out == ""
    assert "json" in one_error_line(err)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_serve_cleanly_and_closes_connections(
    start_server: StartServer, sig: signal.Signals
) -> None:
    proc, url = start_server(["echo", "tcp://127.0.0.1:0", "--stack", "lp4,raw"])
    with socket.create_connection(host_port(url), timeout=WAIT) as sock:
        sock.sendall(b"\x00\x00\x00\x02hi")
        assert recv_exactly(sock, 6) == b"\x00\x00\x00\x02hi"  # the handler is running
        proc.send_signal(sig)
        assert proc.wait(timeout=WAIT) == 0
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed
    assert proc.stderr is not None
    assert proc.stderr.read() == ""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_serve_on_a_chosen_loop(start_server: StartServer, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    proc, url = start_server(["echo", "tcp://127.0.0.1:0", "--stack", "lp4,text", "--loop", loop])
    result = run_netweave("send", url, "--stack", "lp4,text", "plain text", '{"not": "parsed"}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["plain text", '{"not": "parsed"}']
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0


def test_demo_runs_as_a_process() -> None:
    result = run_netweave("demo", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    legs = {leg["name"]: leg for leg in report["legs"]}
    assert set(legs) == {"tcp", "udp", "mem", "negotiated"}
    assert len({leg["stack"] for leg in legs.values()}) >= 2
    for leg in legs.values():
        assert leg["bytes_sent"] > 0
        assert leg["bytes_received"] > 0
        assert leg["messages_sent"] == leg["messages_received"] == len(leg["messages"])
    text = run_netweave("demo")
    assert text.returncode == 0, text.stdout + text.stderr
    for name, leg in legs.items():
        scheme, stack = re.escape(leg["transport"]), re.escape(leg["stack"])
        if name == "negotiated":
            assert re.search(rf"^negotiated  {scheme}://\S+  \(", text.stdout, re.M)
            assert re.search(rf"^  agreed    protocol demo v2, stack {stack} ", text.stdout, re.M)
        else:
            assert re.search(rf"^{scheme}  {scheme}://\S+  stack {stack}$", text.stdout, re.M)
    counts = re.findall(r"client->server (\d+), server->client (\d+)", text.stdout)
    assert len(counts) == 4
    assert all(int(n) > 0 for pair in counts for n in pair)


def test_python_dash_m_netweave_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netweave", "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=subprocess_env(),
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("netweave ")


def test_ctrl_c_during_send_exits_130() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            send_args(f"tcp://127.0.0.1:{port}", "lp4,json", "--timeout", "60", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
            text=True,
        )
        try:
            silent.settimeout(WAIT)
            conn, _ = silent.accept()  # connected: send now waits for a reply
            with conn:
                conn.settimeout(WAIT)
                recv_exactly(conn, 5)  # the message arrived; no reply will come
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT)
    assert proc.returncode == 130
    assert out == ""
    assert one_error_line(err) == "netweave: error: interrupted"
