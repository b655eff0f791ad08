"""The completion table is derived from the typer app, not declared by hand: it must match it."""

from __future__ import annotations

from typing import Any

from docker_d2d.app.command_table import COMMANDS
from tests.harness.command_table import derived_table


def test_table_matches_the_typer_app() -> None:
    assert derived_table() == COMMANDS, "regenerate: .venv/bin/python -m tests.harness.command_table"


def test_every_option_of_every_command_is_completed() -> None:
    from docker_d2d.app.cli import command

    def walk(command: object, node: dict[str, object]) -> None:
        names = {n for o in node["options"] for n in o["names"]}  # type: ignore[attr-defined]
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option":
                assert set(param.opts) <= names, param.opts
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, node["commands"][name])  # type: ignore[index]

    walk(command("docker d2d"), COMMANDS)


def test_descriptions_are_whole_sentences() -> None:
    """A completion description is the help's first sentence, never cut inside it (issue 16)."""
    from docker_d2d.app.cli import command

    def walk(node: Any, described: dict[str, Any]) -> None:
        texts = [(node.help, described["help"])]
        by_name = {o["names"][0]: o["help"] for o in described["options"]}
        texts += [(p.help, by_name[p.opts[0]]) for p in node.params if p.param_type_name == "option"]
        for full, shown in texts:
            full = " ".join((full or "").split("\n\n")[0].split())
            assert full.rstrip(".") == shown or full.startswith(shown + ". "), (shown, full)
            assert shown.count("(") == shown.count(")"), shown
        for name, sub in getattr(node, "commands", {}).items():
            walk(sub, described["commands"][name])

    walk(command("docker d2d"), COMMANDS)


def test_the_plugin_offers_no_completion_install() -> None:
    """`docker d2d` is completed by the docker CLI: no --install-completion there (the standalone has it)."""
    from docker_d2d.app.cli import command

    assert not any("completion" in name for option in COMMANDS["options"] for name in option["names"])
    assert "--install-completion" in {o for p in command("docker-d2d").params for o in p.opts}
