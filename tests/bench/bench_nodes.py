"""Benchmark: pushing an update to a 3-node kind-style cluster (node containers running containerd
2.1 in a local Docker 26.1, labelled as kind labels its nodes) with docker-d2d, against the method
of `kind load docker-image`: `docker save` the image once to a file, then pipe the whole archive
into `ctr --namespace=k8s.io images import --all-platforms --digests -` in every node, concurrently
(kind's pkg/cmd/kind/load/docker-image). The nodes hold the previous version; the update is a new
top layer on a shared base.

    .venv/bin/python -m tests.bench.bench_nodes [--base-mb 200 --app-mb 15 --runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench.timing import d2d
from tests.harness.engines import start_engine
from tests.harness.nodes import NodeContainer
from tests.harness.realistic import build_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-mb", type=int, default=200)
    ap.add_argument("--app-mb", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2dbn-", dir="/var/tmp"))
    engine = start_engine("docker26", work / "engine")
    nodes = [NodeContainer(engine, "bench", f"bench-node{i}") for i in range(3)]
    try:
        for node in nodes:
            node.start()
        build_image(engine, work, "nbase:1", None, args.base_mb, 0)
        build_image(engine, work, "napp:1", "nbase:1", args.app_mb, args.base_mb)
        build_image(engine, work, "napp:2", "nbase:1", args.app_mb, args.base_mb + args.app_mb)
        env = {**os.environ, "DOCKER_HOST": engine.host}
        d2d(env, "push", "kind://bench", "napp:1", last=("fleet", "result"))  # the nodes run version 1

        def reset() -> None:
            for node in nodes:
                node.ctr("images", "rm", "--sync", "docker.io/library/napp:2", check=False)

        def kind_load() -> float:
            t = time.perf_counter()
            archive = work / "image.tar"
            with open(archive, "wb") as f:
                subprocess.run(["docker", "save", "napp:2"], stdout=f, env=env, check=True)

            def load(node: NodeContainer) -> None:
                with open(archive, "rb") as f:
                    cmd = ["docker", "exec", "-i", node.name, "ctr", "--namespace=k8s.io", "images", "import"]
                    cmd += ["--all-platforms", "--digests", "-"]
                    subprocess.run(cmd, stdin=f, env=env, check=True, capture_output=True)

            with ThreadPoolExecutor(len(nodes)) as pool:
                list(pool.map(load, nodes))
            elapsed = time.perf_counter() - t
            archive.unlink()
            return elapsed

        ours: list[float] = []
        theirs: list[float] = []
        sent = 0
        for _ in range(args.runs):  # interleaved, so both see the same machine
            reset()
            theirs.append(kind_load())
            reset()
            elapsed, fleet = d2d(env, "push", "kind://bench", "napp:2", last=("fleet",))
            assert fleet.get("failed") == 0, fleet
            ours.append(elapsed)
            sent = sum(int(str(fleet.get(key) or 0)) for key in ("export_bytes", "store_bytes"))
        image_mb = int(engine.docker("image", "inspect", "--format", "{{.Size}}", "napp:2").stdout) / 1e6
        a, b = statistics.median(theirs), statistics.median(ours)
        print(f"\n3-node update push, {image_mb:.0f} MB image, {args.app_mb} MB new layer, medians of {args.runs}")
        print("| method | time | read from the source |")
        print("|---|---|---|")
        print(f"| kind load's method (save, import the whole archive into each node) | {a:.2f}s | {image_mb:.0f} MB |")
        print(f"| docker-d2d push kind://bench | {b:.2f}s | {sent / 1e6:.0f} MB |")
        print(
            f"speed-up {a / b:.2f}x; runs: kind load {[round(x, 2) for x in theirs]}, d2d {[round(x, 2) for x in ours]}"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        for node in nodes:
            node.stop()
        engine.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
