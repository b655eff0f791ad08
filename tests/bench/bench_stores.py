"""Micro-benchmark: one layer read straight from the engine's storage (#18: tar-split reassembly,
or the content blob, sha256-verified as it streams) against the engine's own export of the image
(`GET /images/{id}/get`, read to the end and dropped), which is what every copy pays today.

One image per engine: a ~500 MB layer of incompressible files, and a 20 MB update COPYed on top.
Everything is read once before timing (page cache warm for both), then each case is timed
`--runs` times and the median reported.

    .venv/bin/python -m tests.bench.bench_stores [--engines docker26,docker28c,podman] [--big-mb 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from docker_d2d.formats.stores import probe
from tests.harness.engines import Engine, destroy_all, start_engine


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def random_files(target: Path, total: int, each: int = 10 << 20) -> None:
    target.mkdir(parents=True)
    for i in range(0, total, each):
        (target / f"weights-{i // each:04d}.bin").write_bytes(os.urandom(min(each, total - i)))


def build(engine: Engine, work: Path, big_mb: int, update_mb: int) -> str:
    """A ~big_mb layer imported, a update_mb layer built on top; returns the image's reference."""
    work.mkdir(parents=True)
    random_files(work / "big", big_mb << 20)
    subprocess.run(
        f"tar -C {work / 'big'} -c . | docker -H {engine.host} import - bench-store-base:1",
        shell=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(work / "big")
    ctx = work / "ctx"
    random_files(ctx / "update", update_mb << 20, each=update_mb << 20)
    # by id: Podman names an import docker.io/library/..., a load localhost/...
    base = engine.docker("image", "inspect", "--format", "{{.Id}}", "bench-store-base:1").stdout.decode().strip()
    base = base.split(":")[-1]
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY update /update\n")
    done = engine.docker("build", "-q", "-t", "bench-store:1", str(ctx), check=False)
    if done.returncode:
        raise SystemExit(f"build at {engine.spec.name} failed: {done.stderr.decode(errors='replace')}")
    shutil.rmtree(ctx)
    return "bench-store:1"


def client(engine: Engine) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(engine.socket)), base_url="http://engine", timeout=600)


def export_bytes(engine: Engine, ident: str) -> int:
    n = 0
    with client(engine) as c, c.stream("GET", f"/images/{ident}/get") as resp:
        resp.raise_for_status()
        for chunk in resp.iter_raw(1 << 20):
            n += len(chunk)
    return n


def timed(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - t)
    return median(times), size


def bench(name: str, work: Path, big_mb: int, update_mb: int, runs: int) -> list[tuple[str, ...]]:
    engine = start_engine(name, work)  # in work/NAME (Podman wants its runroot path short)
    try:
        ref = build(engine, work / f"ctx-{name}", big_mb, update_mb)
        with client(engine) as c:
            ident = c.get(f"/images/{ref}/json").json()["Id"]
            info = c.get("/info").json()
            libpod = c.get("/v4.0.0/libpod/info").json() if engine.spec.kind == "podman" else None

        def read_layer(index: int) -> Callable[[], int]:
            def run() -> int:
                # what a source does per image: find the store, read the image's config, open one layer
                cap = probe.probe(info, libpod)
                assert cap.store is not None, cap.describe()
                stored = cap.store.image(ident)
                layer = stored.layer(index)
                n = 0
                for chunk in layer.chunks():  # sha256-verified as it streams
                    n += len(chunk)
                return n

            return run

        export_bytes(engine, ident)  # warm the page cache for both ways alike
        read_layer(0)()
        read_layer(1)()
        big_t, big_n = timed(read_layer(0), runs)
        upd_t, upd_n = timed(read_layer(1), runs)
        exp_t, exp_n = timed(lambda: export_bytes(engine, ident), runs)
        origin = probe.probe(info, libpod).describe()
        return [
            (
                name,
                f"store: the {big_n / 1e6:.0f} MB layer",
                f"{big_t:.2f}s",
                f"{big_n / big_t / 1e6:.0f} MB/s",
                origin,
            ),
            (
                name,
                f"store: the {upd_n / 1e6:.0f} MB update layer",
                f"{upd_t:.3f}s",
                f"{upd_n / upd_t / 1e6:.0f} MB/s",
                "",
            ),
            (
                name,
                f"export of the image ({exp_n / 1e6:.0f} MB)",
                f"{exp_t:.2f}s",
                f"{exp_n / exp_t / 1e6:.0f} MB/s",
                "",
            ),
            (name, "export / store (big layer)", f"{exp_t / big_t:.1f}x", "", ""),
            (name, "export / store (update layer)", f"{exp_t / upd_t:.0f}x", "", ""),
        ]
    finally:
        destroy_all([engine])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="docker26", help="comma-separated engine kinds (tests/harness/engines.py)")
    ap.add_argument("--big-mb", type=int, default=500)
    ap.add_argument("--update-mb", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5, help="runs per case; medians are reported")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2d-bench-stores-", dir="/var/tmp"))
    rows: list[tuple[str, ...]] = []
    try:
        for name in args.engines.split(","):
            rows += bench(name, work, args.big_mb, args.update_mb, args.runs)
            widths = [max(len(r[i]) for r in rows) for i in range(5)]
            for row in rows[-5:]:
                print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
