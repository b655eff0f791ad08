"""Benchmark: one push to 1, 2 and 3 hosts, each behind its own 100 Mbit link (tbf on both veth
ends), each a network namespace with sshd and Docker 26.1. The time to 3 hosts against the time to
1 (target <= 1.3x), and the bytes read from the source (once, whatever the number of hosts).

    .venv/bin/python -m tests.bench.bench_fanout [--rate 100mbit --mb 120 --runs 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.bench.timing import d2d
from tests.harness.engines import SPECS, Engine, start_engine
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.sshd import SshClientHome, Sshd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--mb", type=int, default=120)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2dbf-", dir="/var/tmp"))
    client = SshClientHome(work / "home")
    client.key()
    src = start_engine("docker26", work / "src")
    hosts: list[tuple[NetNS, Engine, Sshd]] = []
    try:
        for i in range(3):
            ns = NetNS(f"benchfan{i}", rate=args.rate).up()
            engine = Engine(SPECS["docker26"], work / f"e{i}")
            sshd = Sshd(work / f"s{i}", address=ns.addr, port=22, netns=ns.name)
            hosts.append((ns, engine, sshd))
            engine.start(netns=ns.name)
            sshd.start({"root": [client.ssh / "id_ed25519"]})
            client.trust(sshd)
        build_image(src, work, "fan:1", None, args.mb, 0)
        image_id = src.docker("image", "inspect", "--format", "{{.Id}}", "fan:1").stdout.decode().strip()
        urls = [f"ssh://root@{ns.addr}{engine.socket}" for ns, engine, _ in hosts]
        env = client.env()
        rows = []
        for n in (1, 2, 3):
            times, read = [], 0
            for _ in range(args.runs):
                for _, engine, _ in hosts:
                    engine.docker("rmi", "-f", image_id, check=False)
                elapsed, last = d2d(
                    env,
                    "copy",
                    "-s",
                    src.host,
                    *(a for u in urls[:n] for a in ("-d", u)),
                    "fan:1",
                    last=("fleet", "result"),
                )
                times.append(elapsed)
                read = int(last.get("export_bytes", 0)) or 0  # type: ignore[call-overload]
            rows.append((n, statistics.median(times), read))
    finally:
        for ns, engine, sshd in hosts:
            sshd.stop()
            engine.destroy()
            ns.down()
        src.destroy()
        shutil.rmtree(work, ignore_errors=True)
    one = rows[0][1]
    print(f"\ncold push of a ~{args.mb} MB image of real files to N hosts, each behind its own {args.rate} link")
    print("| hosts | time (median) | vs 1 host | read from the source |")
    print("|---|---|---|---|")
    for n, t, read in rows:
        what = f"{read / 1e6:.0f} MB, once" if n > 1 else "one export"
        print(f"| {n} | {t:.1f}s | {t / one:.2f}x | {what} |")


if __name__ == "__main__":
    main()
