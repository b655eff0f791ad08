"""Benchmark: resumable copies over a 100 Mbit link (issue 10).

A Docker 26.1 destination in a network namespace behind sshd and a tbf-shaped link; a local
Docker 26.1 source holding an image of real files in --layers layers of --layer-mb MB. Timed, as
cold pushes to the emptied destination (medians of --runs):

- uninterrupted, without checkpoints (`--checkpoint never`: the baseline);
- uninterrupted, with a checkpoint after each layer (`--checkpoint 1`, the most there can be)
  and with the default (`auto`: every 256 MB on a far link): the overhead of checkpoints;
- interrupted (Ctrl-C) right after the checkpoint half-way, then run again: both runs together,
  and what the second one sent; and the same interruption without checkpoints, where the second
  run starts over.

    .venv/bin/python -m tests.bench.bench_resume [--rate 100mbit --layers 4 --layer-mb 75 --runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench.timing import d2d
from tests.conftest import d2d_path
from tests.harness.engines import SPECS, Engine
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.sshd import SshClientHome, Sshd


def interrupted(env: dict[str, str], checkpoint: str, after_bytes: int, *args: str) -> float:
    """Run until `after_bytes` of layers went out (for checkpoints: until the checkpoint that
    follows), then Ctrl-C; the seconds it ran."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [d2d_path(), *args, "--json", "--checkpoint", checkpoint], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    sent = 0
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "layer" and event.get("status") == "sent":
            sent += int(event["sent"])
        checkpointed = event.get("event") == "note" and event["message"].startswith("checkpoint:")
        if sent >= after_bytes and (checkpoint == "never" or checkpointed):
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mb", type=int, default=75)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="d2dres-", dir="/var/tmp"))
    client = SshClientHome(work / "home")
    client.key()
    ns = NetNS("benchresume", rate=args.rate).up()
    src = Engine(SPECS["docker26"], work / "src")
    dst = Engine(SPECS["docker26"], work / "dst")
    sshd = Sshd(work / "sshd", address=ns.addr, port=22, netns=ns.name)
    rows: list[tuple[str, float, str]] = []
    try:
        src.start()
        dst.start(netns=ns.name)
        sshd.start({"root": [client.ssh / "id_ed25519"]})
        client.trust(sshd)
        name = None
        for i in range(args.layers):
            build_image(src, work, f"res:{i}", name, args.layer_mb, i * args.layer_mb)
            name = f"res:{i}"
        assert name is not None
        url = f"ssh://root@{ns.addr}{dst.socket}"
        env = client.env()
        push = ("copy", "-s", src.host, "-d", url, name)

        def empty() -> None:
            dst.docker("system", "prune", "-af", check=False)

        empty()
        d2d(env, *push, "--checkpoint", "never")  # untimed: warms the source's page cache for every case
        modes = ("never", "1", "auto")
        times: dict[str, list[float]] = {m: [] for m in modes}
        total = 0
        for _ in range(args.runs):
            for mode in modes:  # interleaved: a slow spell of the machine hits every case alike
                empty()
                elapsed, res = d2d(env, *push, "--checkpoint", mode)
                times[mode].append(elapsed)
                total = int(res["bytes_sent"])  # type: ignore[call-overload]
        base = statistics.median(times["never"])
        rows.append(("uninterrupted, --checkpoint never (baseline)", base, f"{total / 1e6:.0f} MB"))
        for mode in modes[1:]:
            t = statistics.median(times[mode])
            rows.append((f"uninterrupted, --checkpoint {mode}", t, f"{t / base:.3f}x the baseline"))
        half = total // 2
        for checkpoint in ("1", "never"):
            empty()
            first = interrupted(env, checkpoint, half, *push)
            second, res = d2d(env, *push, "--checkpoint", checkpoint)
            resent = int(res["bytes_sent"])  # type: ignore[call-overload]
            rows.append(
                (
                    f"Ctrl-C half-way, then again (--checkpoint {checkpoint})",
                    first + second,
                    f"{first:.1f}s + {second:.1f}s; the second run sent {resent / 1e6:.0f} MB",
                )
            )
    finally:
        sshd.stop()
        dst.destroy()
        src.destroy()
        ns.down()
        shutil.rmtree(work, ignore_errors=True)
    mb = args.layers * args.layer_mb
    print(
        f"\ncold push of ~{mb} MB of real files in {args.layers} layers over {args.rate} (ssh), medians of {args.runs}"
    )
    print("| case | time | |")
    print("|---|---|---|")
    for case, t, note in rows:
        print(f"| {case} | {t:.1f}s | {note} |")
    print(f"\n(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
