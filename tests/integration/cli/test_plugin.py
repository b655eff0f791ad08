"""`docker d2d` through the real docker CLIs (28.2 and Debian's 20.10): metadata, global flags,
contexts and their precedence, help, exit status, cancellation through the plugin socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, small_app, unique

from ..helpers import random_file

pytestmark = pytest.mark.engines
CLIS = {"28.2": "/usr/local/bin/docker", "20.10": "/usr/bin/docker"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "docker-config"
    proc = run_d2d("plugin", "install", "--dir", str(cfg / "cli-plugins"))
    assert proc.returncode == 0, proc.stderr
    return cfg


def cli(
    binary: str, *args: str, config: Path, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    full.update({"DOCKER_CONFIG": str(config), **(env or {})})
    return subprocess.run([binary, *args], capture_output=True, text=True, env=full, check=check, timeout=300)


@pytest.fixture
def app(engines: dict[str, Engine], builder: Builder) -> str:
    return small_app(builder, engines["docker20"], "plug", random_file(30_000))


@pytest.mark.parametrize("version", CLIS)
def test_cli_lists_and_runs_the_plugin(version: str, config: Path, engines: dict[str, Engine], app: str) -> None:
    docker = CLIS[version]
    src, dst = engines["docker20"], engines["docker26"]
    assert "d2d*" in cli(docker, "--help", config=config).stdout
    info = cli(docker, "info", config=config, env={"DOCKER_HOST": src.host}).stdout
    assert "d2d: Copy images between engines" in info
    proc = cli(docker, "-H", src.host, "d2d", "push", dst.host, app, config=config)
    assert proc.returncode == 0, proc.stderr
    assert image_exists(dst, app)
    for help_args in (["d2d", "--help"], ["help", "d2d"]):
        out = cli(docker, *help_args, config=config)
        assert out.returncode == 0 and "Usage: docker d2d" in out.stdout, help_args
    failed = cli(docker, "-H", src.host, "d2d", "push", dst.host, "nope:404", config=config)
    assert failed.returncode == 1 and "no such image: nope:404" in failed.stderr


def test_contexts_as_endpoints_and_through_the_cli(config: Path, engines: dict[str, Engine], app: str) -> None:
    src, dst = engines["docker20"], engines["podman"]
    env = {"DOCKER_CONFIG": str(config)}
    for name, engine in [("src-ctx", src), ("dst-ctx", dst)]:
        cli(CLIS["28.2"], "context", "create", name, "--docker", f"host={engine.host}", config=config, check=True)
    proc = run_d2d("copy", "-s", "src-ctx", "-d", "dst-ctx", app, env=env)
    assert proc.returncode == 0, proc.stderr
    assert image_exists(dst, app)
    via_cli = cli(CLIS["28.2"], "--context", "src-ctx", "d2d", "push", "dst-ctx", app, config=config)
    assert via_cli.returncode == 0, via_cli.stderr


def _source_endpoint(config: Path, *args: str, env: dict[str, str]) -> str:
    proc = run_d2d(*args, "--dry-run", "--json", env={"DOCKER_CONFIG": str(config), **env})
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout.splitlines()[0])["endpoint"])


def test_local_side_follows_docker_precedence(config: Path, engines: dict[str, Engine], app: str) -> None:
    a, b, c = engines["docker20"], engines["docker26"], engines["docker26c"]
    run_d2d("copy", "-s", a.host, "-d", b.host, app, check=True)
    run_d2d("copy", "-s", a.host, "-d", c.host, app, check=True)
    for name, engine in [("ctx-a", a), ("ctx-b", b), ("ctx-c", c)]:
        cli(CLIS["28.2"], "context", "create", name, "--docker", f"host={engine.host}", config=config, check=True)
    dest = ["push", engines["podman"].host, app]
    clean = {"DOCKER_HOST": "", "DOCKER_CONTEXT": ""}
    default = run_d2d(*dest, "--dry-run", env={"DOCKER_CONFIG": str(config), **clean})
    assert "source unix:///var/run/docker.sock" in default.stderr  # nothing set: Docker's default socket
    cli(CLIS["28.2"], "context", "use", "ctx-c", config=config, check=True)
    assert _source_endpoint(config, *dest, env=clean).startswith("ctx-c")  # currentContext
    assert _source_endpoint(config, *dest, env={**clean, "DOCKER_CONTEXT": "ctx-b"}).startswith("ctx-b")
    assert _source_endpoint(config, *dest, env={"DOCKER_HOST": a.host, "DOCKER_CONTEXT": "ctx-b"}) == a.host
    assert _source_endpoint(config, "-H", b.host, *dest, env={"DOCKER_HOST": a.host}) == b.host
    assert _source_endpoint(config, "--context", "ctx-b", *dest, env={"DOCKER_HOST": a.host}).startswith("ctx-b")
    # --config moves the whole store: the same contexts are found through it.
    other = {"DOCKER_CONFIG": "/nonexistent"}
    proc = run_d2d("--config", str(config), "--context", "ctx-c", *dest, "--dry-run", "--json", env=other)
    assert json.loads(proc.stdout.splitlines()[0])["endpoint"].startswith("ctx-c")
    both = run_d2d("-H", a.host, "--context", "ctx-b", *dest, env={"DOCKER_CONFIG": str(config)})
    assert both.returncode == 2 and 'cannot specify both "--host" and "--context"' in both.stderr


def test_unknown_context_gets_dockers_message(config: Path) -> None:
    proc = run_d2d("--context", "nope", "push", "unix:///x", "img", env={"DOCKER_CONFIG": str(config)})
    assert proc.returncode == 2 and 'context "nope": context not found' in proc.stderr
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "nope"}
    from_env = run_d2d("push", "unix:///x", "img", env=env)
    assert from_env.returncode == 2 and 'context "nope": context not found' in from_env.stderr


def test_ctrl_c_through_the_plugin_socket(config: Path, engines: dict[str, Engine], builder: Builder) -> None:
    """docker 28.2, stdout not a TTY: the CLI forwards nothing, it closes the plugin socket."""
    src, dst = engines["docker20"], engines["docker26"]
    base = builder.base(unique("base") + ":1")
    big = unique("bigplug") + ":1"
    builder.build(big, base, ["COPY a /a"], {"a": random_file(150_000_000)})
    builder.place(src, big)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(config)
    proc = subprocess.Popen(
        [CLIS["28.2"], "-H", src.host, "d2d", "push", "--json", dst.host, big],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"sending"' in line:
            break
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not image_exists(dst, big)


@pytest.mark.parametrize("version", CLIS)
def test_version_at_the_top_level(version: str, config: Path) -> None:
    for args in (["--version"], ["version"]):
        proc = run_d2d(*args)
        assert proc.returncode == 0 and proc.stdout.startswith("docker-d2d "), proc.stderr
    via_cli = cli(CLIS[version], "d2d", "--version", config=config)
    assert via_cli.returncode == 0 and via_cli.stdout.startswith("docker-d2d "), via_cli.stderr


def test_plugin_uninstall_errors_are_one_line(tmp_path: Path) -> None:
    as_dir = tmp_path / "a"
    (as_dir / "docker-d2d").mkdir(parents=True)
    proc = run_d2d("plugin", "uninstall", "--dir", str(as_dir))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"docker-d2d: cannot uninstall the plugin at {as_dir / 'docker-d2d'}: it is a directory, not docker-d2d"
    ]
    # Someone else's directory: the user may not remove the link in it.
    locked = tmp_path / "b"
    locked.mkdir()
    tmp_path.chmod(0o755)
    assert run_d2d("plugin", "install", "--dir", str(locked)).returncode == 0
    denied = run_d2d("plugin", "uninstall", "--dir", str(locked), user="65534")
    assert denied.returncode == 1 and "Traceback" not in denied.stderr, denied.stderr
    assert denied.stderr.strip().splitlines() == [
        f"docker-d2d: cannot uninstall the plugin at {locked / 'docker-d2d'}: Permission denied"
    ]
    assert (locked / "docker-d2d").is_symlink()
