"""``netweave sim run / sweep / check`` through click's runner, and one real sweep."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from netweave.cli import cli

SCENARIOS = '''
import asyncio
import random


class Sink(asyncio.DatagramProtocol):
    pass


def pingpong(sim):
    """Host a sends three datagrams to b; fails for seeds that are 3 mod 7."""
    sim.add_host("a")
    sim.add_host("b")

    async def receiver():
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Sink, local_addr=("0.0.0.0", 9))
        await asyncio.sleep(3600)

    async def sender():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Sink, remote_addr=("b", 9))
        for _ in range(3):
            await asyncio.sleep(random.uniform(0.1, 1))
            transport.sendto(b"ping")
        transport.close()
        assert sim.seed % 7 != 3, "unlucky seed"

    sim.spawn("b", receiver)
    sim.spawn("a", sender)


async def driven(sim):
    """An async scenario: the driver lets time pass, then checks."""
    sim.add_host("a")
    await asyncio.sleep(5)
    assert sim.now == 5


COUNTER = []


def nondeterministic(sim):
    COUNTER.append(1)
    sim.add_host("a")
    sim.add_host("b")

    async def sender():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Sink, remote_addr=("b", 9))
        transport.sendto(b"x" * len(COUNTER))
        transport.close()

    sim.spawn("a", sender)
'''


@pytest.fixture
def scenarios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A scenario module, importable from the current directory; returns its name."""
    name = f"scenarios_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(SCENARIOS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sim", *args])


def test_run_passes_and_writes_trace_and_pcap(scenarios: str, tmp_path: Path) -> None:
    trace, pcap = tmp_path / "out.jsonl", tmp_path / "out.pcap"
    result = invoke("run", f"{scenarios}:pingpong", "--seed", "1", "--trace", str(trace),
                    "--pcap", str(pcap))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("seed 1: ok (")
    lines = trace.read_text().splitlines()
    assert f"{len(lines)} events" in result.stdout
    assert {json.loads(line)["event"] for line in lines} >= {"packet_sent", "packet_delivered"}
    assert pcap.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")  # nanosecond pcap, little-endian
    again = invoke("run", f"{scenarios}:pingpong", "--seed", "1")
    assert again.stdout.splitlines()[-1] == result.stdout.splitlines()[-1]  # the trace hash


def test_run_an_async_scenario(scenarios: str) -> None:
    result = invoke("run", f"{scenarios}:driven", "--until", "10")
    assert result.exit_code == 0, result.output
    assert "10.000000 s simulated" in result.stdout


def test_run_a_failing_seed(scenarios: str) -> None:
    result = invoke("run", f"{scenarios}:pingpong", "--seed", "3")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "seed 3: FAILED: HostFailed" in result.stderr
    assert "unlucky seed" in result.stderr


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no-colon", "expected MODULE:FUNCTION"),
        ("no_such_module_anywhere:f", "no such module"),
        ("{module}:missing", "has no attribute 'missing'"),
        ("{module}:SCENARIOS_MISSING.x", "has no attribute"),
    ],
)
def test_bad_scenarios_are_usage_errors(scenarios: str, spec: str, words: str) -> None:
    result = invoke("run", spec.format(module=scenarios))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_sweep_lists_failing_seeds_with_their_replay_command(scenarios: str) -> None:
    result = invoke("sweep", f"{scenarios}:pingpong", "--seeds", "0..10", "--jobs", "1")
    assert result.exit_code == 1
    out = result.stdout
    assert f"{scenarios}:pingpong: 11 seeds, 9 passed, 2 failed" in out
    assert "FAILED seed 3: HostFailed" in out
    assert f"  replay: netweave sim run {scenarios}:pingpong --seed 10" in out
    replay = invoke("run", f"{scenarios}:pingpong", "--seed", "10")
    assert replay.exit_code == 1
    assert "unlucky seed" in replay.stderr


def test_sweep_replay_commands_keep_the_limits(scenarios: str) -> None:
    result = invoke("sweep", f"{scenarios}:pingpong", "--seeds", "3", "--jobs", "1",
                    "--until", "20", "--max-time", "100")  # fmt: skip
    assert "--seed 3 --until 20.0 --max-time 100.0" in result.stdout


def test_sweep_bad_seeds_are_usage_errors(scenarios: str) -> None:
    for seeds in ("5..1", "a..b", ""):
        result = invoke("sweep", f"{scenarios}:pingpong", "--seeds", seeds)
        assert result.exit_code == 2, seeds
        assert "netweave: error:" in result.stderr


def test_check(scenarios: str) -> None:
    ok = invoke("check", f"{scenarios}:pingpong", "--seed", "4")
    assert ok.exit_code == 0, ok.output
    assert "seed 4: deterministic" in ok.stdout
    bad = invoke("check", f"{scenarios}:nondeterministic")
    assert bad.exit_code == 1
    assert "first divergent event: #0" in bad.stdout


def test_a_real_sweep_in_two_worker_processes(scenarios: str, tmp_path: Path) -> None:
    command = ["sim", "sweep", f"{scenarios}:pingpong", "--seeds", "0..4", "--jobs", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "netweave", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"{scenarios}:pingpong: 5 seeds, 4 passed, 1 failed" in done.stdout
    assert f"replay: netweave sim run {scenarios}:pingpong --seed 3" in done.stdout
    assert "5 seeds" in done.stderr  # the progress bar's label
