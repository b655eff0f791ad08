"""Benchmark of #16 item 8: the load body's compressor on data that does not shrink and on data
that does, with its verdict (store what did not shrink) against the same compressor with the
verdict off (every byte compressed, as before), in one run. Single thread, this machine's CPU; the
body's throughput bounds a copy wherever the link is faster than it (loopback ssh, a LAN).

    .venv/bin/python -m tests.bench.bench_compress [--mb 256] [--runs 3]

Data: `random` (os.urandom: model weights, media, archives inside a layer) and `files` (the
machine's own /usr files, as a layer of programs and libraries holds them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from docker_d2d.formats import compression

CHUNK = 1 << 20


def random_data(mb: int) -> bytes:
    return os.urandom(mb << 20)


def files_data(mb: int) -> bytes:
    out = bytearray()
    for root in ("/usr/lib", "/usr/share", "/usr/bin"):
        for path in sorted(Path(root).rglob("*")):
            if len(out) >= mb << 20:
                return bytes(out[: mb << 20])
            try:
                if path.is_file() and not path.is_symlink():
                    out += path.read_bytes()
            except OSError:
                continue
    return bytes(out)


def chunks(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for i in range(0, len(view), CHUNK):
        yield view[i : i + CHUNK]


def run(kind: str, data: bytes, verdict: bool) -> tuple[float, int]:
    keep = compression.KEEP
    compression.KEEP = keep if verdict else float("inf")  # off: nothing ever counts as not shrinking
    try:
        body = compression.BodyCompressor(kind)
        started = time.perf_counter()
        size = sum(len(body.write(c, False)) for c in chunks(data)) + len(body.close())
        return time.perf_counter() - started, size
    finally:
        compression.KEEP = keep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sets = {"random": random_data(args.mb), "files": files_data(args.mb)}
    print(f"{args.mb} MB per data set, median of {args.runs} runs\n")
    print(
        "| data | body | every byte compressed (before) | with the verdict (now) | speed-up | wire size before → now |"
    )
    print("|---|---|---|---|---|---|")
    for name, data in sets.items():
        mb = len(data) / (1 << 20)
        for kind in ("gzip", "zstd"):
            before = [run(kind, data, False) for _ in range(args.runs)]
            now = [run(kind, data, True) for _ in range(args.runs)]
            t0 = statistics.median(t for t, _ in before)
            t1 = statistics.median(t for t, _ in now)
            s0, s1 = before[0][1], now[0][1]
            print(
                f"| {name} | {kind} | {mb / t0:.0f} MB/s | {mb / t1:.0f} MB/s | {t0 / t1:.1f}x "
                f"| {s0 / len(data):.1%} → {s1 / len(data):.1%} |"
            )


if __name__ == "__main__":
    main()
