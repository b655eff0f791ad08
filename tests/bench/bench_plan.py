"""Benchmark: a no-op push to a destination holding hundreds of images behind a 50 ms round trip.

The destination (Docker 26.1) sits behind tests/harness/delay_proxy.py (25 ms each way). In one run,
for each image count: the baseline, a serial inspect of every image as docker-d2d 0.1 planned
(timed with the same client through the same proxy); docker-d2d with an empty inspect cache
(concurrent inspects); docker-d2d with a warm cache (the usual case). Medians of --runs.

    .venv/bin/python -m tests.bench.bench_plan [--counts 300 1000 --runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.engine.client import open_engine
from docker_d2d.engine.pool import SSHPool
from docker_d2d.engine.watch import Timeouts
from tests.conftest import d2d_path
from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import start_engine
from tests.harness.images import Builder, many_images, rootfs_tar, unique


def timed_noop(src: str, dst: str, image: str, cache: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [d2d_path(), "copy", "-q", "-s", src, "-d", dst, image],
        check=True,
        env={"DOCKER_D2D_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"},
    )
    return time.perf_counter() - t


def serial_inspects(dst: str) -> float:
    t = time.perf_counter()
    with SSHPool() as pool, open_engine(parse_endpoint(dst), "destination", Timeouts(), pool) as client:
        client.connect()
        for image_id in client.list_image_ids():
            client.inspect(image_id)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="d2d-bench-plan-", dir="/var/tmp"))
    engines = [start_engine("docker20", base), start_engine("docker26", base)]
    src, dst = engines
    try:
        image = unique("app") + ":1"
        src.docker("import", "-", image, input=rootfs_tar({"app": b"app\n"}))
        Builder(src).place(dst, image)  # the destination holds it: a no-op
        proxy = DelayProxy(str(dst.socket), delay=0.025).start()
        rows = []
        held = 0
        for count in sorted(args.counts):
            many_images(dst, count - held, unique("held"))
            held = count
            serial = statistics.median(serial_inspects(proxy.host) for _ in range(args.runs))
            cold, warm = [], []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as cache:
                    cold.append(timed_noop(src.host, proxy.host, image, Path(cache)))
                    warm.append(timed_noop(src.host, proxy.host, image, Path(cache)))
            rows.append((count, serial, statistics.median(cold), statistics.median(warm)))
        proxy.stop()
        print(
            "| images at the destination | serial inspects (0.1's planning) | no-op, empty cache | no-op, warm cache |"
        )
        print("|---|---|---|---|")
        for count, serial, cold_s, warm_s in rows:
            print(f"| {count} | {serial:.2f}s | {cold_s:.2f}s | {warm_s:.2f}s |")
    finally:
        for engine in engines:
            engine.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
