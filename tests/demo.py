"""The fresh-machine demo: two throwaway local engines, a real image copied between them,
then an update that sends only the new layer. Run after .ci/setup-machine:

    .venv/bin/python -m tests.demo
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import d2d_path
from tests.harness.engines import start_engine
from tests.harness.realistic import build_image


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="d2d-demo-", dir="/var/tmp"))
    src = start_engine("docker20", work)
    dst = start_engine("docker26", work)
    fleet = [start_engine(name, work) for name in ("docker28c", "podman5")]
    try:
        print(f"source engine:      {src.host} (Docker 20.10)\ndestination engine: {dst.host} (Docker 26.1)\n")
        build_image(src, work, "demo:1", None, 120, 0)
        build_image(src, work, "demo:2", "demo:1", 15, 120)
        for step, image in [
            ("first copy: every layer travels", "demo:1"),
            ("update: only the new layer travels", "demo:2"),
            ("again: nothing travels", "demo:2"),
        ]:
            print(f"$ docker-d2d -s {src.host} -d {dst.host} {image}    # {step}")
            subprocess.run([d2d_path(), "-s", src.host, "-d", dst.host, image], check=True)
            print()
        out = dst.docker("images", "demo").stdout.decode()
        print(f"destination now holds:\n{out}")
        hosts = ",".join(e.host for e in (dst, *fleet))
        print(f"$ docker-d2d push {hosts} demo:2    # three engines, one export (DOCKER_HOST={src.host})")
        subprocess.run([d2d_path(), "push", hosts, "demo:2"], check=True, env={**os.environ, "DOCKER_HOST": src.host})
    finally:
        for engine in (src, dst, *fleet):
            engine.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
