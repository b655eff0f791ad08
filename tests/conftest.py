from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.engines import SPECS, Engine, start_engine
from tests.harness.images import Builder

ENGINE_NAMES = ["docker20", "docker26", "docker26c", "podman"]


@pytest.fixture(scope="session")
def engine_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="d2d-engines-", dir="/var/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


TWIN = "-twin"  # a second engine of the same kind, for same-kind pairs


@pytest.fixture(scope="session")
def engines(engine_base: Path) -> Iterator[dict[str, Engine]]:
    """Every engine under test, and a twin of each. One that cannot start fails the session:
    no test skips for it."""
    started: dict[str, Engine] = {}
    try:
        for name in ENGINE_NAMES:
            started[name] = start_engine(name, engine_base)
            twin = Engine(SPECS[name], engine_base / f"{name}{TWIN}")
            twin.start()
            started[name + TWIN] = twin
        yield started
    finally:
        for engine in started.values():
            engine.destroy()


@pytest.fixture(scope="session")
def builder(engine_base: Path) -> Iterator[Builder]:
    engine = Engine(SPECS["docker20"], engine_base / "builder")
    engine.start()
    try:
        yield Builder(engine)
    finally:
        engine.destroy()


def d2d_path() -> str:
    return shutil.which("docker-d2d") or str(Path(sys.executable).parent / "docker-d2d")


def run_d2d(
    *args: str, env: dict[str, str] | None = None, user: str | None = None, check: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    cmd = [d2d_path(), *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker-d2d {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
