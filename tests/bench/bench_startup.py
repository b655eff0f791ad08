"""Start-up time of what runs often: `docker-d2d version`; the plugin metadata probe (the docker CLI
runs it on every `docker d2d`, and for every plugin on `docker --help`, `docker info` and
completion); `__complete` (the shell waits on it at every Tab); a copy up to its first engine
contact (the test suite runs docker-d2d hundreds of times). Targets: version < 150 ms, metadata < 50 ms.

    .venv/bin/python -m tests.bench.bench_startup [--runs 40] [--against REF] [--exe PATH ...]

Times this checkout's `.venv` docker-d2d (an editable install), each `--exe` (e.g. the single-file
build), and with `--against REF` the commit REF and HEAD, each installed into a venv of its own as
pipx installs it (not editable). All of them, and `python -c pass` (the interpreter's own start-up,
the baseline), are timed in the same rounds, one after the other, so that load from elsewhere on
the machine falls on all alike; one untimed round first; medians. No engine is contacted: the
image completion and the copy point at a socket that does not exist.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import d2d_path

ROOT = Path(__file__).resolve().parents[2]
DEAD = "unix:///nonexistent/docker.sock"
CASES: list[tuple[str, list[str], float | None]] = [  # label, argv, target (ms)
    ("docker-cli-plugin-metadata", ["docker-cli-plugin-metadata"], 50),
    ("version", ["version"], 150),
    ("--help", ["--help"], None),
    ("__complete d2d pu (a command)", ["__complete", "d2d", "pu"], None),
    ("__complete d2d copy -s '' (contexts, ssh hosts)", ["__complete", "d2d", "copy", "-s", ""], None),
    ("__complete d2d copy -s DEAD '' (images)", ["__complete", "d2d", "copy", "-s", DEAD, ""], None),
    ("copy from a dead engine (the copy path's imports)", ["copy", "-s", DEAD, "-d", DEAD, "x"], None),
]


def install(ref: str, into: Path) -> str:
    """Install the commit `ref` into a new venv under `into` (not editable, as pipx does); its docker-d2d."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    venv = into / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)], check=True, stderr=subprocess.DEVNULL)
    return str(venv / "bin" / "docker-d2d")


def once(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return (time.perf_counter() - t) * 1000


def measure(exes: dict[str, str], runs: int, env: dict[str, str]) -> tuple[float, dict[tuple[str, str], float]]:
    """Median ms of `python -c pass`, and of each (exe label, case label)."""
    baseline: list[float] = []
    times: dict[tuple[str, str], list[float]] = {(e, c): [] for e in exes for c, _, _ in CASES}
    for round_ in range(runs + 1):
        base = once([sys.executable, "-c", "pass"], env)
        if round_:
            baseline.append(base)
        for label, exe in exes.items():
            for case, argv, _ in CASES:
                ms = once([exe, *argv], env)
                if round_:
                    times[(label, case)].append(ms)
    return statistics.median(baseline), {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--against", metavar="REF", help="also time the commit REF and HEAD, each installed as pipx would")
    ap.add_argument(
        "--exe", action="append", default=[], help="another docker-d2d to time (e.g. the single-file build)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="d2d-startup-") as tmp:
        exes = {".venv (editable)": d2d_path()}
        exes.update({exe: exe for exe in args.exe})
        if args.against:
            for ref in (args.against, "HEAD"):
                name = subprocess.run(
                    ["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True, check=True
                ).stdout.strip()
                exes[f"{ref} ({name}), installed"] = install(ref, Path(tmp) / name)
        # An empty Docker config and ssh config: what is timed does not depend on this machine's.
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        load = os.getloadavg()[0]
        baseline, medians = measure(exes, args.runs, env)
    print(f"median of {args.runs} runs; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"`python -c pass` (baseline): {baseline:.0f} ms\n")
    print("| command | " + " | ".join(exes) + " | target |")
    print("|---|" + "---|" * len(exes) + "---|")
    for case, _, target in CASES:
        cells = []
        for e in exes:
            ms = medians[(e, case)]
            cells.append(f"{ms:.0f} ms" + ("" if target is None else " ✔" if ms < target else " ✘"))
        print(f"| {case} | " + " | ".join(cells) + " | " + (f"< {target:.0f} ms" if target else "") + " |")


if __name__ == "__main__":
    main()
