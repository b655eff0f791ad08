"""One timed `docker-d2d ... --json` run for the benchmarks."""

from __future__ import annotations

import json
import subprocess
import time

from tests.conftest import d2d_path


def d2d(env: dict[str, str], *args: str, last: tuple[str, ...] = ("result",)) -> tuple[float, dict[str, object]]:
    """Run docker-d2d with --json; return the seconds it took and its last event of the kinds in
    `last` (`result`; a run to several destinations ends with `fleet`)."""
    t = time.perf_counter()
    import os
    import shlex

    wrap = shlex.split(os.environ.get("D2D_WRAP", ""))
    out = subprocess.run([*wrap, d2d_path(), *args, "--json"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"docker-d2d {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    elapsed = time.perf_counter() - t
    events = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    return elapsed, next(e for e in reversed(events) if e["event"] in last)
