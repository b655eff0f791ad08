"""The completion table is derived from the typer app, not declared by hand: it must match it."""

from __future__ import annotations

from docker_d2d.app.command_table import COMMANDS
from tests.harness.command_table import derived_table


def test_table_matches_the_typer_app() -> None:
    assert derived_table() == COMMANDS, "regenerate: .venv/bin/python -m tests.harness.command_table"


def test_every_option_of_every_command_is_completed() -> None:
    import typer.main

    from docker_d2d.app.cli import app

    def walk(command: object, node: dict[str, object]) -> None:
        names = {n for o in node["options"] for n in o["names"]}  # type: ignore[attr-defined]
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option":
                assert set(param.opts) <= names, param.opts
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, node["commands"][name])  # type: ignore[index]

    walk(typer.main.get_command(app), COMMANDS)
