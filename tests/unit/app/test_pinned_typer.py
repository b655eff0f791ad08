"""The private parts of typer the app relies on, each behind one function (pyproject.toml pins
typer's version): these fail when a new release changes them.

- completion.completion_script: the standalone docker-d2d's completion script comes from typer's
  own generator, which typer keeps in a private module.
- the completion table's generator (tests/harness/command_table.py `declared_types`): the type an
  option was declared with, read from the command's function, which typer keeps as the click
  command's callback.
- cli.run: usage errors become one line, caught as the click exceptions typer vendors
  (typer._click.exceptions), with the command they belong to."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from docker_d2d.app.cli import app
from docker_d2d.app.completion import completion_script
from docker_d2d.transfer.compress import Compression
from tests.harness.command_table import declared_types


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_comes_from_typer(shell: str) -> None:
    script = completion_script(shell)
    assert "_DOCKER_D2D_COMPLETE" in script and "docker-d2d" in script


def test_annotation_is_the_declared_type() -> None:
    copy = typer.main.get_command(app).commands["copy"]  # type: ignore[attr-defined]
    types = declared_types(copy)
    assert {p.name for p in copy.params} <= set(types)
    assert types["compress"] is Compression
    assert types["spool_dir"] is Path  # Optional[Path] reads as Path: a directory to complete
    assert types["dry_run"] is bool


def test_usage_errors_are_typers_click_exceptions() -> None:
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    for args, kind in ((["push"], UsageError), (["--bogus"], UsageError), ([], NoArgsIsHelpError)):
        with pytest.raises(kind) as caught:
            app(args=args, prog_name="docker d2d", standalone_mode=False)
        assert caught.value.ctx is not None and caught.value.ctx.command_path.startswith("docker d2d")
