"""Benchmark: a cold push over a 100 Mbit link with and without registry-first bases.

The destination is a network namespace with sshd and Docker 26.1 behind a shaped link (tbf on
both veth ends) and a distribution registry next to it (a mirror near the server). The source
pulled a ~--base-mb base from that registry (untimed) and built an app of --app-mb on it. Timed:
`docker d2d push` of the app to the empty destination with `--registry-first never` (everything
crosses the slow link) and `auto` (the destination pulls the base from its neighbour; only the app
layer crosses), medians of --runs.

    .venv/bin/python -m tests.bench.bench_registry_first [--rate 100mbit --base-mb 150 --app-mb 20 --runs 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.bench.timing import d2d
from tests.harness.engines import SPECS, Engine
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.registry import Registry
from tests.harness.sshd import SshClientHome, Sshd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--base-mb", type=int, default=150)
    ap.add_argument("--app-mb", type=int, default=20)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2drf-", dir="/var/tmp"))
    client = SshClientHome(work / "home")
    client.key()
    ns = NetNS("benchregfirst", rate=args.rate).up()
    # The registry runs inside the destination's namespace: the mirror near the server.
    registry = Registry(work / "registry", listen="0.0.0.0", netns=(ns.name, ns.addr))
    registry.start()
    insecure = (f"--insecure-registry={registry.address}",)  # plain http, as a mirror on the LAN
    src = Engine(SPECS["docker26"], work / "src")
    dst = Engine(SPECS["docker26"], work / "dst")
    sshd = Sshd(work / "sshd", address=ns.addr, port=22, netns=ns.name)
    rows = []
    try:
        src.start(extra_args=insecure)
        dst.start(netns=ns.name, extra_args=insecure)
        sshd.start({"root": [client.ssh / "id_ed25519"]})
        client.trust(sshd)
        build_image(src, work, "rfb-base:1", None, args.base_mb, 0)
        base = registry.push(src, "rfb-base:1")  # untimed: the base is in the registry, as from a pull
        registry.pull(src, base)  # and the source holds it with its RepoDigest
        build_image(src, work, "rfb-app:1", base, args.app_mb, args.base_mb)
        url = f"ssh://root@{ns.addr}{dst.socket}"
        env = client.env()
        results = {}
        for mode in ("never", "auto"):
            times = []
            for _ in range(args.runs):
                dst.docker("system", "prune", "-af", check=False)
                elapsed, res = d2d(env, "copy", "--registry-first", mode, "-s", src.host, "-d", url, "rfb-app:1")
                times.append(elapsed)
                results[mode] = res
            rows.append((mode, statistics.median(times), results[mode]))
    finally:
        sshd.stop()
        dst.destroy()
        registry.stop()
        src.destroy()
        ns.down()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ncold push of ~{args.base_mb + args.app_mb} MB ({args.app_mb} MB app on a registry base) over {args.rate}")
    print("| --registry-first | time (median) | bytes from the source | layers from the registry |")
    print("|---|---|---|---|")
    for mode, t, res in rows:
        print(f"| {mode} | {t:.1f}s | {int(res['bytes_sent']) / 1e6:.0f} MB | {res.get('layers_from_registry', 0)} |")  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
