"""Benchmark: docker-d2d against `docker save | docker load` between two local engines.

One invocation builds a realistic image (real files), then times, in the same run:
cold copy, update (destination holds the previous version), no-op, the update's floor
(the source's own `docker save > /dev/null` plus a load of only the missing layers), and
docker-d2d's peak RSS, also on a ~1 GB image.

    .venv/bin/python -m tests.bench.bench_copy [--base-mb 200 --app-mb 35 --update-mb 15 --big-mb 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.engine.client import open_engine
from docker_d2d.engine.pool import SSHPool
from docker_d2d.engine.watch import Timeouts
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.model import parse_ref
from docker_d2d.transfer.plan import holdings, layer_sizes, plan_transfer
from docker_d2d.transfer.spec import stream_spec
from tests.conftest import d2d_path
from tests.harness.engines import Engine, start_engine
from tests.harness.realistic import build_image


def sh(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def d2d(src: Engine, dst: Engine, image: str) -> tuple[float, int]:
    """Time one docker-d2d copy; return (seconds, peak RSS in kB)."""
    t = time.perf_counter()
    proc = subprocess.Popen([d2d_path(), "copy", "-q", "-s", src.host, "-d", dst.host, image])
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"docker-d2d failed with {status}")
    return elapsed, usage.ru_maxrss


def thin_archive(src: Engine, dst: Engine, image: str, out: Path) -> None:
    """Write what docker-d2d would send for `image` into a file (not timed)."""
    with (
        SSHPool() as pool,
        open_engine(parse_endpoint(src.host), "source", Timeouts(), pool) as s,
        open_engine(parse_endpoint(dst.host), "destination", Timeouts(), pool) as d,
    ):
        si, di = s.connect(), d.connect()
        info = s.inspect(image)
        plan = plan_transfer(
            [(parse_ref(image), info, layer_sizes(s.history_sizes(info.id), len(info.diff_ids)))],
            si.kind,
            holdings(di.kind, d.all_images()),
        )
        with s.save([info.id]) as chunks, open(out, "wb") as f:
            for chunk in Rewriter(chunks, stream_spec(plan, si, di.kind)).stream():
                f.write(chunk)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="docker26", help="engine kind for both sides")
    ap.add_argument("--base-mb", type=int, default=200)
    ap.add_argument("--app-mb", type=int, default=35)
    ap.add_argument("--update-mb", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3, help="runs per case; medians are reported")
    ap.add_argument("--big-mb", type=int, default=1000, help="size of the RSS image (0: skip)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="d2d-bench-", dir="/var/tmp"))
    src = start_engine(args.engine, work / "src")
    dst = start_engine(args.engine, work / "dst")
    rows: list[tuple[str, str, str, str]] = []
    try:
        build_image(src, work, "bench-base:1", None, args.base_mb, 0)
        build_image(src, work, "bench:1", "bench-base:1", args.app_mb, args.base_mb)
        build_image(src, work, "bench:2", "bench:1", args.update_mb, args.base_mb + args.app_mb)
        size = int(src.docker("image", "inspect", "--format", "{{.Size}}", "bench:2").stdout)
        pipe = f"docker -H {src.host} save {{img}} | docker -H {dst.host} load"

        def rmi(*refs: str) -> None:
            dst.docker("rmi", *refs)

        def rmi_v2() -> None:
            """Every image at the destination but bench:1: the update however it landed (tagged, or
            untagged under an id that differs from the source's in a containerd store)."""
            keep = dst.docker("image", "inspect", "--format", "{{.Id}}", "bench:1").stdout.decode().strip()
            ids = set(dst.docker("image", "ls", "-aq", "--no-trunc").stdout.decode().split()) - {keep}
            if ids:
                dst.docker("rmi", "-f", *ids)

        sh(f"docker -H {src.host} save bench:2 > /dev/null")  # warm the page cache for both sides alike

        def median(values: list[float]) -> float:
            return sorted(values)[len(values) // 2]

        cold_b, cold_d, upd_b, upd_d, saves, loads, noops, rss = [], [], [], [], [], [], [], []
        thin = work / "thin.tar"
        for _ in range(args.runs):
            cold_b.append(sh(pipe.format(img="bench:1")))
            rmi("bench:1")
            t, r = d2d(src, dst, "bench:1")
            cold_d.append(t)
            rss.append(r)
            upd_b.append(sh(pipe.format(img="bench:2")))
            rmi_v2()
            saves.append(sh(f"docker -H {src.host} save bench:2 > /dev/null"))
            thin_archive(src, dst, "bench:2", thin)
            loads.append(sh(f"docker -H {dst.host} load -i {thin}"))
            rmi_v2()
            t, r = d2d(src, dst, "bench:2")
            upd_d.append(t)
            rss.append(r)
            noops.append(d2d(src, dst, "bench:2")[0])
            rmi_v2()
            rmi("bench:1")
        cold_base, cold_d2d = median(cold_b), median(cold_d)
        update_base, update_d2d = median(upd_b), median(upd_d)
        save_only, load_thin, noop_d2d = median(saves), median(loads), median(noops)
        floor = save_only + load_thin
        rss_cold = rss_update = max(rss)
        rows += [
            ("cold copy", f"{cold_base:.2f}s", f"{cold_d2d:.2f}s", f"d2d/save|load = {cold_d2d / cold_base:.2f}"),
            (
                "update",
                f"{update_base:.2f}s",
                f"{update_d2d:.2f}s",
                f"save|load/d2d = {update_base / update_d2d:.2f}x; d2d/floor = {update_d2d / floor:.2f}"
                f" (floor {floor:.2f}s = save {save_only:.2f}s + thin load {load_thin:.2f}s)",
            ),
            ("no-op", "-", f"{noop_d2d:.2f}s", ""),
            ("peak RSS", "-", f"{max(rss_cold, rss_update) / 1024:.0f} MB", f"image {size / 1e6:.0f} MB"),
        ]
        if args.big_mb:
            build_image(src, work, "bench-big:1", None, args.big_mb, 0)
            big = int(src.docker("image", "inspect", "--format", "{{.Size}}", "bench-big:1").stdout)
            big_t, big_rss = d2d(src, dst, "bench-big:1")
            rows.append(
                (
                    "peak RSS, big image",
                    "-",
                    f"{big_rss / 1024:.0f} MB",
                    f"image {big / 1e6:.0f} MB, cold copy {big_t:.1f}s",
                )
            )
    finally:
        src.destroy()
        dst.destroy()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nengines: {args.engine} -> {args.engine} (local unix sockets); image {size / 1e6:.0f} MB, "
        f"update layer {args.update_mb} MB; medians of {args.runs} runs"
    )
    print("| case | docker save \\| docker load | docker-d2d | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
