"""Benchmark over a shaped link: docker-d2d against `docker save | ssh host docker load` and
`docker save | gzip | ssh host 'gunzip | docker load'`, to a second host in a network namespace
whose link is shaped with tbf (no netem here). Also the ssh transport's raw throughput on
loopback against the OpenSSH client.

    .venv/bin/python -m tests.bench.bench_ssh [--rate 100mbit] [--base-mb 200 --app-mb 35 --update-mb 15]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import zstandard

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.engine.ssh import SSHConnection
from docker_d2d.engine.watch import Timeouts
from tests.bench.timing import d2d
from tests.harness.engines import SPECS, Engine, start_engine
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.sshd import SshClientHome, Sshd


def timed(cmd: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def zstd3_of_layer(src: Engine, image: str, diff_id: str) -> int:
    """Size of the layer compressed with zstd -3: the ideal bytes for an update."""
    data = src.docker("save", image).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.name.endswith(diff_id[7:]) or member.name == f"blobs/sha256/{diff_id[7:]}":
                blob = tar.extractfile(member).read()  # type: ignore[union-attr]
                return len(zstandard.ZstdCompressor(level=3).compress(blob))
    raise SystemExit(f"layer {diff_id} not found in the export")


def zstd_throughput(src: Engine, image: str) -> float:
    """MB/s of docker-d2d's wire compression on this image's export (in memory, so disk is not measured)."""
    from docker_d2d.transfer.compress import Compression, compressed

    data = src.docker("save", image).stdout
    chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    t = time.perf_counter()
    for _ in compressed(chunks, Compression.ZSTD):
        pass
    return len(data) / 1e6 / (time.perf_counter() - t)


def raw_throughput(work: Path, client: SshClientHome, mb: int = 512) -> tuple[float, float]:
    """MB/s pushing `mb` MB through one ssh channel: OpenSSH client, then our paramiko transport."""
    srv = Sshd(work / "loop-sshd").start({"root": [client.ssh / "id_ed25519"]})
    client.trust(srv)
    sink = work / "sink.sock"
    socat = subprocess.Popen(["socat", "-u", f"UNIX-LISTEN:{sink},fork", "OPEN:/dev/null"])
    try:
        time.sleep(0.3)
        blob = os.urandom(1 << 20)
        src = work / "blob"
        with open(src, "wb") as f:
            for _ in range(mb):
                f.write(blob)
        env = client.env()
        ssh = (
            f"ssh -p {srv.port} -i {client.ssh}/id_ed25519 -o UserKnownHostsFile={client.ssh}/known_hosts "
            f"-o BatchMode=yes root@127.0.0.1"
        )
        openssh = mb / timed(f"{ssh} 'cat > /dev/null' < {src}", env)
        os.environ["HOME"] = str(client.home)
        conn = SSHConnection(parse_endpoint(f"ssh://root@127.0.0.1:{srv.port}{sink}"), Timeouts())
        conn.connect()
        from docker_d2d.engine.ssh import open_streamlocal

        channel = open_streamlocal(conn.transport, str(sink), Timeouts().connect)
        t = time.perf_counter()
        with open(src, "rb") as f:
            while chunk := f.read(1 << 20):
                channel.sendall(chunk)
        channel.shutdown_write()
        ours = mb / (time.perf_counter() - t)
        channel.close()
        conn.close()
        return openssh, ours
    finally:
        socat.terminate()
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--base-mb", type=int, default=200)
    ap.add_argument("--app-mb", type=int, default=35)
    ap.add_argument("--update-mb", type=int, default=15)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2d-benchssh-", dir="/var/tmp"))
    client = SshClientHome(work / "home")
    client.key()
    ns = NetNS("bench", rate=args.rate).up()
    src = start_engine("docker26", work / "src")
    dst = Engine(SPECS["docker26"], work / "dst")
    far = Sshd(work / "far-sshd", address=ns.addr, port=22, netns=ns.name)
    try:
        dst.start(netns=ns.name)
        far.start({"root": [client.ssh / "id_ed25519"]})
        client.trust(far)
        build_image(src, work, "bench-base:1", None, args.base_mb, 0)
        build_image(src, work, "bench:1", "bench-base:1", args.app_mb, args.base_mb)
        build_image(src, work, "bench:2", "bench:1", args.update_mb, args.base_mb + args.app_mb)
        env = client.env()
        ssh = (
            f"ssh -i {client.ssh}/id_ed25519 -o UserKnownHostsFile={client.ssh}/known_hosts -o BatchMode=yes "
            f"root@{ns.addr}"
        )
        remote_docker = f"docker -H unix://{dst.socket}"
        plain = f"docker -H {src.host} save {{img}} | {ssh} '{remote_docker} load'"
        gz = f"docker -H {src.host} save {{img}} | gzip -1 | {ssh} 'gunzip | {remote_docker} load'"
        url = f"ssh://root@{ns.addr}{dst.socket}"
        ids = {
            i: src.docker("image", "inspect", "--format", "{{.Id}}", i).stdout.decode().strip()
            for i in ("bench:1", "bench:2")
        }

        def clear(*images: str) -> None:
            dst.docker("rmi", *(ids[i] for i in images), check=False)

        rows = []
        # cold
        cold_plain = timed(plain.format(img="bench:1"), env)
        clear("bench:1")
        cold_gz = timed(gz.format(img="bench:1"), env)
        clear("bench:1")
        cold_d2d, cold_res = d2d(env, "copy", "-s", src.host, "-d", url, "bench:1")
        # update: the destination holds bench:1
        upd_plain = timed(plain.format(img="bench:2"), env)
        clear("bench:2")
        upd_gz = timed(gz.format(img="bench:2"), env)
        clear("bench:2")
        upd_d2d, upd_res = d2d(env, "copy", "-s", src.host, "-d", url, "bench:2")
        noop_d2d, _ = d2d(env, "copy", "-s", src.host, "-d", url, "bench:2")
        zstd_rate = zstd_throughput(src, "bench:1")
        top = json.loads(src.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "bench:2").stdout)[-1]
        ideal = zstd3_of_layer(src, "bench:2", top)
        wire = int(upd_res["wire_bytes"])  # type: ignore[call-overload]
        rows += [
            ("cold push", cold_plain, cold_gz, cold_d2d, f"wire {int(cold_res['wire_bytes']) / 1e6:.0f} MB"),  # type: ignore[call-overload]
            (
                "update push",
                upd_plain,
                upd_gz,
                upd_d2d,
                f"{upd_plain / upd_d2d:.1f}x faster than save|ssh|load; wire {wire / 1e6:.1f} MB = "
                f"{wire / ideal:.2f}x zstd -3 of the missing layer ({ideal / 1e6:.1f} MB)",
            ),
            ("no-op", float("nan"), float("nan"), noop_d2d, ""),
        ]
    finally:
        far.stop()
        dst.destroy()
        src.destroy()
        ns.down()
    openssh, ours = raw_throughput(work, client)
    shutil.rmtree(work, ignore_errors=True)
    size = args.base_mb + args.app_mb + args.update_mb
    print(
        f"\nlink {args.rate} (tbf, both ends), Docker 26.1 -> Docker 26.1 over ssh; image ~{size} MB of real files, "
        f"update layer {args.update_mb} MB"
    )
    print("| case | save \\| ssh \\| load | save \\| gzip \\| ssh \\| gunzip \\| load | docker-d2d | notes |")
    print("|---|---|---|---|---|")
    for name, a, b, c, note in rows:
        fa = "-" if a != a else f"{a:.1f}s"
        fb = "-" if b != b else f"{b:.1f}s"
        print(f"| {name} | {fa} | {fb} | {c:.1f}s | {note} |")
    print(
        f"\nwire compression (zstd -3, {min(4, os.cpu_count() or 1)} threads) on the image's export: "
        f"{zstd_rate:.0f} MB/s (a 1 Gbit link carries 125 MB/s)"
    )
    print(
        f"\nraw ssh throughput on loopback, 512 MB one way: OpenSSH client {openssh:.0f} MB/s, "
        f"docker-d2d (paramiko) {ours:.0f} MB/s = {ours / openssh:.0%} of OpenSSH"
    )


if __name__ == "__main__":
    main()
