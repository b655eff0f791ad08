"""Installs a user would make: a clean venv from the checkout, and the single-file build,
each dropped into a cli-plugins directory and run by the real docker CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, small_app

from ..helpers import random_file

pytestmark = pytest.mark.engines
REPO = Path(__file__).resolve().parents[3]


def _docker(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return subprocess.run(
        ["/usr/local/bin/docker", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "DOCKER_CONFIG": str(config)},
    )


def _check_plugin(config: Path, engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    assert "d2d*" in _docker(config, "--help").stdout
    app = small_app(builder, src, "pkg", random_file(10_000))
    proc = _docker(config, "-H", src.host, "d2d", "push", dst.host, app)
    assert proc.returncode == 0, proc.stderr
    assert image_exists(dst, app)


def test_clean_venv_install(tmp_path: Path, engines: dict[str, Engine], builder: Builder) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", str(REPO)], check=True, capture_output=True)
    config = tmp_path / "cfg"
    subprocess.run(
        [str(venv / "bin/docker-d2d"), "plugin", "install", "--dir", str(config / "cli-plugins")],
        check=True,
        capture_output=True,
    )
    assert (config / "cli-plugins/docker-d2d").resolve() == (venv / "bin/docker-d2d").resolve()
    _check_plugin(config, engines, builder)
    subprocess.run(
        [str(venv / "bin/docker-d2d"), "plugin", "uninstall", "--dir", str(config / "cli-plugins")],
        check=True,
        capture_output=True,
    )
    assert not (config / "cli-plugins/docker-d2d").exists()


def readme_install_lines() -> list[str]:
    """The commands of the README's marked install block, as a user would type them."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- install:begin", 1)[1].split("<!-- install:end -->", 1)[0]
    code = block.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in code.splitlines() if line.strip()]


def test_readme_install_on_a_stock_debian(tmp_path: Path, engines: dict[str, Engine], builder: Builder) -> None:
    """The README's install lines, run as they are in a fresh home (pipx makes its own venv there),
    as root, as the README writes them (a root shell on Debian has no sudo)."""
    lines = readme_install_lines()
    assert lines[0] == "apt-get install -y pipx" and lines[1] == "pipx install .", lines
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "PIPX_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH="/usr/local/bin:/usr/bin:/bin", DEBIAN_FRONTEND="noninteractive")
    for line in lines:
        proc = subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{line}: {proc.stdout}{proc.stderr}"
    assert proc.stdout.startswith("docker-d2d "), proc.stdout  # `docker d2d version`, through the CLI
    plugin = home / ".docker/cli-plugins/docker-d2d"
    assert plugin.resolve() == (home / ".local/bin/docker-d2d").resolve()
    assert str(home / ".local") in str(plugin.resolve()), "the pipx venv, not the test's"
    _check_plugin(home / ".docker", engines, builder)


def test_single_file_build_as_a_plugin(tmp_path: Path, engines: dict[str, Engine], builder: Builder) -> None:
    config = tmp_path / "cfg"
    target = config / "cli-plugins/docker-d2d"
    subprocess.run(
        ["bash", str(REPO / "packaging/build-single-file"), str(target)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    _check_plugin(config, engines, builder)
    # Run from where it lies, `plugin install` into its own directory must not delete itself.
    again = subprocess.run(
        [str(target), "plugin", "install", "--dir", str(target.parent)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stdout and target.is_file() and not target.is_symlink()
    _check_plugin(config, engines, builder)
