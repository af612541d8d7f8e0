"""Compression layers next to the libraries they wrap, in one run.

For zlib (stdlib), zstd (``zstandard``) and lz4 (``lz4.block``) and several
frame sizes, measures MB/s of uncompressed data through

* the library called directly, as a program would in a loop (reused
  compressor objects where the library has them, one-shot calls otherwise);
* netweave's layer: ``Zlib``/``Zstd``/``Lz4`` ``encode`` and ``decode``, which add
  the marker byte and the decompression bound (zlib: a bounded
  ``decompressobj``; zstd and lz4: a size check before expanding);

and prints the compression ratio and the layer's overhead (target: at most
10% slower than the library). Library and layer run in alternating small
batches for ``--seconds`` of CPU time (``time.process_time``); the overhead is
the median ratio over adjacent batch pairs, so other processes and clock-speed
changes on a shared machine hit both sides alike.

Run from the repository root::

    python benchmarks/compress_overhead.py
    python benchmarks/compress_overhead.py --sizes 1k,64k --seconds 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import zlib
from collections.abc import Callable

import lz4.block
import zstandard

from netweave.endpoints import parse_size
from netweave.layers import Compression, Lz4, Zlib, Zstd


def payload(size: int, seed: int = 7) -> bytes:
    """JSON-like text: compressible the way application messages are."""
    rng = random.Random(seed)
    words = ["user", "id", "name", "status", "ok", "error", "items", "price", "count", "true"]
    parts: list[str] = []
    total = 0
    while total < size:
        record = json.dumps(
            {rng.choice(words): rng.randint(0, 10**6), "k": rng.choice(words) * rng.randint(1, 3)}
        )
        parts.append(record)
        total += len(record) + 1
    return ",".join(parts).encode()[:size]


def paired(
    first: Callable[[], object], second: Callable[[], object], seconds: float
) -> tuple[float, float, float]:
    """Time ``first`` and ``second`` in alternating small batches for about ``seconds``
    of CPU time: ``(best seconds per call of first, of second, median ratio
    second / first over the batch pairs)``.

    CPU time of this process (``time.process_time``), and pairs of adjacent
    batches, so other processes and clock-speed changes on a shared machine
    affect both sides alike.
    """
    calls = 1
    while True:
        start = time.process_time()
        for _ in range(calls):
            first()
        if time.process_time() - start >= 0.002:
            break
        calls *= 2
    best_first = best_second = float("inf")
    ratios: list[float] = []
    deadline = time.process_time() + seconds
    while time.process_time() < deadline or len(ratios) < 5:
        start = time.process_time()
        for _ in range(calls):
            first()
        middle = time.process_time()
        for _ in range(calls):
            second()
        end = time.process_time()
        if middle > start and end > middle:
            best_first = min(best_first, (middle - start) / calls)
            best_second = min(best_second, (end - middle) / calls)
            ratios.append((end - middle) / (middle - start))
    return best_first, best_second, statistics.median(ratios)


def direct(name: str, level: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    if name == "zlib":
        return (lambda d: zlib.compress(d, level)), zlib.decompress
    if name == "zstd":
        compressor = zstandard.ZstdCompressor(level=level)
        decompressor = zstandard.ZstdDecompressor()
        return compressor.compress, decompressor.decompress
    return (lambda d: lz4.block.compress(d, store_size=True)), lz4.block.decompress


LAYERS: dict[str, tuple[type[Compression], int]] = {
    "zlib": (Zlib, 6),
    "zstd": (Zstd, 3),
    "lz4": (Lz4, 0),
}


def measure(name: str, size: int, seconds: float) -> dict[str, float]:
    cls, level = LAYERS[name]
    data = payload(size)
    pack, unpack = direct(name, level)
    layer = cls(level=level, threshold=0, max_frame=max(size, 1 << 20))
    packed = pack(data)
    frame = layer.encode(data)
    assert frame[1:] == packed, f"{name}: the layer's body differs from the library's output"
    assert unpack(packed) == data
    assert layer.decode(frame) == [data]
    lib_c, layer_c, over_c = paired(lambda: pack(data), lambda: layer.encode(data), seconds)
    lib_d, layer_d, over_d = paired(lambda: unpack(packed), lambda: layer.decode(frame), seconds)
    out = {
        "lib_c": size / lib_c / 1e6,
        "layer_c": size / layer_c / 1e6,
        "over_c": over_c - 1,
        "lib_d": size / lib_d / 1e6,
        "layer_d": size / layer_d / 1e6,
        "over_d": over_d - 1,
    }
    out["ratio"] = size / len(frame)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1k,16k,256k", help="frame sizes (default 1k,16k,256k)")
    parser.add_argument("--algorithms", default="zlib,zstd,lz4")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per pairing")
    args = parser.parse_args()
    sizes = [parse_size(text) for text in args.sizes.split(",")]
    print(f"{'algo':5} {'frame':>7} {'ratio':>6} | {'compress MB/s':>27} | {'decompress MB/s':>27}")
    print(
        f"{'':5} {'':>7} {'':>6} | {'library':>8} {'layer':>8} {'over':>8} | "
        f"{'library':>8} {'layer':>8} {'over':>8}"
    )
    worst = 0.0
    for name in args.algorithms.split(","):
        for size in sizes:
            m = measure(name, size, args.seconds)
            over_c, over_d = m["over_c"], m["over_d"]
            worst = max(worst, over_c, over_d)
            print(
                f"{name:5} {size:>7} {m['ratio']:>6.2f} | {m['lib_c']:>8.1f} {m['layer_c']:>8.1f} "
                f"{over_c:>+8.1%} | {m['lib_d']:>8.1f} {m['layer_d']:>8.1f} {over_d:>+8.1%}"
            )
    verdict = "within" if worst <= 0.10 else "OVER"
    print(
        f"\nworst overhead {worst:+.1%} ({verdict} the 10% target; 'over' = the median, over "
        f"adjacent batch pairs, of layer time / library time - 1; MB/s from the best batches)"
    )


if __name__ == "__main__":
    main()
