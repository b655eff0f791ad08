"""Start-up time of what the docker CLI runs often: the metadata probe (on every `docker --help`,
`docker info` and completion) and __complete without engine contact. Target: < 150 ms wall.

    .venv/bin/python -m tests.bench.bench_startup [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tests.conftest import d2d_path


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--exe", default=d2d_path(), help="the docker-d2d to time (e.g. the single-file build)")
    args = ap.parse_args()
    baseline = wall([sys.executable, "-c", "pass"], args.runs)
    rows = [("python -c pass", baseline)]
    for label, argv in [
        ("docker-cli-plugin-metadata", ["docker-cli-plugin-metadata"]),
        ("__complete d2d pu", ["__complete", "d2d", "pu"]),
        ("__complete d2d copy --d", ["__complete", "d2d", "copy", "--d"]),
        ("--help (typer)", ["--help"]),
    ]:
        rows.append((label, wall([args.exe, *argv], args.runs)))
    print(f"{args.exe}, median of {args.runs} runs")
    print("| command | wall (ms) | vs python -c pass |")
    print("|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {ms:.0f} | {ms / baseline:.2f}x |")


if __name__ == "__main__":
    main()
