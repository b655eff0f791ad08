"""Benchmark of #16 item 8: the load body's compressor on data that does not shrink and on data
that does, with its verdicts (store what does not shrink; store where the link outruns the
compressor) against the same compressor with them off (every byte compressed, as before), in one
run, this machine's CPU. The body goes to a simulated link that takes `--rates` MB/s (a sleep per
output, as a blocking socket write would take), so the time is the body's time on that link.

    .venv/bin/python -m tests.bench.bench_compress [--mb 256] [--runs 3] [--rates 12.5 117 400]

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


def run(kind: str, data: bytes, verdict: bool, rate: float) -> tuple[float, int]:
    keep, fast = compression.KEEP, compression.FAST_LINK_WINDOWS
    if not verdict:  # off: nothing ever counts as not shrinking, no link as faster
        compression.KEEP, compression.FAST_LINK_WINDOWS = float("inf"), 0
    try:
        body = compression.BodyCompressor(kind)
        started = time.perf_counter()
        size = 0
        for chunk in chunks(data):
            out = body.write(chunk, False)
            if out:
                size += len(out)
                sending = time.perf_counter()
                time.sleep(len(out) / (rate * (1 << 20)))
                body.sent(time.perf_counter() - sending)
        tail = body.close()
        time.sleep(len(tail) / (rate * (1 << 20)))
        return time.perf_counter() - started, size + len(tail)
    finally:
        compression.KEEP, compression.FAST_LINK_WINDOWS = keep, fast


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[12.5, 117.0, 400.0], help="link MB/s")
    args = parser.parse_args()
    sets = {"random": random_data(args.mb), "files": files_data(args.mb)}
    print(f"{args.mb} MB per data set, median of {args.runs} runs\n")
    print("| data | body | link | every byte compressed (before) | with the verdicts (now) | speed-up | wire |")
    print("|---|---|---|---|---|---|---|")
    for name, data in sets.items():
        mb = len(data) / (1 << 20)
        for kind in ("gzip", "zstd"):
            for rate in args.rates:
                before = [run(kind, data, False, rate) for _ in range(args.runs)]
                now = [run(kind, data, True, rate) for _ in range(args.runs)]
                t0 = statistics.median(t for t, _ in before)
                t1 = statistics.median(t for t, _ in now)
                s0, s1 = before[0][1], now[0][1]
                print(
                    f"| {name} | {kind} | {rate:g} MB/s | {t0:.1f} s ({mb / t0:.0f} MB/s) "
                    f"| {t1:.1f} s ({mb / t1:.0f} MB/s) | {t0 / t1:.1f}x | {s0 / len(data):.0%} → {s1 / len(data):.0%} |"
                )


if __name__ == "__main__":
    main()
