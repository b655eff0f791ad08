"""What a newcomer hits first (issue 16, item 12): every error is one line on stderr and the only
output of the run, usage errors included (no rich boxes), through `docker-d2d` and through the
real `docker d2d`; a missing tag, swapped arguments and a missing destination are named as such."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, unique
from tests.harness.tty import terminal

from ..helpers import random_file
from .test_plugin import CLIS, cli

pytestmark = pytest.mark.engines


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "docker-config"
    proc = run_d2d("plugin", "install", "--dir", str(cfg / "cli-plugins"))
    assert proc.returncode == 0, proc.stderr
    return cfg


@pytest.fixture
def repo(engines: dict[str, Engine], builder: Builder) -> str:
    """A repository with two tags (and no :latest) at docker20."""
    base = builder.base(unique("fbase") + ":1")
    name = unique("fx/app")
    for tag in ("2", "3"):
        builder.build(f"{name}:{tag}", base, ["COPY a /a"], {"a": random_file(20_000)})
    builder.place(engines["docker20"], f"{name}:2", f"{name}:3")
    return name


def only_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The run's whole output: one line on stderr, nothing on stdout."""
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "╭" not in lines[0] and "Traceback" not in lines[0]
    return lines[0]


def test_a_missing_image_is_the_only_line(engines: dict[str, Engine]) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, "nope-missing:404")
    assert proc.returncode == 1
    line = only_line(proc)
    assert line.startswith("docker-d2d: ") and f"source {src.host}" in line and "nope-missing:404" in line, line


def test_a_missing_tag_says_latest_was_looked_for_and_lists_the_tags(
    engines: dict[str, Engine], repo: str, config: Path
) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    proc = run_d2d("push", dst.host, repo, env={"DOCKER_HOST": src.host})
    assert proc.returncode == 1
    line = only_line(proc)
    assert f"no such image: {repo}:latest" in line, line
    assert "no tag given" in line and f"{repo}:2" in line and f"{repo}:3" in line, line
    # A tag given that does not exist: the tags there are listed too.
    wrong = run_d2d("push", dst.host, f"{repo}:9", env={"DOCKER_HOST": src.host})
    line = only_line(wrong)
    assert f"no such image: {repo}:9" in line and "no tag given" not in line, line
    assert f"the source has {repo}:2, {repo}:3" in line, line
    # Through the real docker CLI: the same single line.
    via = cli(CLIS["28.2"], "-H", src.host, "d2d", "push", dst.host, repo, config=config)
    assert via.returncode == 1
    assert f"no such image: {repo}:latest" in only_line(via)
    assert not image_exists(dst, f"{repo}:2")


def test_swapped_arguments_say_the_destination_comes_first(engines: dict[str, Engine], repo: str) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    for destination in ("myserver", dst.host):
        proc = run_d2d("push", f"{repo}:2", destination, env={"DOCKER_HOST": src.host})
        assert proc.returncode == 2, proc.stderr
        line = only_line(proc)
        assert "the destination comes first" in line, line
        assert f"docker-d2d push {destination} {repo}:2" in line, line
    pull = run_d2d("pull", f"{repo}:2", "myserver", env={"DOCKER_HOST": dst.host})
    assert pull.returncode == 2
    line = only_line(pull)
    assert "the source comes first" in line and f"docker-d2d pull myserver {repo}:2" in line, line


def test_push_with_only_an_image_is_refused_naming_both(engines: dict[str, Engine], repo: str, config: Path) -> None:
    src = engines["docker20"]
    proc = run_d2d("push", f"{repo}:2", env={"DOCKER_HOST": src.host})
    assert proc.returncode == 2
    line = only_line(proc)
    assert f"'{repo}:2'" in line and "destination" in line and "image" in line, line
    assert "docker-d2d push DESTINATION IMAGE" in line, line
    via = cli(CLIS["28.2"], "-H", src.host, "d2d", "push", f"{repo}:2", config=config)
    assert via.returncode == 2
    assert "docker d2d push DESTINATION IMAGE" in only_line(via)


@pytest.mark.parametrize("version", CLIS)
def test_usage_errors_are_one_plain_line(version: str, config: Path) -> None:
    for args, words in [
        (["push"], ("missing", "DESTINATION")),
        (["push", "--bogus", "a", "b"], ("no such option", "--bogus")),
        (["copy", "--compress", "lz4", "x"], ("--compress", "lz4")),
        (["frobnicate"], ("no such command", "frobnicate")),
    ]:
        own = run_d2d(*args)
        assert own.returncode == 2, own.stderr
        line = only_line(own)
        assert line.startswith("docker-d2d: ") and all(w in line for w in words), line
        via = cli(CLIS[version], "d2d", *args, config=config)
        assert via.returncode == 2, via.stderr
        line = only_line(via)
        assert all(w in line for w in words), line
        if args[0] != "frobnicate":
            assert f"See 'docker d2d {args[0]} --help'." in line, line


@pytest.mark.parametrize("version", CLIS)
def test_help_through_the_docker_cli(version: str, config: Path) -> None:
    """Item 14: `docker d2d` offers no --install-completion (docker completes it); each command's help
    ends with examples written as `docker d2d ...`; no flag carries a `<bool>` label."""
    top = cli(CLIS[version], "d2d", "--help", config=config, env={"COLUMNS": "100"})
    assert top.returncode == 0 and "Usage: docker d2d" in top.stdout, top.stderr
    assert "--install-completion" not in top.stdout and "--show-completion" not in top.stdout
    assert "--install-completion" in run_d2d("--help", env={"COLUMNS": "100"}).stdout  # the standalone's own
    for name in ("copy", "push", "pull"):
        out = cli(CLIS[version], "d2d", name, "--help", config=config, env={"COLUMNS": "100"})
        assert out.returncode == 0, out.stderr
        assert "Examples:" in out.stdout and f"docker d2d {name} " in out.stdout, out.stdout
        assert "<bool>" not in out.stdout


def test_the_docker_cli_completes_whole_descriptions(config: Path) -> None:
    proc = subprocess.run(
        [CLIS["28.2"], "__complete", "d2d", "push", "--registry-"],
        capture_output=True,
        text=True,
        env={"DOCKER_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert "--registry-first\tLet the destination pull the image's base from its registry" in proc.stdout, proc


def test_on_a_terminal_too_the_error_is_the_only_line(engines: dict[str, Engine]) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    marker = unique("done")
    cmd = f"clear; {d2d_path()} copy -s {src.host} -d {dst.host} nope-missing:404; echo {marker}=$?; sleep 30"
    with terminal(cmd, width=400) as term:  # the line whole, unwrapped
        screen = term.wait_for(f"{marker}=")
    lines = [line for line in screen.splitlines() if line.strip()]
    assert lines[-1] == f"{marker}=1", screen
    assert len(lines) == 2 and lines[0].startswith("docker-d2d: source ") and "nope-missing:404" in lines[0], screen
