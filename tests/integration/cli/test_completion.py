"""Completion in real bash and zsh: through `docker completion bash|zsh` (cobra's __complete),
Debian's static bash script (__completeNoDesc), and the standalone docker-d2d's own scripts."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import Engine
from tests.harness.tty import terminal

pytestmark = pytest.mark.engines
REPO = Path(__file__).resolve().parents[3]
DOCKER = "/usr/local/bin/docker"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    run_d2d("plugin", "install", "--dir", str(cfg / "cli-plugins"), check=True)
    subprocess.run(
        [DOCKER, "context", "create", "prod-ctx", "--docker", "host=unix:///nonexistent.sock"],
        env={**os.environ, "DOCKER_CONFIG": str(cfg)},
        check=True,
        capture_output=True,
    )
    return cfg


def _env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["PATH"] = f"{Path(d2d_path()).parent}:/usr/local/bin:/usr/bin:/bin"
    return {**env, "DOCKER_CONFIG": str(config), **extra}


def bash_complete(script: str, function: str, words: list[str], env: dict[str, str]) -> list[str]:
    """Run a completion function the way bash does on <Tab>, and return COMPREPLY."""
    line = " ".join(words)
    quoted = " ".join(f"'{w}'" for w in words)
    program = f"""
source /usr/share/bash-completion/bash_completion
source {script}
COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
{function} {words[0]} '{words[-1]}' '{words[-2]}' 2>/dev/null
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60)
    return [x for x in out.stdout.splitlines() if x]


def test_bash_with_docker_completion_script(config: Path, engines: dict[str, Engine], tmp_path: Path) -> None:
    script = tmp_path / "docker.bash"
    script.write_text(subprocess.run([DOCKER, "completion", "bash"], capture_output=True, text=True, check=True).stdout)
    env = _env(config, DOCKER_HOST=engines["docker20"].host)
    assert bash_complete(str(script), "__start_docker", ["docker", "d2d", "pu"], env) == ["push", "pull"]
    assert "prod-ctx" in bash_complete(str(script), "__start_docker", ["docker", "d2d", "push", ""], env)
    assert "--dry-run" in bash_complete(str(script), "__start_docker", ["docker", "d2d", "copy", "--d"], env)
    # Images come from the source engine: here the local one (DOCKER_HOST).
    engines["docker20"].docker("import", "-", "complete-me:7", input=_empty_tar())
    found = bash_complete(str(script), "__start_docker", ["docker", "d2d", "push", "prod-ctx", "complete-"], env)
    assert found == ["complete-me:7"]


def test_bash_with_debians_static_script(config: Path) -> None:
    script = "/usr/share/bash-completion/completions/docker"
    env = _env(config, DOCKER_HOST="unix:///nonexistent.sock")
    words = bash_complete(script, "_docker", ["docker", "d2d", "pu"], env)
    assert words == ["pull", "push"] or words == ["push", "pull"]
    assert "prod-ctx" in bash_complete(script, "_docker", ["docker", "d2d", "copy", "-s", ""], env)


def test_zsh_with_docker_completion_script(config: Path, tmp_path: Path) -> None:
    fdir = tmp_path / "zfunc"
    fdir.mkdir()
    (fdir / "_docker").write_text(
        subprocess.run([DOCKER, "completion", "zsh"], capture_output=True, text=True, check=True).stdout
    )
    screen = _zsh_tab(config, fdir, "compdef _docker docker", "docker d2d pu", ("push  -- Push", "pull  -- Pull"))
    assert "push  -- Push IMAGES" in screen and "pull  -- Pull IMAGES" in screen


def test_zsh_with_the_standalone_script(config: Path, tmp_path: Path) -> None:
    setup = f"source {REPO / 'completions/docker-d2d.zsh'}"
    screen = _zsh_tab(config, tmp_path, setup, "docker-d2d pu", ("push", "pull"))
    assert "push" in screen and "pull" in screen


def test_bash_with_the_standalone_script(config: Path) -> None:
    env = _env(config)
    words = bash_complete(
        str(REPO / "completions/docker-d2d.bash"), "_docker_d2d_completion", ["docker-d2d", "pu"], env
    )
    assert sorted(words) == ["pull", "push"]


def test_completions_dir_is_in_sync_with_the_code() -> None:
    for shell in ("bash", "zsh", "fish"):
        generated = run_d2d("completion", shell, check=True).stdout
        assert (REPO / f"completions/docker-d2d.{shell}").read_text() == generated, f"regenerate {shell}"


def test_a_dead_engine_does_not_freeze_completion(tmp_path: Path) -> None:
    sock_path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.listen(5)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    start = time.monotonic()
    proc = subprocess.run(
        [d2d_path(), "__complete", "d2d", "push", "default", ""],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": f"unix://{sock_path}"},
        timeout=30,
    )
    assert time.monotonic() - start < 4
    assert proc.stdout.strip().endswith(":4")
    server.close()


def _zsh_tab(config: Path, fdir: Path, setup: str, line: str, expect: tuple[str, ...]) -> str:
    """Type `line`, press Tab until every string of `expect` shows in the menu (a loaded machine
    answers slowly: poll rather than sleep a fixed time); returns the screen."""
    env = _env(config)
    pairs = [f"{k}={v}" for k, v in env.items() if k in ("PATH", "DOCKER_CONFIG", "HOME")]
    with terminal("env", *pairs, "zsh", "-f") as term:
        term.wait_for("#")
        term.send(f"fpath=({fdir} $fpath); autoload -U compinit; compinit -u; {setup}; echo READY", "Enter")
        term.wait_for("\nREADY")
        term.send(line, "Tab")
        deadline = time.monotonic() + 30
        screen = ""
        while time.monotonic() < deadline:
            time.sleep(2)
            screen = term.text()
            menu = screen.split(line, 1)[-1]
            if all(e in menu for e in expect):
                return screen
            term.send("Tab")
        return screen


def _empty_tar() -> bytes:
    return b"\0" * 1024


def test_install_completion_for_the_detected_shell(tmp_path: Path) -> None:
    # shellingham finds bash as the parent process, as in a user's terminal.
    proc = subprocess.run(
        ["bash", "-c", f"{d2d_path()} --install-completion"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / ".bash_completions/docker-d2d.sh"
    assert installed.read_text().strip() == (REPO / "completions/docker-d2d.bash").read_text().strip()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()
