"""The Application a run hands to every command: Docker's global flags reach the commands through
it (main.py parses them before typer sees argv), not through module state."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from docker_d2d.app.application import Application
from docker_d2d.app.cli import app
from docker_d2d.app.options import GlobalOptions


def test_the_commands_read_the_global_flags_from_the_application(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    run = Application(GlobalOptions(config=str(config)), environ={"HOME": str(tmp_path / "home")})
    out = CliRunner().invoke(app, ["plugin", "install"], obj=run)
    assert out.exit_code == 0, out.output
    assert (config / "cli-plugins" / "docker-d2d").is_symlink() or (config / "cli-plugins" / "docker-d2d").is_file()
    assert not (tmp_path / "home").exists()


def test_without_one_a_command_gets_the_default(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["plugin", "uninstall", "--dir", str(tmp_path)])
    assert out.exit_code == 0 and "not installed" in out.output
