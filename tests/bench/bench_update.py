"""Benchmark of #18: an update whose layers are read straight from the source engine's storage, each
case against its baseline in the same run.

Images: a big one (three layers of incompressible files, `--big-mb` each) and the realistic fixture
(tests/harness/realistic.py: a 200 MB base of real files and a 35 MB app layer), each updated by
the same `--change-mb` MB change (incompressible, byte for byte the same file on both); the
realistic fixture is also updated as usual (15 MB of real files). The destination always holds
the previous version, placed with `docker save | docker load` (so a containerd store holds the
same blobs as the source, as after a pull from one registry).

    local   Docker 26.1 overlay2 -> Docker 26.1 overlay2, and Docker 28.5 containerd store -> Docker
            28.5 containerd store (the source's images built in its store: gzip blobs), against
            `docker save | docker load`
    ssh     a far host (a network namespace, tc tbf at --rate on both veth ends, sshd, Docker 26.1):
            push against `docker save | ssh HOST docker load`, pull against `ssh HOST docker save |
            docker load`

    .venv/bin/python -m tests.bench.bench_update [--big-mb 500] [--change-mb 20] [--rate 100mbit] [--runs 3]
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

from tests.bench.bench_pull import Far
from tests.bench.timing import d2d
from tests.harness.engines import Engine, start_engine
from tests.harness.realistic import build_image
from tests.harness.sshd import SshClientHome

Row = tuple[str, str, float, float, str]  # case, image, baseline s, docker-d2d s, how it read


def sh(cmd: str, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def random_file(path: Path, mb: int) -> None:
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))


def build(engine: Engine, work: Path, big_mb: int, change: Path, realistic: bool = True) -> None:
    """At `engine`, with its own builder: big:1 (three incompressible layers) and big:2 (+ the
    change); with `realistic`, real:1 (the realistic fixture), real:2 (+ 15 MB of real files, the
    usual update) and real:3 (+ the change)."""
    ctx = work / "ctx-big"
    ctx.mkdir()
    for name in "abc":
        random_file(ctx / name, big_mb)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a /a\nCOPY b /b\nCOPY c /c\n")
    engine.docker("build", "-q", "-t", "big:1", str(ctx))
    shutil.rmtree(ctx)
    if realistic:
        build_image(engine, work, "real-base:1", None, 200, 0)
        build_image(engine, work, "real:1", "real-base:1", 35, 200)
        build_image(engine, work, "real:2", "real:1", 15, 235)
    for image, base in (("big:2", "big:1"), *((("real:3", "real:1"),) if realistic else ())):
        ctx = work / "ctx-change"
        ctx.mkdir()
        shutil.copyfile(change, ctx / "change")
        (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY change /change\n")
        engine.docker("build", "-q", "-t", image, str(ctx))
        shutil.rmtree(ctx)


def place(src: Engine, dst: Engine, *images: str) -> None:
    sh(f"docker -H {src.host} save {' '.join(images)} | docker -H {dst.host} load")


def drop_all_but(engine: Engine, keep: str) -> None:
    """Every image at `engine` but `keep` (the update, however it landed: a containerd store may
    name it by another id than the source's)."""
    kept = engine.docker("image", "inspect", "--format", "{{.Id}}", keep).stdout.decode().strip()
    ids = set(engine.docker("image", "ls", "-aq", "--no-trunc").stdout.decode().split()) - {kept}
    if ids:
        engine.docker("rmi", "-f", *ids, check=False)


def update(
    runs: int,
    baseline: Callable[[], float],
    ours: Callable[[], tuple[float, dict[str, object]]],
    reset: Callable[[], None],
) -> tuple[float, float, str]:
    """Medians of `runs` baseline and docker-d2d runs of one update, the destination reset between."""
    base_t, ours_t = [], []
    how = ""
    for _ in range(runs):
        base_t.append(baseline())
        reset()
        seconds, result = ours()
        ours_t.append(seconds)
        reset()
        read = result.get("layers_read") or {}
        assert isinstance(read, dict)
        how = ", ".join(f"{n} {k}" for k, n in read.items() if n)
    return median(base_t), median(ours_t), how


def local_update(src: Engine, dst: Engine, v1: str, v2: str, runs: int) -> tuple[float, float, str]:
    """`dst` holds v1: the update to v2, save|load against docker-d2d."""
    place(src, dst, v1)
    sh(f"docker -H {src.host} save {v2} > /dev/null")  # the page cache warm for both alike
    try:
        return update(
            runs,
            lambda: sh(f"docker -H {src.host} save {v2} | docker -H {dst.host} load"),
            lambda: d2d(dict(os.environ), "copy", "-s", src.host, "-d", dst.host, v2),
            lambda: drop_all_but(dst, v1),
        )
    finally:
        dst.docker("rmi", "-f", v1, check=False)


def local_cases(work: Path, args: argparse.Namespace, change: Path) -> list[Row]:
    rows: list[Row] = []
    for kind, label in (("docker26", "overlay2 -> overlay2"), ("docker28c", "containerd store -> containerd store")):
        src, dst = start_engine(kind, work / "src"), start_engine(kind, work / "dst")
        try:
            build(src, work, args.big_mb, change)
            for v1, v2 in (("big:1", "big:2"), ("real:1", "real:2"), ("real:1", "real:3")):
                base, ours, how = local_update(src, dst, v1, v2, args.runs)
                rows.append((f"local update, {label}", f"{v2} {_image(src, v2)}", base, ours, how))
        finally:
            src.destroy()
            dst.destroy()
            shutil.rmtree(work / "src", ignore_errors=True)
            shutil.rmtree(work / "dst", ignore_errors=True)
    return rows


def ssh_cases(work: Path, args: argparse.Namespace, change: Path) -> list[Row]:
    client = SshClientHome(work / "home")
    client.key()
    far = Far(work, client, "u", 100 + os.getpid() % 50 * 2, args.rate)
    local = start_engine("docker26", work / "local")
    rows: list[Row] = []
    try:
        build(local, work, args.big_mb, change, realistic=False)
        env = client.env(DOCKER_HOST=local.host)
        size = _image(local, "big:2")
        place(local, far.engine, "big:1")
        sh(f"docker -H {local.host} save big:2 > /dev/null")

        def reset_far() -> None:  # the far host holds big:1
            drop_all_but(far.engine, "big:1")

        base, ours, how = update(
            args.ssh_runs,
            lambda: sh(f"docker -H {local.host} save big:2 | {far.ssh} '{far.docker} load'", env),
            lambda: d2d(env, "push", far.url, "big:2"),
            reset_far,
        )
        rows.append((f"ssh push over {args.rate}", size, base, ours, how))
        place(local, far.engine, "big:2")
        local.docker("rmi", "big:2")
        sh(f"docker -H unix://{far.engine.socket} save big:2 > /dev/null")

        def reset_local() -> None:  # the local engine holds big:1
            drop_all_but(local, "big:1")

        base, ours, how = update(
            args.ssh_runs,
            lambda: sh(f"{far.ssh} '{far.docker} save big:2' | docker -H {local.host} load", env),
            lambda: d2d(env, "pull", far.url, "big:2"),
            reset_local,
        )
        rows.append((f"ssh pull over {args.rate}", size, base, ours, how))
    finally:
        far.destroy()
        local.destroy()
    return rows


def _image(engine: Engine, ref: str, extra_mb: int = 0) -> str:
    size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout) + (extra_mb << 20)
    return f"{size / 1e6:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mb", type=int, default=500, help="each of the big image's three layers")
    ap.add_argument("--change-mb", type=int, default=20)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--runs", type=int, default=3, help="runs per local case (medians)")
    ap.add_argument("--ssh-runs", type=int, default=1, help="runs per ssh case (a baseline moves the image)")
    ap.add_argument("--skip", default="", help="local,ssh: parts to leave out")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2d-bench-", dir="/var/tmp"))
    change = work / "change.bin"
    random_file(change, args.change_mb)
    rows: list[Row] = []
    try:
        if "local" not in args.skip:
            rows += local_cases(work, args, change)
        if "ssh" not in args.skip:
            rows += ssh_cases(work, args, change)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.change_mb} MB change on top; the destination holds the previous version; medians")
    print("| case | image | baseline | docker-d2d | speed-up | layers read from |")
    print("|---|---|---|---|---|---|")
    for case, image, base, ours, how in rows:
        print(f"| {case} | {image} | {base:.2f}s | {ours:.2f}s | {base / ours:.1f}x | {how} |")


if __name__ == "__main__":
    main()
