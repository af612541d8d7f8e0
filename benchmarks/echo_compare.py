"""netweave's echo server side by side with asyncio, uvloop and Twisted, in one run.

Drives the shared harness (``echo_bench.py``: a C load client and peer servers
speaking 4-byte big-endian length-prefixed frames) with netweave's own
``netweave serve echo ... --stack lp4,raw`` added as a server, then prints the
harness's tables plus the ratios the foundation issue sets targets for:

* pipelined 100 B and 1 KiB frames (``st1_100B``, ``st1_1KiB``): netweave / Twisted
* ping-pong on one CPU (``pp1_100B_same``, ``pp50_100B_same``): netweave / asyncio Protocol

Set-up of the peers (their own virtual environment, as the harness README says)::

    python -m venv ~/.cache/bench-venv
    ~/.cache/bench-venv/bin/pip install uvloop trio twisted anyio

Run (from the repository root, with netweave installed in the current interpreter)::

    python benchmarks/echo_compare.py --harness ../shared/bench/echo_bench.py \\
        --peer-python ~/.cache/bench-venv/bin/python --reps 3

Only 127.0.0.1 is used. Quote medians and ratios from one run, never one sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = "pp1_100B_same,pp50_100B_same,st1_100B,st1_1KiB,st1_64KiB"
PEERS = "asyncio-proto,uvloop-proto,twisted"
TARGETS = {
    # case: (reference server, target ratio)
    "st1_100B": ("twisted", 1.0),
    "st1_1KiB": ("twisted", 1.0),
    "pp1_100B_same": ("asyncio-proto", 1.0),
    "pp50_100B_same": ("asyncio-proto", 1.0),
}


def netweave_command(loop: str) -> str:
    exe = sys.executable
    return f"{exe} -m netweave serve echo tcp://127.0.0.1:{{port}} --stack lp4,raw --loop {loop}"


def medians(path: Path) -> dict[tuple[str, str], float]:
    runs: dict[tuple[str, str], list[float]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("type") == "result" and row.get("ok"):
            runs.setdefault((row["server"], row["case"]), []).append(row["msgs_per_s"])
    return {key: statistics.median(values) for key, values in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harness", default="../shared/bench/echo_bench.py")
    parser.add_argument(
        "--peer-python", default=os.path.expanduser("~/.cache/bench-venv/bin/python")
    )
    parser.add_argument("--peers", default=PEERS)
    parser.add_argument("--cases", default=CASES)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--out", default="benchmarks/results/echo.jsonl")
    args = parser.parse_args()

    harness = Path(args.harness).resolve()
    if not harness.is_file():
        print(f"echo_compare: harness not found at {harness} (pass --harness)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    command = [
        args.peer_python,
        str(harness),
        "run",
        "--servers",
        args.peers,
        "--server",
        f"netweave={netweave_command('asyncio')}",
        "--server",
        f"netweave-uvloop={netweave_command('uvloop')}",
        "--cases",
        args.cases,
        "--reps",
        str(args.reps),
        "--duration",
        str(args.duration),
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, timeout=3600)
    subprocess.run(
        [args.peer_python, str(harness), "report", str(out), "--case-order", args.cases],
        check=True,
        timeout=120,
    )
    table = medians(out)
    print("\n#### netweave against the issue's targets (ratio of median msgs/s)\n")
    print("| case | reference | netweave (asyncio) | netweave (uvloop) | target |")
    print("|---|---|---:|---:|---:|")
    for case, (reference, target) in TARGETS.items():
        ref = table.get((reference, case))
        if not ref:
            continue
        cells = []
        for server in ("netweave", "netweave-uvloop"):
            value = table.get((server, case))
            cells.append(f"{value / ref:.2f}x" if value else "n/a")
        print(f"| {case} | {reference} | {cells[0]} | {cells[1]} | >= {target:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
