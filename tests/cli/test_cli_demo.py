"""``netweave demo``: the report's content (in process) and its rendering."""

from __future__ import annotations

import dataclasses
import json
import struct

import msgpack
import pytest
from click.testing import CliRunner

from netweave.cli import cli, format_report, hexdump
from netweave.demo import DemoLeg, DemoReport, LegReport, default_legs, run_demo


@pytest.fixture
async def report() -> DemoReport:
    return await run_demo()


def legs_by_transport(report: DemoReport) -> dict[str, LegReport]:
    return {leg.transport: leg for leg in report.legs}


async def test_default_legs_cover_three_transports_and_two_stacks() -> None:
    legs = default_legs()
    assert [leg.transport for leg in legs] == ["tcp", "udp", "mem"]
    assert len({leg.stack for leg in legs}) >= 2
    assert {leg.stack for leg in legs} >= {"lp4,json", "line,text"}
    assert legs[1].stack == "msgpack"  # msgpack is installed in the test environment


async def test_every_leg_succeeds_with_counts_from_both_sides(report: DemoReport) -> None:
    assert report.ok, format_report(report)
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
    tcp = legs_by_transport(report)["tcp"]
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
    udp = legs_by_transport(report)["udp"]
    assert udp.stack == "msgpack"
    assert msgpack.unpackb(udp.first_frame) == udp.messages[0]
    assert udp.bytes_sent == sum(len(msgpack.packb(m)) for m in udp.messages)


async def test_mem_first_frame_is_a_line(report: DemoReport) -> None:
    mem = legs_by_transport(report)["mem"]
    assert mem.url == "mem://demo"
    assert mem.stack == "line,text"
    assert mem.first_frame == mem.messages[0].encode() + b"\n"


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
    assert text.splitlines()[0] == "netweave demo: 3 transports, every reply matched what was sent"
    for leg in report.legs:
        assert f"{leg.transport}  {leg.url}  stack {leg.stack}" in text
        assert f"client->server {leg.bytes_sent}, server->client {leg.bytes_received}" in text
    tcp = legs_by_transport(report)["tcp"]
    assert f"    0000  {tcp.first_frame[:16].hex(' ')}" in text
    assert "    0000  00 00 00 " in text


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
    assert [leg["transport"] for leg in data["legs"]] == ["tcp", "udp", "mem"]
    tcp = data["legs"][0]
    assert bytes.fromhex(tcp["first_frame_hex"])[:4] == struct.pack(
        ">I", tcp["first_frame_size"] - 4
    )
