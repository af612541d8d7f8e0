"""``netweave demo``: the report's content (in process) and its rendering."""

from __future__ import annotations

import dataclasses
import json
import struct
import sys

import msgpack
import pytest
from click.testing import CliRunner

from netweave.cli import cli, format_report, hexdump
from netweave.demo import (
    DemoLeg,
    DemoReport,
    LegReport,
    default_legs,
    negotiated_leg,
    run_demo,
)


@pytest.fixture
async def report() -> DemoReport:
    return await run_demo()


def legs_by_name(report: DemoReport) -> dict[str, LegReport]:
    return {leg.name: leg for leg in report.legs}


async def test_default_legs_cover_three_transports_and_a_negotiated_leg() -> None:
    legs = default_legs()
    assert [leg.name for leg in legs] == ["tcp", "udp", "mem", "negotiated"]
    assert [leg.transport for leg in legs] == ["tcp", "udp", "mem", "tcp"]
    assert len({leg.stack for leg in legs}) >= 2
    assert {leg.stack for leg in legs} >= {"lp4,json", "line,text"}
    assert legs[1].stack == "msgpack"  # msgpack is installed in the test environment
    negotiated = legs[3]
    assert negotiated.protocol == "demo"
    # Every extra is installed here: the server prefers zstd and msgpack, the client
    # lists them last, so the agreement shows whose preference wins.
    assert negotiated.server_stack == "lp4,zstd|lz4|zlib|none,msgpack|json"
    assert negotiated.stack == "lp4,zlib|lz4|zstd|none,json|msgpack"


async def test_every_leg_succeeds_with_counts_from_both_sides(report: DemoReport) -> None:
    assert report.ok, format_report(report)
    assert report.notes == ()
    for leg in report.legs:
        assert leg.error is None
        assert leg.problems == []
        assert leg.replies == leg.messages
        assert leg.messages_sent == leg.messages_received == len(leg.messages) == 3
        assert leg.bytes_sent > 0
        assert leg.bytes_received > 0
        assert leg.bytes_sent == leg.server_bytes_received
        assert leg.bytes_received == leg.server_bytes_sent
        assert "://" in leg.url
        assert not leg.url.endswith(":0")  # the real port is reported


async def test_tcp_first_frame_is_length_prefixed_json(report: DemoReport) -> None:
    tcp = legs_by_name(report)["tcp"]
    assert tcp.stack == "lp4,json"
    frame = tcp.first_frame
    assert len(frame) == tcp.first_frame_size
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:]) == tcp.messages[0]
    # Echo of identical messages: both directions carry the same bytes.
    assert tcp.bytes_sent == sum(
        4 + len(json.dumps(m, separators=(",", ":"))) for m in tcp.messages
    )


async def test_udp_first_frame_is_one_msgpack_datagram(report: DemoReport) -> None:
    udp = legs_by_name(report)["udp"]
    assert udp.stack == "msgpack"
    assert msgpack.unpackb(udp.first_frame) == udp.messages[0]
    assert udp.bytes_sent == sum(len(msgpack.packb(m)) for m in udp.messages)


async def test_mem_first_frame_is_a_line(report: DemoReport) -> None:
    mem = legs_by_name(report)["mem"]
    assert mem.url == "mem://demo"
    assert mem.stack == "line,text"
    assert mem.first_frame == mem.messages[0].encode() + b"\n"


async def test_negotiated_leg_agrees_compresses_and_encrypts(report: DemoReport) -> None:
    leg = legs_by_name(report)["negotiated"]
    assert leg.ok, leg.problems
    assert leg.agreement is not None
    assert leg.agreement["protocol"] == "demo"
    assert leg.agreement["version"] == 2  # the server's preference among 1 and 2
    assert leg.agreement["compression"] == "zstd"
    assert leg.agreement["codec"] == "msgpack"
    assert leg.agreement["max_frame"] == 64 * 1024  # the smaller of the two
    assert leg.agreement["features"] == ["receipts"]  # offered by both
    assert leg.agreement["tls"] is True
    assert leg.stack == "lp4,zstd,msgpack"
    assert leg.tls is not None
    assert leg.tls["version"] == "TLSv1.3"
    assert leg.tls["cipher"].startswith("TLS_")
    assert leg.tls["server_names"] == ["127.0.0.1"]
    # Before TLS: lp4 length, the zstd marker and magic, a frame smaller than the message.
    plain = leg.plain_frame
    (length,) = struct.unpack(">I", plain[:4])
    assert length == leg.plain_frame_size - 4
    assert plain[4:9] == b"\x02\x28\xb5\x2f\xfd"
    assert leg.plain_frame_size < len(msgpack.packb(leg.messages[0]))
    # On the wire: a TLS 1.3 application-data record carrying that frame, encrypted.
    wire = leg.first_frame
    assert wire[:3] == b"\x17\x03\x03"
    assert int.from_bytes(wire[3:5], "big") == leg.first_frame_size - 5
    assert leg.first_frame_size > leg.plain_frame_size
    assert plain[:16] not in wire
    handshake_out, handshake_back = leg.handshake_bytes
    assert 0 < handshake_out < leg.bytes_sent
    assert 0 < handshake_back < leg.bytes_received


async def test_without_trustme_the_other_legs_run_and_a_note_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    assert [leg.name for leg in default_legs()] == ["tcp", "udp", "mem"]
    report = await run_demo()
    assert report.ok
    (note,) = report.notes
    assert "pip install 'netweave[demo]'" in note
    text = format_report(report)
    assert text.splitlines()[1] == f"note: {note}"
    assert report.to_dict()["notes"] == [note]


async def test_negotiated_leg_without_trustme_fails_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    (leg,) = (await run_demo([negotiated_leg()])).legs
    assert not leg.ok
    assert leg.error is not None
    assert "netweave[demo]" in leg.error


async def test_a_failing_leg_is_reported_not_raised() -> None:
    report = await run_demo(
        [
            DemoLeg("tcp://127.0.0.1:0", "lp4,raw", (b"fine",)),
            DemoLeg("nope://x", "lp4,json", ("never sent",)),
        ]
    )
    assert not report.ok
    good, bad = report.legs
    assert good.ok
    assert not bad.ok
    assert bad.problems == [bad.error]
    assert bad.error is not None
    assert "unknown scheme 'nope'" in bad.error
    assert bad.bytes_sent == 0


async def test_replies_that_differ_fail_the_leg() -> None:
    run = await run_demo([DemoLeg("tcp://127.0.0.1:0", "lp4,json", ({"a": 1},))])
    good = run.legs[0]
    assert good.ok
    altered = dataclasses.replace(good, replies=({"a": 2},))
    assert not altered.ok
    assert not DemoReport((good, altered)).ok
    assert any("differ" in problem for problem in altered.problems)


async def test_an_empty_report_is_not_ok() -> None:
    assert not DemoReport().ok


def test_text_rendering_shows_each_leg_and_the_length_prefix(report: DemoReport) -> None:
    text = format_report(report)
    assert text.splitlines()[0] == "netweave demo: 4 legs, every reply matched what was sent"
    for leg in report.legs:
        if leg.agreement is None:
            assert f"{leg.transport}  {leg.url}  stack {leg.stack}" in text
        assert f"client->server {leg.bytes_sent}, server->client {leg.bytes_received}" in text
    tcp = legs_by_name(report)["tcp"]
    assert f"    0000  {tcp.first_frame[:16].hex(' ')}" in text
    assert "    0000  00 00 00 " in text


def test_text_rendering_of_the_negotiated_leg(report: DemoReport) -> None:
    text = format_report(report)
    leg = legs_by_name(report)["negotiated"]
    section = text[text.index(f"negotiated  {leg.url}") :]
    assert (
        "  agreed    protocol demo v2, stack lp4,zstd,msgpack (codec msgpack, compression zstd)"
        in section
    )
    assert "max frame 65536 B, features receipts, TLS on" in section
    assert f"  tls       TLSv1.3, {leg.tls['cipher'] if leg.tls else ''} (256-bit)" in section
    assert "as the agreed stack frames it, before TLS" in section
    assert f"    0000  {leg.plain_frame[:16].hex(' ')}" in section
    assert "on the wire: one TLS record, encrypted" in section
    assert f"    0000  {leg.first_frame[:16].hex(' ')}" in section


def test_hexdump() -> None:
    assert hexdump(b"") == []
    assert hexdump(b"\x00\x00\x00\x02hi") == ["0000  00 00 00 02 68 69" + " " * 30 + "  ....hi"]
    lines = hexdump(bytes(range(20)))
    assert len(lines) == 2
    assert lines[1].startswith("0010  10 11 12 13 ")


def test_demo_command_exits_0_and_renders() -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    assert "every reply matched" in result.stdout
    json_result = CliRunner().invoke(cli, ["demo", "--json"])
    assert json_result.exit_code == 0
    data = json.loads(json_result.stdout)
    assert data["ok"] is True
    assert [leg["name"] for leg in data["legs"]] == ["tcp", "udp", "mem", "negotiated"]
    negotiated = data["legs"][3]
    assert negotiated["agreement"]["compression"] == "zstd"
    assert negotiated["tls"]["version"] == "TLSv1.3"
    assert negotiated["plain_frame_hex"] != negotiated["first_frame_hex"]
    tcp = data["legs"][0]
    assert bytes.fromhex(tcp["first_frame_hex"])[:4] == struct.pack(
        ">I", tcp["first_frame_size"] - 4
    )
