"""Benchmark of pulls from a far engine (filtering at the source host, issue 8) over a shaped link:
docker-d2d pull against `ssh HOST docker save IMAGE | docker load`, and docker-d2d copy between two
far hosts against `ssh a docker save | ssh b docker load`, in the same run. Each far host is a
network namespace with its own sshd and Docker 26.1, `tc tbf` on both veth ends.

    .venv/bin/python -m tests.bench.bench_pull [--rate 100mbit] [--base-mb 200 --app-mb 35 --update-mb 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from tests.bench.bench_ssh import timed, zstd3_of_layer
from tests.bench.timing import d2d
from tests.harness.engines import SPECS, Engine
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.sshd import SshClientHome, Sshd

RUN = os.getpid() % 10000


class Far:
    def __init__(self, work: Path, client: SshClientHome, suffix: str, subnet: int, rate: str) -> None:
        self.ns = NetNS(f"rfb{RUN}{suffix}", f"10.231.{subnet}.1", f"10.231.{subnet}.2", rate=rate).up()
        self.engine = Engine(SPECS["docker26"], work / f"far{suffix}")
        home = work / f"farhome{suffix}"
        home.mkdir()
        # An empty HOME: the sessions see sshd's PATH (the system python3 and docker), not root's .bashrc.
        self.sshd = Sshd(work / f"sshd{suffix}", address=self.ns.addr, port=22, netns=self.ns.name)
        self.sshd.options["SetEnv"] = f"HOME={home}"
        try:
            self.engine.start(netns=self.ns.name)
            self.sshd.start({"root": [client.ssh / "id_ed25519"]})
        except BaseException:
            self.destroy()
            raise
        client.trust(self.sshd)
        self.ssh = (
            f"ssh -i {client.ssh}/id_ed25519 -o UserKnownHostsFile={client.ssh}/known_hosts -o BatchMode=yes "
            f"root@{self.ns.addr}"
        )
        self.url = f"ssh://root@{self.ns.addr}{self.engine.socket}"
        self.docker = f"docker -H unix://{self.engine.socket}"

    def wire(self) -> int:
        stats = Path(f"/sys/class/net/{self.ns.host_if}/statistics")
        return sum(int((stats / f).read_text()) for f in ("rx_bytes", "tx_bytes"))

    def destroy(self) -> None:
        self.sshd.stop()
        self.engine.destroy()
        self.ns.down()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--base-mb", type=int, default=200)
    ap.add_argument("--app-mb", type=int, default=35)
    ap.add_argument("--update-mb", type=int, default=15)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rfb", dir="/var/tmp"))
    client = SshClientHome(work / "home")
    client.key()
    subnet = 220 + RUN % 16 * 2
    fars: list[Far] = []
    builder = Engine(SPECS["docker26"], work / "builder")
    local = Engine(SPECS["docker26"], work / "local")
    rows: list[tuple[str, float, int, float, int, str]] = []
    ideal = 1
    try:
        a = Far(work, client, "a", subnet, args.rate)
        fars.append(a)
        b = Far(work, client, "b", subnet + 1, args.rate)
        fars.append(b)
        builder.start()
        local.start()
        build_image(builder, work, "bench-base:1", None, args.base_mb, 0)
        build_image(builder, work, "bench:1", "bench-base:1", args.app_mb, args.base_mb)
        build_image(builder, work, "bench:2", "bench:1", args.update_mb, args.base_mb + args.app_mb)
        timed(f"docker -H {builder.host} save bench:1 bench:2 | docker -H unix://{a.engine.socket} load", {})
        timed(f"docker -H {builder.host} save bench:1 | docker -H unix://{b.engine.socket} load", {})
        env = client.env(DOCKER_HOST=local.host)

        def measure(cmd: str, far: Far) -> tuple[float, int]:
            before = far.wire()
            elapsed = timed(cmd, env)
            return elapsed, far.wire() - before

        def pull(image: str, far: Far) -> tuple[float, int, str]:
            before = far.wire()
            elapsed, res = d2d(env, "pull", far.url, image)
            return elapsed, far.wire() - before, str(res["compression"])

        def rmi(engine: Engine, image: str) -> None:
            engine.docker("rmi", image, check=False)

        # cold pull: the local engine holds nothing
        plain_t, plain_w = measure(f"{a.ssh} '{a.docker} save bench:1' | docker -H {local.host} load", a)
        rmi(local, "bench:1")
        ours_t, ours_w, how = pull("bench:1", a)
        rows.append(("cold pull", plain_t, plain_w, ours_t, ours_w, how))
        # update: the local engine holds bench:1
        plain_t, plain_w = measure(f"{a.ssh} '{a.docker} save bench:2' | docker -H {local.host} load", a)
        rmi(local, "bench:2")
        ours_t, ours_w, how = pull("bench:2", a)
        rows.append(("update pull", plain_t, plain_w, ours_t, ours_w, how))
        noop_t, _, _ = pull("bench:2", a)
        # remote to remote: b holds bench:1
        plain_t, plain_w = measure(f"{a.ssh} '{a.docker} save bench:2' | {b.ssh} '{b.docker} load'", a)
        rmi(b.engine, "bench:2")
        before_b = b.wire()
        before = a.wire()
        ours_t, res = d2d(env, "copy", "-s", a.url, "-d", b.url, "bench:2")
        r2r_b = b.wire() - before_b
        rows.append(("update a → b", plain_t, plain_w, ours_t, a.wire() - before, str(res["compression"])))
        top = json.loads(a.engine.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "bench:2").stdout)
        ideal = zstd3_of_layer(a.engine, "bench:2", top[-1])
    finally:
        for far in fars:
            far.destroy()
        builder.destroy()
        local.destroy()
        shutil.rmtree(work, ignore_errors=True)
    size = args.base_mb + args.app_mb + args.update_mb
    print(
        f"\nlink {args.rate} (tbf, both ends), Docker 26.1 far hosts over ssh, Docker 26.1 local; image ~{size} MB "
        f"of real files, update layer {args.update_mb} MB"
    )
    print("| case | ssh docker save \\| docker load | wire | docker-d2d | wire | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, pt, pw, ot, ow, how in rows:
        print(f"| {name} | {pt:.1f}s | {pw / 1e6:.0f} MB | {ot:.1f}s | {ow / 1e6:.1f} MB ({how}) | {pt / ot:.1f}x |")
    print(f"| no-op pull | - | - | {noop_t:.1f}s | | |")
    update_wire = rows[1][4]
    print(
        f"\nupdate pull: {update_wire / 1e6:.1f} MB on the wire = {update_wire / ideal:.2f}x zstd -3 of the missing "
        f"layer ({ideal / 1e6:.1f} MB; target <= 1.2x + 2 MB)"
    )
    print(f"\nremote to remote: {r2r_b / 1e6:.1f} MB went out on b's link (a's link: see the table)")


if __name__ == "__main__":
    main()
