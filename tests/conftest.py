from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.engines import SPECS, Engine, destroy_all
from tests.harness.images import Builder
from tests.harness.registry import Registry

# Every engine kind under test (the matrix pairs them all).
ENGINE_NAMES = ["docker20", "docker26", "docker26c", "docker28", "docker28c", "podman", "podman5"]
INTEGRATION = Path(__file__).resolve().parent / "integration"
# Folders whose modules share session fixtures of their own (containerd/: the `stores` engines).
SHARED_FOLDERS = {INTEGRATION / "containerd"}


TERMINAL_VARS = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller: tell each worker this process's COLUMNS and LINES. readline, which
    pytest imports, sets them (80x24 off a terminal) in the C environment only, where a worker
    inherits them, and the programs the tests run would see them (bash completion's layout, rich)."""
    node.workerinput["terminal_env"] = {name: os.environ.get(name) for name in TERMINAL_VARS}


def pytest_configure(config: pytest.Config) -> None:
    given: dict[str, str | None] = getattr(config, "workerinput", {}).get("terminal_env", {})
    for name, value in given.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Work units for parallel workers (`-n N --dist loadgroup`, as .ci/test runs): an integration
    module runs whole on one worker, so that its module fixtures (engines, namespaces, images) are
    made once, and so does a folder in SHARED_FOLDERS; unit tests go one by one. Every worker has
    its own session fixtures (the engines, the registry, the builder), started when first used."""
    for item in items:
        path = Path(str(item.path))
        if INTEGRATION not in path.parents:
            continue
        unit = path.parent if path.parent in SHARED_FOLDERS else path
        item.add_marker(pytest.mark.xdist_group(str(unit.relative_to(INTEGRATION.parent))))


@pytest.fixture(scope="session")
def engine_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="d2d-engines-", dir="/var/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


TWIN = "-twin"  # a second engine of the same kind, for same-kind pairs


class LazyEngines(dict[str, Engine]):
    """Engines by name (`docker28c`, or `docker28c-twin` for a second one of that kind), each
    started the first time a test asks for it, so a run starts only the engines its tests use.
    One that cannot start fails that test: no test skips for it."""

    def __init__(self, base: Path, registry: Registry) -> None:
        super().__init__()
        self.base = base
        self.registry = registry

    def __missing__(self, name: str) -> Engine:
        engine = Engine(SPECS[name.removesuffix(TWIN)], self.base / name, insecure_registries=(self.registry.address,))
        self[name] = engine  # registered before it starts, so a half-started engine is destroyed too
        engine.start()
        return engine

    def destroy(self) -> None:
        destroy_all(self.values())


@pytest.fixture(scope="session")
def registry(engine_base: Path) -> Iterator[Registry]:
    """A real distribution registry on loopback (tests/harness/registry.py)."""
    with Registry(engine_base / "registry") as reg:
        yield reg


@pytest.fixture(scope="session")
def engines(engine_base: Path, registry: Registry) -> Iterator[dict[str, Engine]]:
    """Every engine under test and a twin of each, started on first use (LazyEngines)."""
    started = LazyEngines(engine_base, registry)
    try:
        yield started
    finally:
        started.destroy()


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
