"""Help (issue 16, item 14): examples in each command's --help, no `<bool>` label on a flag, no
completion-install options under `docker d2d`, and a man page built from the same click tree."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from docker_d2d.app.cli import app, command
from docker_d2d.app.examples import EXAMPLES

PACKAGING = Path(__file__).resolve().parents[3] / "packaging"
COMMANDS = list(EXAMPLES)


def man() -> ModuleType:
    spec = importlib.util.spec_from_file_location("d2d_man", PACKAGING / "man.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands(node: Any, path: str = "") -> list[str]:
    subs = getattr(node, "commands", {})
    found = [path.strip()] if path and not subs else []
    for name, sub in subs.items():
        found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_has_examples() -> None:
    assert sorted(_commands(command("docker d2d"))) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("rich", ["1", "0"])
def test_help_shows_examples_and_no_bool_label(name: str, rich: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    out = CliRunner().invoke(app, [*name.split(), "--help"], env={"TYPER_USE_RICH": rich})
    assert out.exit_code == 0, out.output
    assert "<bool>" not in out.output and "BOOLEAN" not in out.output, out.output


@pytest.mark.parametrize("prog", ["docker d2d", "docker-d2d"])
def test_examples_are_written_for_how_it_runs_and_fit_80_columns(prog: str) -> None:
    from docker_d2d.app.examples import examples

    for name in COMMANDS:
        text = examples(prog, name)
        assert text.startswith("Examples:\n"), text
        for line in text.splitlines()[1:]:
            assert line.startswith(f"  {prog} {name.split()[0]}") and len(line) <= 76, line
        sub = command(prog)
        for word in name.split():
            sub = sub.commands[word]
        assert sub.epilog == text


def test_only_the_standalone_has_the_completion_install_options() -> None:
    def options(prog: str) -> set[str]:
        return {o for p in command(prog).params for o in p.opts}

    assert "--install-completion" not in options("docker d2d") and "--show-completion" not in options("docker d2d")
    assert {"--install-completion", "--show-completion"} <= options("docker-d2d")


def test_the_man_page_is_up_to_date() -> None:
    module = man()
    assert (PACKAGING / "docker-d2d.1").read_text() == module.render(), "regenerate: .venv/bin/python packaging/man.py"


def test_the_man_page_has_every_command_option_and_example() -> None:
    page = man().render()
    root = command("docker d2d")
    for name in COMMANDS:
        assert f'.SS "docker d2d {name}"' in page
        sub = root
        for word in name.split():
            sub = sub.commands[word]
        for param in sub.params:
            for opt in param.opts if param.param_type_name == "option" else ():
                assert f"\\fB{opt.replace('-', chr(92) + '-')}\\fR" in page, opt
        for words, _ in EXAMPLES[name]:
            assert f"docker d2d {words}".replace("-", "\\-") in page, words


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff renders the page")
def test_the_man_page_renders_without_warnings() -> None:
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(PACKAGING / "docker-d2d.1")], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "docker d2d push myserver myapp:2" in proc.stdout.replace("\u2010", "-").replace("\u2212", "-")
