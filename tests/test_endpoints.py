"""Endpoint URLs: every accepted form, and a message naming the problem for every mistake."""

from __future__ import annotations

import re

import pytest

from netweave.endpoints import (
    Endpoint,
    format_host_port,
    parse_bool,
    parse_endpoint,
    parse_seconds,
    parse_size,
)
from netweave.errors import InvalidEndpoint
from netweave.registry import Registry
from netweave.transports import DatagramTransport, StreamTransport


def test_tcp_ipv4_with_options() -> None:
    endpoint, transport = parse_endpoint("tcp://127.0.0.1:9000?nodelay=0&connect_timeout=2")
    assert isinstance(transport, StreamTransport)
    assert transport.scheme == "tcp"
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("tcp", "127.0.0.1", 9000)
    assert endpoint.option("nodelay") is False
    assert endpoint.option("connect_timeout") == 2.0
    assert endpoint.option("backlog") == 128  # defaults filled in
    assert endpoint.option("write_high_water") == 256 * 1024
    assert endpoint.address == "127.0.0.1:9000"
    assert endpoint.url == "tcp://127.0.0.1:9000?nodelay=0&connect_timeout=2"


def test_tcp_ipv6() -> None:
    endpoint, _ = parse_endpoint("tcp://[::1]:9000")
    assert (endpoint.host, endpoint.port) == ("::1", 9000)
    assert endpoint.address == "[::1]:9000"


def test_udp_host_and_port() -> None:
    endpoint, transport = parse_endpoint("udp://localhost:5353?queue=16&max_size=1k")
    assert isinstance(transport, DatagramTransport)
    assert (endpoint.host, endpoint.port) == ("localhost", 5353)
    assert endpoint.option("queue") == 16
    assert endpoint.option("max_size") == 1024


def test_unix_path() -> None:
    endpoint, transport = parse_endpoint("unix:///run/app/x.sock?backlog=5")
    assert transport.scheme == "unix"
    assert endpoint.path == "/run/app/x.sock"
    assert endpoint.address == "/run/app/x.sock"
    assert endpoint.option("backlog") == 5


def test_unix_relative_path_and_escapes() -> None:
    assert parse_endpoint("unix://x.sock")[0].path == "x.sock"
    assert parse_endpoint("unix:///tmp/with%20space.sock")[0].path == "/tmp/with space.sock"


def test_mem_name_with_options() -> None:
    endpoint, transport = parse_endpoint("mem://name?chunks=1,3,7&capacity=64k")
    assert transport.scheme == "mem"
    assert endpoint.path == "name"
    assert endpoint.option("chunks") == (1, 3, 7)
    assert endpoint.option("capacity") == 64 * 1024
    assert parse_endpoint("mem://name")[0].option("chunks") is None


def test_scheme_is_case_insensitive() -> None:
    assert parse_endpoint("TCP://127.0.0.1:1")[0].scheme == "tcp"


def test_port_0_is_allowed_for_listening() -> None:
    assert parse_endpoint("tcp://127.0.0.1:0")[0].port == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # unknown scheme, listing the known ones
        ("tpc://127.0.0.1:9000", "unknown scheme 'tpc'; known schemes: mem, quic, tcp, "),
        ("127.0.0.1:9000", "is not an endpoint URL; expected SCHEME://ADDRESS such as"),
        # missing or invalid port
        ("tcp://127.0.0.1", "missing port; write HOST:PORT, e.g. 127.0.0.1:9000"),
        ("tcp://127.0.0.1:", "missing port"),
        ("tcp://[::1]", "missing port; write HOST:PORT, e.g. [::1]:9000"),
        ("tcp://127.0.0.1:http", "invalid port 'http'; use a number from 0 to 65535"),
        ("tcp://127.0.0.1:65536", "invalid port '65536'; use a number from 0 to 65535"),
        ("tcp://127.0.0.1:-1", "invalid port '-1'"),
        ("udp://127.0.0.1:9x", "invalid port '9x'"),
        # unknown option, listing the accepted ones
        ("tcp://127.0.0.1:9000?nodlay=0", "unknown option 'nodlay' (this scheme accepts: backlog"),
        ("unix:///x.sock?nodelay=1", "unknown option 'nodelay' (this scheme accepts: backlog"),
        # bad option values
        ("tcp://127.0.0.1:1?nodelay=maybe", "bad value for option 'nodelay': expected a boolean"),
        ("tcp://127.0.0.1:1?connect_timeout=-1", "bad value for option 'connect_timeout'"),
        ("tcp://127.0.0.1:1?backlog=many", "bad value for option 'backlog'"),
        ("tcp://127.0.0.1:1?keepalive_idle=0", "expected a whole number of at least 1"),
        ("tcp://127.0.0.1:1?write_high_water=lots", "expected a size such as 65536, 64k or 16m"),
        ("tcp://127.0.0.1:1?nodelay=1&nodelay=0", "option 'nodelay' given twice"),
        ("tcp://127.0.0.1:1?nodelay", "malformed query string 'nodelay'"),
        # hosts and the rest of the URL
        ("tcp://:9000", "missing host (e.g. 127.0.0.1)"),
        ("tcp://::1:9000", "write IPv6 addresses in brackets, like [::1]:9000"),
        ("tcp://[::1:9000", "write IPv6 addresses like [::1]:9000"),
        ("tcp://[nonsense]:9000", "write IPv6 addresses like [::1]:9000"),
        ("tcp://[::1]9000", "expected ':PORT' after the IPv6 address"),
        ("tcp://127.0.0.1:9000/path", "unexpected path '/path' after host:port"),
        ("tcp://user@127.0.0.1:9000", "user information (user@) is not supported"),
        ("tcp://127.0.0.1:9000#frag", "endpoint URLs take no #fragment"),
        ("unix://", "missing the path after unix://"),
        ("mem://", "missing the name after mem://"),
    ],
)
def test_mistakes_are_named(url: str, message: str) -> None:
    with pytest.raises(InvalidEndpoint) as caught:
        parse_endpoint(url)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)  # UsageError is a ValueError too


def test_unknown_scheme_lists_every_registered_scheme() -> None:
    registry = Registry(entry_points=False)
    with pytest.raises(InvalidEndpoint) as caught:
        parse_endpoint("smoke://x", registry=registry)
    listed = re.search(r"known schemes: (.*)$", str(caught.value))
    assert listed is not None
    assert listed.group(1).split(", ") == registry.transport_names()
    assert {"tcp", "udp", "unix", "mem"} <= set(registry.transport_names())


def test_every_builtin_scheme_loads() -> None:
    registry = Registry(entry_points=False)
    for scheme, kind in (
        ("tcp", "stream"),
        ("unix", "stream"),
        ("mem", "stream"),
        ("udp", "datagram"),
    ):
        transport = registry.transport(scheme)
        assert (transport.scheme, transport.kind) == (scheme, kind)
        for name, option in transport.options.items():
            assert option.help, f"{scheme} option {name} has no help text"


def test_value_parsers() -> None:
    assert [parse_bool(t) for t in ("1", "TRUE", "yes", "on", "0", "false", "No", "off")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert parse_seconds("0.5") == 0.5
    assert [parse_size(t) for t in ("65536", "64k", "16m", "1g", "2KiB")] == [
        65536,
        64 * 1024,
        16 * 1024**2,
        1024**3,
        2048,
    ]
    for bad, parser in (("inf", parse_seconds), ("nan", parse_seconds), ("1x", parse_size)):
        with pytest.raises(ValueError, match="expected"):
            parser(bad)


def test_format_host_port_brackets_ipv6() -> None:
    assert format_host_port("127.0.0.1", 80) == "127.0.0.1:80"
    assert format_host_port("::1", 80) == "[::1]:80"
    assert Endpoint("unix", path="/x").address == "/x"
